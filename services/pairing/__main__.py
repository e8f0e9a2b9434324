from services.pairing.app import definition
from shared.service import run_service
from shared.settings import Settings

settings = Settings()
run_service(definition(settings), settings)
