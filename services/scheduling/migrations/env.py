"""Alembic's environment for scheduling: its tables, on the connection it is handed."""

from services.scheduling.store import Base
from shared.migrations import run_environment

run_environment(Base.metadata)
