"""Azure Functions entry point: the FastAPI app behind AsgiFunctionApp; queue and timer blueprints join later."""

import azure.functions as func

from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings

app = func.AsgiFunctionApp(app=create_app(build_services(Settings())), http_auth_level=func.AuthLevel.ANONYMOUS)
