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


@pytest.fixture
def function_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
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


def test_app_indexes_one_http_function(function_app: ModuleType) -> None:
    functions = function_app.app.get_functions()
    assert len(functions) == 1
    trigger = functions[0].get_bindings()[0]
    assert trigger.type == "httpTrigger" and trigger.route == "/{*route}"


def test_http_request_goes_through_fastapi(function_app: ModuleType) -> None:
    (function,) = function_app.app.get_functions()
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
