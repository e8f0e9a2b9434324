"""Alembic's environment for notifications: its tables, on the connection it is handed."""

from services.notifications.store import Base
from shared.migrations import run_environment

run_environment(Base.metadata)
