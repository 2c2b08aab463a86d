"""`envhub queue put|get` as another system uses envhub's queues: the SQLite queue under the data folder, and
Azure Storage queues on Azurite (named by ENVHUB_* settings, or by the emulators.json `serve --emulators` writes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from shared.adapters.azurite import Azurite, AzuriteNotInstalled
from shared.adapters.cosmos_emulator import CosmosEmulatorNotInstalled
from shared.adapters.sqlite_db import Database
from shared.adapters.sqlite_queue import SqliteQueue
from shared.adapters.storage_queue import StorageQueue
from shared.settings import Settings
from tests.emulators import azurite_or_skip
from tests.support import REPO, unavailable

ENVHUB = [sys.executable, "-m", "cli.main", "queue"]
MESSAGE = '{"schema": "register/v1",  "name": "trainer", "tags": {"team": "vision"}}\n'  # two spaces: kept


def envhub(*args: str, data: Path, env: dict[str, str] | None = None, stdin: str | None = None,
           code: int = 0) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ENVHUB_")}
    result = subprocess.run([*ENVHUB, *args], capture_output=True, text=True, cwd=REPO, timeout=60, input=stdin,
                            env={**clean, "COLUMNS": "200", "ENVHUB_DATA_DIR": str(data), **(env or {})})
    assert result.returncode == code, (result.stdout, result.stderr)
    if code:
        assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_put_a_file_then_get_it(data: Path, tmp_path: Path) -> None:
    message = tmp_path / "message.json"
    message.write_text(MESSAGE)
    assert envhub("put", "registrations", str(message), data=data).stdout.strip() == "sent to registrations"
    plain = tmp_path / "plain.txt"
    plain.write_text("not json")
    sent = json.loads(envhub("put", "registrations", str(plain), "--json", data=data).stdout)
    assert sent == {"queue": "registrations", "bytes": len(b"not json")}

    first = envhub("get", "registrations", data=data).stdout
    assert first == MESSAGE  # the text as sent, not re-serialized
    taken = json.loads(envhub("get", "registrations", "--json", data=data).stdout)
    assert taken["queue"] == "registrations" and taken["body"] == "not json" and taken["dequeue_count"] == 1
    assert taken["id"]
    assert SqliteQueue(Database(data / "envhub.db"), "registrations").depth() == 0  # a reader took both


def test_put_from_stdin_with_json_fields(data: Path) -> None:
    sent = json.loads(envhub("put", "replies-1", "-", "--json", data=data, stdin=MESSAGE).stdout)
    assert sent == {"queue": "replies-1", "bytes": len(MESSAGE.encode())}
    taken = json.loads(envhub("get", "replies-1", "--json", data=data).stdout)
    assert set(taken) == {"queue", "id", "body", "dequeue_count"}
    assert taken["body"] == json.loads(MESSAGE)  # JSON bodies come back parsed


def test_get_on_an_empty_queue(data: Path) -> None:
    empty = envhub("get", "nothing-here", data=data, code=1)
    assert empty.stdout == "" and empty.stderr.strip() == "no message on nothing-here"
    assert envhub("get", "nothing-here", "--json", data=data, code=1).stdout.strip() == "null"
    started = time.monotonic()
    envhub("get", "nothing-here", "--wait", "0.5", data=data, code=1)
    assert time.monotonic() - started >= 0.5


def test_get_waits_for_a_message_sent_meanwhile(data: Path) -> None:
    waiting = subprocess.Popen([*ENVHUB, "get", "late-one", "--wait", "20", "--json"], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "ENVHUB_DATA_DIR": str(data)})
    time.sleep(1.0)
    SqliteQueue(Database(data / "envhub.db"), "late-one").send('{"late": true}')
    stdout, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, stderr
    assert json.loads(stdout)["body"] == {"late": True}


@pytest.mark.parametrize("name", ["ab", "Upper", "two--hyphens", "-leading", "trailing-", "under_score", "a" * 64])
def test_a_bad_queue_name_exits_2(data: Path, name: str) -> None:
    refused = envhub("get", "--", name, data=data, code=2)  # `--`: "-leading" is a name, not an option
    assert "is not a queue name" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    envhub("put", "--", name, "-", data=data, stdin="{}", code=2)


def test_a_missing_file_exits_2(data: Path, tmp_path: Path) -> None:
    assert "cannot read" in envhub("put", "abc", str(tmp_path / "missing.json"), data=data, code=2).stderr


def test_a_poisoned_message_is_read_from_name_poison(data: Path) -> None:
    queue = SqliteQueue(Database(data / "envhub.db"), "registrations")
    queue.send(MESSAGE)
    message = queue.receive(30)
    assert message is not None
    queue.poison(message, "schema register/v9 is unknown")

    taken = json.loads(envhub("get", "registrations-poison", "--json", data=data).stdout)
    assert taken["queue"] == "registrations-poison" and taken["id"] == message.id
    assert taken["body"] == json.loads(MESSAGE) and taken["reason"] == "schema register/v9 is unknown"
    assert queue.poisoned() == []  # taken, as from a poison queue
    envhub("get", "registrations-poison", data=data, code=1)

    queue.send("plain")
    again = queue.receive(30)
    assert again is not None
    queue.poison(again, "not JSON")
    shown = envhub("get", "registrations-poison", data=data)
    assert shown.stdout == "plain\n" and "not JSON" in shown.stderr


def test_settings_that_name_no_account_exit_2(data: Path) -> None:
    refused = envhub("get", "abc", data=data, env={"ENVHUB_QUEUE": "storage"}, code=2)
    assert "ENVHUB_QUEUE_ACCOUNT_URL" in refused.stderr


def test_an_unreachable_storage_account_exits_3(data: Path) -> None:
    nowhere = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;"
               "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1")
    env = {"ENVHUB_QUEUE": "storage", "ENVHUB_STORAGE_CONNECTION_STRING": nowhere}
    for args, stdin in ((("get", "abc"), None), (("put", "abc", "-"), "{}")):
        failed = envhub(*args, data=data, env=env, stdin=stdin, code=3)
        assert "Azure Storage" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1


def test_a_stale_emulators_file_exits_3_and_says_so(data: Path) -> None:
    data.mkdir(parents=True)
    (data / "emulators.json").write_text(json.dumps({
        "storage_connection_string": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=eA==;"
                                     "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "cosmos_endpoint": "https://127.0.0.1:9"}))
    failed = envhub("get", "abc", data=data, code=3)
    assert "emulators.json" in failed.stderr
    envhub("put", "abc", "-", data=data, stdin="{}", env={"ENVHUB_QUEUE": "sqlite"})  # explicit settings win


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with ExitStack() as stack:
        yield azurite_or_skip(stack)


def _storage(azurite: Azurite) -> dict[str, str]:
    return {"ENVHUB_QUEUE": "storage", "ENVHUB_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "ENVHUB_STORAGE_CREATE": "true"}


@pytest.mark.integration
def test_storage_put_then_get(azurite: Azurite, data: Path) -> None:
    env = _storage(azurite)
    envhub("put", "cli-put-get", "-", data=data, env=env, stdin=MESSAGE)
    # Another system (the Functions host) reads the body base64-decoded, as StorageQueue does.
    settings = Settings(queue="storage", storage_connection_string=azurite.connection_string)
    received = StorageQueue.from_settings(settings, "cli-put-get").client.peek_messages()
    assert [str(m.content) for m in received] == [MESSAGE]
    taken = json.loads(envhub("get", "cli-put-get", "--json", data=data, env=env).stdout)
    assert taken["body"] == json.loads(MESSAGE) and taken["dequeue_count"] == 1
    envhub("get", "cli-put-get", data=data, env=env, code=1)


@pytest.mark.integration
def test_storage_message_sent_by_envhub_is_read(azurite: Azurite, data: Path) -> None:
    settings = Settings(queue="storage", storage_connection_string=azurite.connection_string, storage_create=True)
    StorageQueue.from_settings(settings, "cli-replies").send('{"status": "registered"}')
    assert envhub("get", "cli-replies", data=data, env=_storage(azurite)).stdout == '{"status": "registered"}\n'


@pytest.mark.integration
def test_storage_get_of_a_queue_nobody_created(azurite: Azurite, data: Path) -> None:
    env = {**_storage(azurite), "ENVHUB_STORAGE_CREATE": "false"}
    assert envhub("get", "never-created", data=data, env=env, code=1).stderr.strip() == "no message on never-created"
    envhub("get", "never-created-poison", data=data, env=env, code=1)


@pytest.mark.integration
def test_storage_poison_queue_is_unwrapped(azurite: Azurite, data: Path) -> None:
    settings = Settings(queue="storage", storage_connection_string=azurite.connection_string, storage_create=True)
    queue = StorageQueue.from_settings(settings, "cli-poisoned")
    queue.send('{"n": 1}')
    message = queue.receive(30)
    assert message is not None
    queue.poison(message, "handler failed 5 times")
    taken = json.loads(envhub("get", "cli-poisoned-poison", "--json", data=data, env=_storage(azurite)).stdout)
    assert taken["body"] == {"n": 1} and taken["reason"] == "handler failed 5 times"
    assert queue.poisoned() == []


@pytest.mark.integration
def test_emulators_file_points_the_cli_at_azurite(azurite: Azurite, data: Path) -> None:
    data.mkdir(parents=True)
    found = data / "emulators.json"
    found.write_text(json.dumps({"storage_connection_string": azurite.connection_string,
                                 "cosmos_endpoint": "https://127.0.0.1:8081"}))
    envhub("put", "cli-emulated", "-", data=data, stdin=MESSAGE)  # no ENVHUB_QUEUE*: the file decides
    settings = Settings(queue="storage", storage_connection_string=azurite.connection_string)
    assert StorageQueue.from_settings(settings, "cli-emulated").depth() == 1
    assert not (data / "envhub.db").exists() or SqliteQueue(Database(data / "envhub.db"), "cli-emulated").depth() == 0
    assert envhub("get", "cli-emulated", data=data).stdout == MESSAGE


@pytest.mark.integration
def test_serve_emulators_writes_and_removes_its_file(tmp_path: Path) -> None:
    from shared.local_stack import emulated

    found = tmp_path / "emulators.json"
    try:
        with emulated(Settings(data_dir=tmp_path)) as settings:
            assert stat.S_IMODE(found.stat().st_mode) == 0o600
            written = json.loads(found.read_text())
            assert written == {"storage_connection_string": settings.storage_connection_string,
                               "cosmos_endpoint": settings.cosmos_endpoint}
    except (AzuriteNotInstalled, CosmosEmulatorNotInstalled) as error:
        unavailable(str(error))
    assert not found.exists()
