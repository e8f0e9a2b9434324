"""pairing: matching profiles, matching rounds and pairs."""

from services.pairing.app import definition
from shared.service import run_service
from shared.settings import Settings

run_service(definition(), Settings())
