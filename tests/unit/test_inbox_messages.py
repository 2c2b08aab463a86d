"""Queue messages' rules: schemas, what a bad message still tells, fingerprints, where replies may go."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.inbox import (
    InvalidMessage,
    JobSubmissionMessage,
    RegistrationMessage,
    check_reply_to,
    fingerprint,
    parse_message,
    salvage,
)

OWN = frozenset({"build-requests", "environment-registrations"})
WEBHOOKS = frozenset({"ci.example", "*.hooks.example", "127.0.0.1:8443"})
BASE: dict[str, Any] = {"schema": "envhub.registration/1", "workspace": "w", "correlation_id": "c-1",
                        "name": "env", "definition": {"image": "python:3.11"}}


def parse(**changes: Any) -> Any:
    return parse_message(json.dumps({**BASE, **changes}), max_bytes=4096)


def test_each_schema_parses_to_its_message() -> None:
    assert isinstance(parse(), RegistrationMessage) and parse().version is None
    job = parse_message(json.dumps({"schema": "envhub.job-submission/1", "workspace": "w", "correlation_id": "j",
                                    "job": {"command": "x", "environment": "azureml:e:1"}}), max_bytes=4096)
    assert isinstance(job, JobSubmissionMessage) and job.ensure_image is False


@pytest.mark.parametrize(("body", "where", "says"), [
    ("{", "<message>", "not JSON"),
    ("[1]", "<message>", "JSON object"),
    (json.dumps({**BASE, "schema": "envhub.registration/2"}), "schema", "unknown schema"),
    (json.dumps({k: v for k, v in BASE.items() if k != "workspace"}), "workspace", "Field required"),
    (json.dumps({**BASE, "correlation_id": "has space"}), "correlation_id", "pattern"),
    (json.dumps({**BASE, "extra": 1}), "extra", "not permitted"),
    (json.dumps({**BASE, "definition": "image: x"}), "definition", "dictionary"),
    (json.dumps({**BASE, "name": "x" * 5000}), "<message>", "larger than 4096 bytes"),
])
def test_bad_messages_say_what_and_where(body: str, where: str, says: str) -> None:
    with pytest.raises(InvalidMessage, match=says) as refused:
        parse_message(body, max_bytes=4096)
    assert refused.value.where == where


def test_a_bad_message_still_says_where_its_reply_goes() -> None:
    assert salvage(json.dumps({**BASE, "schema": "nope", "reply_to": "r"})) == ("w", "c-1", "r")
    assert salvage(json.dumps({"correlation_id": 3, "reply_to": ["r"]})) == (None, None, None)
    assert salvage("not json") == (None, None, None)


def test_a_fingerprint_is_the_content_not_the_reply_address() -> None:
    assert fingerprint(parse()) == fingerprint(parse(reply_to="other", sender="someone"))
    assert fingerprint(parse()) != fingerprint(parse(definition={"image": "python:3.12"}))
    assert fingerprint(parse()) != fingerprint(parse(ensure_image=True))


@pytest.mark.parametrize(("reply_to", "says"), [
    ("build-requests", "envhub's own queues"),
    ("environment-registrations-poison", "envhub's own queues"),
    ("Bad_Name", "queue name"),
    ("a--b", "queue name"),
    ("http://hooks.example/x", "queue name"),
    ("https://hooks.example/x", "ENVHUB_REPLY_WEBHOOKS only"),
    ("https://evil.example/x", "ENVHUB_REPLY_WEBHOOKS only"),
    ("https://a.hooks.example.evil.example/x", "ENVHUB_REPLY_WEBHOOKS only"),
    ("https://user:pw@ci.example/x", "user information"),
    ("https://10.0.0.5/x", "ENVHUB_REPLY_WEBHOOKS only"),  # a private address not written on the list
    ("https://x.localhost/x", "ENVHUB_REPLY_WEBHOOKS only"),
])
def test_replies_never_go_to_envhubs_own_queues_or_unlisted_hosts(reply_to: str, says: str) -> None:
    with pytest.raises(InvalidMessage, match=says) as refused:
        check_reply_to(reply_to, own_queues=OWN, webhooks=WEBHOOKS)
    assert refused.value.where == "reply_to"


@pytest.mark.parametrize("reply_to", ["ci-replies", None, "https://ci.example/hook", "https://a.b.hooks.example/x",
                                      "https://127.0.0.1:8443/replies"])
def test_replies_go_to_a_queue_of_the_senders_or_a_listed_webhook(reply_to: str | None) -> None:
    check_reply_to(reply_to, own_queues=OWN, webhooks=WEBHOOKS)
