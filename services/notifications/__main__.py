"""`python -m services.notifications`: runs notifications with the environment's settings."""

from services.notifications.app import definition
from shared.service import run_service
from shared.settings import Settings

run_service(definition(), Settings())
