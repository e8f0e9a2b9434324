"""Alembic's environment for pairing: its tables, on the connection it is handed."""

from services.pairing.store import Base
from shared.migrations import run_environment

run_environment(Base.metadata)
