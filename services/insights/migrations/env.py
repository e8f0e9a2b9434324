"""Alembic's environment for insights: its tables, on the connection it is handed."""

from services.insights.store import Base
from shared.migrations import run_environment

run_environment(Base.metadata)
