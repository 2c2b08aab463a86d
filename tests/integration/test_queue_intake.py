"""Registrations and job submissions by queue message, in both homes (SQLite queue; Cosmos DB and Azurite)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from functions.http_api import create_app
from shared import factories
from shared.adapters import local_tls
from shared.bootstrap import Services, build_services
from shared.domain.errors import StoreUnavailable
from shared.local_stack import worker_for
from shared.settings import Settings
from tests.auth import authorized, token_for
from tests.emulators import azurite_or_skip, cosmos_or_skip
from tests.fakes.builder import FakeBuilder
from tests.integration.test_build_faults import CONDA, Registry

REPLIES = "my-replies"
DEFINITION: dict[str, Any] = {"image": "python:3.11", "conda_file": CONDA}


class Home:
    """The services of one home, a fake registry and builder behind them, and the queues as a sender sees them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry()
        self.builder = FakeBuilder(self.registry.images, polls_to_finish=2)
        self.services = self.restart()

    def restart(self, **overrides: Any) -> Services:
        """The services of a new process over the same stores and queues."""
        self.services = build_services(self.settings, registry=self.registry, builder=self.builder, **overrides)
        return self.services

    def send(self, queue: str, body: str | dict[str, Any]) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        factories.named_queue(self.settings, queue).send(text)

    def work(self) -> None:
        """Let every queue's worker take what is visible."""
        for name in self.services.consumers:
            while worker_for(self.services, name).run_once():
                pass
        time.sleep(0.02)  # a message being retried is hidden for its backoff

    def replies(self) -> list[dict[str, Any]]:
        queue = factories.named_queue(self.settings, REPLIES)
        taken = []
        while (message := queue.receive(30)) is not None:
            taken.append(json.loads(message.body))
            queue.delete(message)
        return taken

    def replies_after_work(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Work until `count` replies came (a retried message is hidden for whole seconds on Azure Storage)."""
        taken: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(taken) < count and time.monotonic() < deadline:
            self.work()
            taken += self.replies()
        self.work()
        return taken + self.replies()

    def poisoned(self, queue: str) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = self.services.consumers[queue].queue.poisoned()  # type: ignore[attr-defined]
        return result


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.integration)])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Home]:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "registry": "reg:5000", "worker": False,
                            "queue_max_attempts": 2, "queue_backoff_seconds": 0.01, "queue_visibility_seconds": 2,
                            "build_check_seconds": 0.01, "build_check_max_seconds": 0.02, "max_message_bytes": 8192}
    with ExitStack() as stack:
        if request.param == "azure":
            azurite, cosmos = azurite_or_skip(stack), cosmos_or_skip(stack)
            suffix = uuid.uuid4().hex[:8]
            base |= {"store": "cosmos", "cosmos_endpoint": cosmos.endpoint, "cosmos_key": cosmos.key,
                     "cosmos_database": f"intake-{suffix}", "cosmos_create": True, "queue": "storage",
                     "storage_connection_string": azurite.connection_string, "storage_create": True,
                     "build_queue": f"b-{suffix}", "scan_queue": f"s-{suffix}",
                     "registration_queue": f"r-{suffix}", "submission_queue": f"j-{suffix}"}
        yield Home(Settings(**base))


def registration(correlation_id: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {"schema": "envhub.registration/1", "workspace": "w", "name": "env", "definition": DEFINITION,
            "correlation_id": correlation_id, "reply_to": REPLIES, **fields}


def submission(correlation_id: str = "j-1", **fields: Any) -> dict[str, Any]:
    return {"schema": "envhub.job-submission/1", "workspace": "w", "correlation_id": correlation_id,
            "reply_to": REPLIES, "job": {"command": "python -V", "environment": DEFINITION}, **fields}


def test_a_registration_is_the_http_paths_registration(home: Home) -> None:
    home.send(home.settings.registration_queue, registration(sender="ci-pipeline"))
    home.work()
    [reply] = home.replies()
    record = home.services.environments.get(workspace="w", name="env", version="1")
    assert reply == {"correlation_id": "c-1", "status": "registered", "environment": "env:1",
                     "hash": record.description.hash, "image": str(home.services.images.target(record))}
    assert record.description.hash == home.services.environments.describe_document(DEFINITION).hash
    audit = home.services.access.audit.entries("w", top=5, cursor=None).items
    assert audit[0].who == f"queue:{home.settings.registration_queue} (sender says ci-pipeline)"
    assert audit[0].request_id == "c-1" and audit[0].status == 200


def test_a_job_submission_registers_the_anonymous_version_http_would(home: Home) -> None:
    home.send(home.settings.submission_queue, submission())
    home.work()
    [reply] = home.replies()
    expected = home.services.environments.describe_document(DEFINITION).anonymous_version
    assert reply["status"] == "submitted" and reply["environment"] == f"CliV2AnonymousEnvironment:{expected}"
    job = home.services.jobs.get(workspace="w", job_id=reply["job"])
    assert (job.environment_name, job.environment_version) == ("CliV2AnonymousEnvironment", expected)
    http = home.services.jobs.submit(workspace="w", job={"command": "x", "environment": DEFINITION})[1]
    assert http.version == expected  # the HTTP path's anonymous version of the same inline environment


def test_a_message_delivered_twice_registers_once_and_replies_the_same(home: Home) -> None:
    for _ in range(2):
        home.send(home.settings.registration_queue, registration())
    home.work()
    first, second = home.replies()
    assert first == second and first["environment"] == "env:1"
    assert [r.version for r in home.services.environments.store.history("w", "env", top=5, cursor=None).items] \
        == ["1"]


def test_a_crash_after_the_write_and_before_the_reply_replies_once(home: Home) -> None:
    class Crash(Exception):
        pass

    inbox = home.services.ports["inbox"].adapter
    real_finish = inbox.finish

    def crashing_finish(*args: Any, **kwargs: Any) -> Any:
        raise Crash("killed between the registration and its record")

    inbox.finish = crashing_finish
    home.send(home.settings.registration_queue, registration())
    home.work()  # the registration is written, then the worker dies: no reply, the message comes back
    assert home.replies() == []
    inbox.finish = real_finish
    home.restart()
    [reply] = home.replies_after_work(1)
    assert reply["environment"] == "env:1"
    assert len(home.services.environments.store.history("w", "env", top=5, cursor=None).items) == 1


@pytest.mark.parametrize(("body", "where"), [
    ("not json at all", None),  # no reply: nothing says where to
    ({"schema": "envhub.nothing/9", "workspace": "w", "correlation_id": "b", "reply_to": REPLIES}, "schema"),
    ({**registration("b"), "workspace": None}, "workspace"),
    (registration("b", definition={"image": "python:3.11", "conda_file": {"dependencies": 3}}), "conda_file"),
    (registration("b", definition={"image": "x" * 10_000}), "<message>"),  # over ENVHUB_MAX_MESSAGE_BYTES
    (submission("b"), "schema"),  # a job submission on the registrations queue
])
def test_a_bad_message_is_poisoned_with_a_failure_reply(home: Home, body: str | dict[str, Any],
                                                        where: str | None) -> None:
    queue = home.settings.registration_queue
    home.send(queue, body)
    home.work()
    [(poisoned, reason)] = home.poisoned(queue)
    assert poisoned == (body if isinstance(body, str) else json.dumps(body)) and reason.startswith("refused")
    replies = home.replies()
    if where is None:
        assert replies == []
    else:
        [reply] = replies
        assert reply["status"] == "failed" and reply["correlation_id"] == "b"
        error = reply["error"]
        assert error["type"].startswith("urn:envhub:problem:") and error["status"] in (400, 422)
        assert where in error["where"], error
    assert home.services.environments.store.history("w", "env", top=5, cursor=None).items == []


def test_ensure_image_replies_twice_around_one_build(home: Home) -> None:
    for correlation_id in ("e-1", "e-2"):  # two messages of the same content: one build
        home.send(home.settings.registration_queue, registration(correlation_id, ensure_image=True))
    replies = home.replies_after_work(4)
    assert [(r["correlation_id"], r["status"]) for r in replies] == [
        ("e-1", "registered"), ("e-2", "registered"), ("e-1", "built"), ("e-2", "built")] or sorted(
        (r["correlation_id"], r["status"]) for r in replies) == [
        ("e-1", "built"), ("e-1", "registered"), ("e-2", "built"), ("e-2", "registered")]
    built = [r for r in replies if r["status"] == "built"]
    assert {r["build_id"] for r in built} == {replies[0]["build_id"]} and all(r["digest"] for r in built)
    assert home.builder.starts == 1


class Hook(http.server.BaseHTTPRequestHandler):
    """A sender's webhook: records each JSON body; answers 503 to the first POST when told to."""

    received: ClassVar[list[dict[str, Any]]] = []
    fail_first = False

    def do_POST(self) -> None:  # the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if Hook.fail_first:
            Hook.fail_first = False
            self.send_response(503)
        else:
            Hook.received.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An https webhook on a loopback port, its certificate from a CA this process trusts (SSL_CERT_FILE)."""
    tls = local_tls.ensure(tmp_path / "hook")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))  # read when envhub makes its client
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.certificate, tls.key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Hook.received, Hook.fail_first = [], True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_reply_is_posted_to_a_listed_webhook(home: Home, webhook: str) -> None:
    home.settings = home.settings.model_copy(update={"reply_webhooks": webhook})
    home.restart()
    home.send(home.settings.registration_queue, registration(reply_to=f"https://{webhook}/replies"))
    home.work()  # the webhook's first answer is a 503: retried, then taken
    assert [(r["correlation_id"], r["status"], r["environment"]) for r in Hook.received] == [
        ("c-1", "registered", "env:1")]
    home.send(home.settings.registration_queue, registration("c-2", reply_to="https://elsewhere.example/x"))
    home.work()
    [(_, reason)] = home.poisoned(home.settings.registration_queue)
    assert "ENVHUB_REPLY_WEBHOOKS" in reason and len(Hook.received) == 1


def test_a_store_outage_is_retried_by_the_queue_and_lasting_ones_get_a_503_reply(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    store = home.services.environments.store
    real_insert = store.insert_next
    outages = iter([True])  # the first registration attempt meets an outage; the retry does not

    def flaky(record: Any) -> Any:
        if next(outages, False):
            raise StoreUnavailable("the store did not answer")
        return real_insert(record)

    monkeypatch.setattr(store, "insert_next", flaky)
    home.send(home.settings.registration_queue, registration())
    [reply] = home.replies_after_work(1)
    assert reply["status"] == "registered" and reply["environment"] == "env:1"
    assert home.poisoned(home.settings.registration_queue) == []

    def down(record: Any) -> Any:
        raise StoreUnavailable("the store did not answer")

    monkeypatch.setattr(store, "insert_next", down)
    home.send(home.settings.registration_queue, registration("c-2", name="other"))
    [failed] = home.replies_after_work(1)
    assert (failed["correlation_id"], failed["status"], failed["error"]["status"]) == ("c-2", "failed", 503)
    [(_, reason)] = home.poisoned(home.settings.registration_queue)
    assert "did not answer" in reason
    assert [r.name for r in store.history("w", "other", top=5, cursor=None).items] == []


def test_a_built_reply_that_could_not_be_sent_is_sent_by_the_sweep(home: Home, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    replies = home.services.intake.replies
    real_send = replies.send
    down = [True]

    def reply_queue_down_at_the_end(reply_to: str, body: dict[str, Any]) -> None:
        if body["status"] == "built" and down[0]:
            raise OSError("the reply queue is down")
        real_send(reply_to, body)

    monkeypatch.setattr(replies, "send", reply_queue_down_at_the_end)
    home.send(home.settings.registration_queue, registration(ensure_image=True))
    [first] = home.replies_after_work(2, timeout=3)  # the build ends, its reply cannot be sent
    assert first["status"] == "registered" and first["build_id"]
    build = home.services.images.builds.get(first["build_id"])
    assert build is not None and build.status.finished
    assert home.services.intake.recover() == 0 and home.replies() == []  # still down: kept for the next sweep
    down[0] = False
    assert home.services.intake.recover() == 1
    [built] = home.replies()
    assert (built["correlation_id"], built["status"], built["digest"]) == ("c-1", "built", build.digest)
    assert home.services.intake.recover() == 0  # sent once


def test_a_crash_before_the_record_never_takes_an_older_version_for_its_own(home: Home) -> None:
    home.services.environments.register(workspace="w", name="env", document=DEFINITION)  # env:1, same content
    inbox = home.services.ports["inbox"].adapter
    real_finish = inbox.finish
    inbox.finish = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("killed before the record"))
    home.send(home.settings.registration_queue, registration())
    home.work()
    inbox.finish = real_finish
    home.restart()
    [reply] = home.replies_after_work(1)
    assert reply["environment"] == "env:2"  # its own write, found again; not the older version 1
    versions = [r.version for r in home.services.environments.store.history("w", "env", top=5, cursor=None).items]
    assert versions == ["2", "1"]


def test_a_message_given_up_on_is_poisoned_even_when_its_reply_cannot_be_sent(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the store did not answer")

    def broken(reply_to: str, body: dict[str, Any]) -> None:
        raise RuntimeError("the reply queue refused the message")

    monkeypatch.setattr(home.services.environments.store, "insert_next", down)
    monkeypatch.setattr(home.services.intake.replies, "send", broken)
    home.send(home.settings.registration_queue, registration())
    deadline = time.monotonic() + 15
    while not home.poisoned(home.settings.registration_queue) and time.monotonic() < deadline:
        home.work()
    [(_, reason)] = home.poisoned(home.settings.registration_queue)
    assert "did not answer" in reason


def test_a_sender_can_ask_over_http_what_became_of_its_message(home: Home) -> None:
    home.send(home.settings.registration_queue, registration("ask/me:1"))
    home.work()
    [reply] = home.replies()
    with authorized(TestClient(create_app(home.services))) as client:
        found = client.get("/api/workspaces/w/messages/ask/me:1")
        assert found.status_code == 200, found.text
        assert found.json()["reply"] == reply and found.json()["correlation_id"] == "ask/me:1"
        missing = client.get("/api/workspaces/w/messages/never-sent")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        reader = token_for(home.services, "other", "reader")
        hidden = client.get("/api/workspaces/w/messages/ask/me:1", headers={"authorization": f"Bearer {reader}"})
        assert hidden.status_code == 404  # no role in the workspace: nothing there
