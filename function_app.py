"""Azure Functions entry point: the FastAPI app behind AsgiFunctionApp, and the queue triggers."""

import azure.functions as func

from functions import queues
from functions.http_api import create_app
from shared.bootstrap import build_services
from shared.settings import Settings

services = build_services(Settings())
app = func.AsgiFunctionApp(app=create_app(services), http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(queues.blueprint(services))
