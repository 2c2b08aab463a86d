"""Azure ML's own SDK (azure-ai-ml's MLClient.jobs) submitting command jobs to `envhub serve --tls`, unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.ml import MLClient, command
from azure.ai.ml.entities import Environment
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from tests.integration.test_azure_ml_sdk import conda, envhub_version, ml, server
from tests.sdk_server import WORKSPACE, Served

__all__ = ["ml", "server"]  # the fixtures, shared with the environment tests
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
ANONYMOUS = "CliV2AnonymousEnvironment"
SUB, RG = "00000000-0000-0000-0000-000000000000", "envhub-rg"  # what the `ml` fixture's client names
P = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"


def envhub_job(server: Served, name: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.get(f"/workspaces/{WORKSPACE}/jobs/{name}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def env_of(job: Any) -> str:
    """The job's environment as 'name:version' (the SDK prefixes 'azureml:' on some reads, not others)."""
    return str(job.environment).removeprefix("azureml:")


def test_a_job_with_an_inline_environment_registers_azure_mls_anonymous_version(ml: MLClient, server: Served
                                                                                ) -> None:
    job = ml.jobs.create_or_update(command(command="echo hi", environment=Environment(image=IMAGE),
                                           compute="cpu-cluster"))
    computed = Environment(image=IMAGE, is_anonymous=True).version  # the version azure-ai-ml derives
    assert env_of(job) == f"{ANONYMOUS}:{computed}"
    assert job.id == f"{P}/jobs/{job.name}" and job.status == "NotStarted" and job.compute == "cpu-cluster"
    recorded = envhub_job(server, str(job.name))  # the ARM name is envhub's job id
    assert (recorded["environment_name"], recorded["environment_version"]) == (ANONYMOUS, computed)
    version = envhub_version(server, ANONYMOUS, str(computed))
    assert version["anonymous"] is True and recorded["environment_hash"] == version["hash"]
    with server.api() as api:
        assert api.post("/hash", json={"image": IMAGE}).json()["anonymous_version"] == computed
    got = ml.jobs.get(str(job.name))
    assert (got.name, got.command, env_of(got), got.status) == (job.name, "echo hi", env_of(job), "NotStarted")


def test_a_job_names_a_registered_environment_by_version_or_latest(ml: MLClient, server: Served) -> None:
    for version in ("1", "2"):
        ml.environments.create_or_update(Environment(name="sdk-job-env", version=version, image=IMAGE,
                                                     conda_file=conda(f"pkg{version}")))
    pinned = ml.jobs.create_or_update(command(command="python -V", environment="azureml:sdk-job-env:1",
                                              compute="cpu-cluster"))
    # The SDK resolves a label itself (a versions list); with the 'azureml:' prefix it asks for the versions of
    # 'azureml:sdk-job-env', which envhub takes as 'sdk-job-env'.
    latest = ml.jobs.create_or_update(command(command="python -V", environment="sdk-job-env@latest",
                                              compute="cpu-cluster"))
    prefixed = ml.jobs.create_or_update(command(command="python -V", environment="azureml:sdk-job-env@latest",
                                                compute="cpu-cluster"))
    for job, version in ((pinned, "1"), (latest, "2"), (prefixed, "2")):
        assert env_of(job) == f"sdk-job-env:{version}"
        recorded = envhub_job(server, str(job.name))
        assert (recorded["environment_name"], recorded["environment_version"]) == ("sdk-job-env", version)
        assert env_of(ml.jobs.get(str(job.name))) == f"sdk-job-env:{version}"


def test_an_unknown_environment_or_job_is_not_found(ml: MLClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        ml.jobs.create_or_update(command(command="echo", environment="azureml:sdk-job-none:9", compute="c"))
    with pytest.raises(ResourceNotFoundError):
        ml.jobs.get("sdk-no-such-job")


def test_the_same_name_again_is_idempotent_and_other_content_a_conflict(ml: MLClient, server: Served) -> None:
    ml.environments.create_or_update(Environment(name="sdk-job-put", version="1", image=IMAGE))
    body = {"properties": {"jobType": "Command", "command": "echo 1", "computeId": f"{P}/computes/c",
                           "environmentId": f"{P}/environments/sdk-job-put/versions/1"}}
    url = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/" \
          f"{WORKSPACE}/jobs/sdk-job-raw?api-version=2025-01-01-preview"
    with server.api() as api:
        assert api.put(url, json=body).status_code == 201
        again = api.put(url, json=body)
        assert again.status_code == 200 and again.json()["properties"]["status"] == "NotStarted"
        other = api.put(url, json={"properties": {**body["properties"], "command": "echo 2"}})
        assert other.status_code == 409 and other.json()["error"]["code"] == "Conflict"
        elsewhere = str(body["properties"]["environmentId"]).replace(f"/workspaces/{WORKSPACE}/", "/workspaces/x/")
        away = api.put(url.replace("sdk-job-raw", "sdk-job-away"),
                       json={"properties": {**body["properties"], "environmentId": elsewhere}})
        assert away.status_code == 404 and away.json()["error"]["code"] == "ResourceNotFound"
        own = api.post(f"/workspaces/{WORKSPACE}/jobs", json={"name": "sdk-job-own", "command": "echo own",
                                                              "environment": "azureml:sdk-job-put:1"})
        assert own.status_code == 201, own.text
    got = ml.jobs.get("sdk-job-own")  # a job submitted through envhub's own API, read by the SDK
    assert (got.command, env_of(got)) == ("echo own", "sdk-job-put:1")


def test_the_tags_of_a_recorded_job_are_replaced_by_a_put(ml: MLClient, server: Served) -> None:
    ml.environments.create_or_update(Environment(name="sdk-job-tags", version="1", image=IMAGE))
    made = ml.jobs.create_or_update(command(command="python -V", environment="azureml:sdk-job-tags:1",
                                            compute="cpu-cluster", tags={"stage": "1", "team": "ml"}))
    assert made.tags == {"stage": "1", "team": "ml"}
    job = ml.jobs.get(str(made.name))
    job.tags = {"stage": "2"}
    assert ml.jobs.create_or_update(job).tags == {"stage": "2"}
    assert ml.jobs.get(str(made.name)).tags == {"stage": "2"}
    assert envhub_job(server, str(made.name))["spec"]["arm"]["tags"] == {"stage": "2"}
    job.command = "python -c 1"
    with pytest.raises(ResourceExistsError):  # anything else is the recorded job's for good
        ml.jobs.create_or_update(job)
