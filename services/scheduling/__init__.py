"""scheduling: availability, sessions and check-ins."""
