"""The workspace datastore's rules: a container per workspace, contextUri parsing, SAS lifetimes, upload marks."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shared.domain.datastore import (
    MAX_SECRET_LIFETIME,
    Datastore,
    UploadedBlob,
    completed,
    context_folder,
    secret_lifetime,
    upload_container,
)
from shared.domain.errors import InvalidDefinition

STORE = Datastore(account="devstoreaccount1", container=upload_container("team-a", "uploads"), endpoint="x")
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # Blob Storage's rule


@pytest.mark.parametrize("workspace", ["team-a", "Team_A", "a", "x" * 200, "über--ws", "---", "ws.with.dots"])
def test_each_workspace_gets_a_valid_container_of_its_own(workspace: str) -> None:
    name = upload_container(workspace, "uploads")
    assert CONTAINER_NAME.match(name), name
    assert name.startswith("uploads-")
    assert upload_container(workspace, "uploads") == name  # stable across calls and processes


def test_workspaces_whose_slugs_agree_get_different_containers() -> None:
    names = {upload_container(ws, "uploads") for ws in ("team-a", "Team-A", "team_a", "team.a")}
    assert len(names) == 4


def test_a_context_uri_in_the_workspace_container_names_its_folder() -> None:
    uri = f"https://devstoreaccount1.blob.envhub.test/{STORE.container}/LocalUpload/0f3a/ctx/"
    assert context_folder(uri, STORE) == "LocalUpload/0f3a/ctx/"
    # the SDK may leave the slash off; percent-escapes are the blob name's
    assert context_folder(uri.rstrip("/"), STORE) == "LocalUpload/0f3a/ctx/"
    assert context_folder(uri.replace("ctx", "my%20ctx"), STORE) == "LocalUpload/0f3a/my ctx/"
    assert context_folder(uri.replace("devstoreaccount1", "DevStoreAccount1"), STORE) == "LocalUpload/0f3a/ctx/"


@pytest.mark.parametrize(("uri", "says"), [
    ("http://devstoreaccount1.blob.envhub.test/{c}/LocalUpload/a/ctx/", "not in this workspace's datastore"),
    ("https://other.blob.envhub.test/{c}/LocalUpload/a/ctx/", "not in this workspace's datastore"),
    ("https://devstoreaccount1.queue.envhub.test/{c}/a/", "not in this workspace's datastore"),
    ("https://devstoreaccount1/{c}/a/", "not in this workspace's datastore"),
    ("https://devstoreaccount1.blob.envhub.test/uploads-team-b-0123456789ab/a/", "not this workspace's"),
    ("https://devstoreaccount1.blob.envhub.test/{c}/", "names no folder"),
    ("https://devstoreaccount1.blob.envhub.test/{c}/LocalUpload/../../x/", "not a plain path"),
    ("https://devstoreaccount1.blob.envhub.test/{c}/LocalUpload/%2e%2e/x/", "not a plain path"),
    ("https://devstoreaccount1.blob.envhub.test/{c}/a//b/", "not a plain path"),
])
def test_other_context_uris_are_refused_with_the_field(uri: str, says: str) -> None:
    with pytest.raises(InvalidDefinition, match=says) as refused:
        context_folder(uri.format(c=STORE.container), STORE)
    assert refused.value.where == "properties.build.contextUri"


@pytest.mark.parametrize(("body", "lifetime"), [
    ({"expirableSecret": True, "expireAfterHours": 1}, timedelta(hours=1)),
    ({"expireAfterHours": 0.25}, timedelta(minutes=15)),
    ({"expireAfterHours": 48}, MAX_SECRET_LIFETIME),
    ({"expireAfterHours": -1}, MAX_SECRET_LIFETIME),
    ({"expireAfterHours": True}, MAX_SECRET_LIFETIME),
    ({"expireAfterHours": "2"}, MAX_SECRET_LIFETIME),
    (None, MAX_SECRET_LIFETIME),
])
def test_a_secret_lives_an_hour_at_most(body: object, lifetime: timedelta) -> None:
    assert secret_lifetime(body) == lifetime


def test_an_upload_is_complete_once_the_sdk_marked_a_file() -> None:
    assert not completed([])
    assert not completed([UploadedBlob("a", 1), UploadedBlob("b", 1, {"upload_status": "started"})])
    assert completed([UploadedBlob("a", 1), UploadedBlob("b", 1, {"upload_status": "completed", "name": "n"})])
