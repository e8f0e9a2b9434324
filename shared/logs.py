"""Log lines every service writes the same way: plain and greppable."""

from __future__ import annotations

import logging

from shared.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Plain, greppable log lines at the configured level."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
