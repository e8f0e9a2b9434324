"""`python -m services.scheduling`: runs the scheduling service with the environment's settings."""

from services.scheduling.app import definition
from shared.service import run_service
from shared.settings import Settings

run_service(definition(), Settings())
