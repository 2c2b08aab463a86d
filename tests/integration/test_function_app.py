"""The Azure entry point: function_app indexes, and a func.HttpRequest goes through the same FastAPI app."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from shared.domain.builds import BuildRequest
from shared.domain.errors import RegistryUnavailable
from tests.stack import free_port


@pytest.fixture
def function_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("ENVHUB_REGISTRY", host)
    monkeypatch.setenv("ENVHUB_INSECURE_REGISTRIES", host)
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app")


class Context:
    """The little of func.Context the ASGI bridge reads."""

    invocation_id = "test-invocation"
    function_name = "http_app_func"
    function_directory = ""
    trace_context = None
    retry_context = None


def call(runner: asyncio.Runner, handler: Any, method: str, url: str, body: Any = None) -> func.HttpResponse:
    request = func.HttpRequest(method=method, url=url, headers={"content-type": "application/json"},
                               body=b"" if body is None else json.dumps(body).encode())
    response: func.HttpResponse = runner.run(handler(request, Context()))
    return response


def test_app_indexes_http_and_queue_functions(function_app: ModuleType) -> None:
    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    assert set(functions) == {"http_app_func", "build_requested", "build_gave_up"}
    trigger = functions["http_app_func"].get_bindings()[0]
    assert trigger.type == "httpTrigger" and trigger.route == "/{*route}"
    queue = functions["build_requested"].get_bindings()[0]
    assert queue.type == "queueTrigger" and queue.queue_name == "build-requests"
    assert functions["build_gave_up"].get_bindings()[0].queue_name == "build-requests-poison"


def test_queue_triggers_run_the_build_service(function_app: ModuleType) -> None:
    services = function_app.services
    services.environments.register(workspace="w", name="e", document={"image": "python:3.11",
                                                                      "conda_file": {"dependencies": ["pip"]}})
    record = services.environments.get(workspace="w", name="e", version="1")
    build, _ = services.images.builds.start_or_join(services.images._new_build(record))
    body = BuildRequest(build_id=build.id, workspace="w", hash=build.hash).model_dump_json().encode()
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    # The registry named in settings does not answer, so the handler raises for the host to retry...
    with pytest.raises(RegistryUnavailable):
        functions["build_requested"](QueueMessage(id="m1", body=body, dequeue_count=1))
    # ...and once the host gives up, the poison trigger records the failure.
    functions["build_gave_up"](QueueMessage(id="m1", body=body, dequeue_count=5))
    failed = services.images.builds.get(build.id)
    assert failed.status == "failed" and "gave up after 5 attempts" in failed.reason


def test_http_request_goes_through_fastapi(function_app: ModuleType) -> None:
    (function,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "http_app_func"]
    handler = function.get_user_function()
    base = "http://localhost/api/workspaces/w/environments"
    with asyncio.Runner() as runner:
        created = call(runner, handler, "POST", f"{base}/fa/versions", {"image": "python:3.11-slim"})
        assert created.status_code == 201, created.get_body()
        assert json.loads(created.get_body())["version"] == "1"
        read = call(runner, handler, "GET", f"{base}/fa/versions/latest")
        assert json.loads(read.get_body())["kind"] == "user_image"
        problem = call(runner, handler, "GET", f"{base}/none/versions/1")
        assert problem.status_code == 404 and problem.mimetype == "application/problem+json"
