"""`python -m services.insights`: runs the insights service with the environment's settings."""

from services.insights.app import definition
from shared.service import run_service
from shared.settings import Settings

run_service(definition(), Settings())
