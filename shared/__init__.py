"""Code common to every service: the event contract, delivery machinery, persistence, telemetry."""
