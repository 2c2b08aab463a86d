"""Work handed to envhub as queue messages: their schemas, what is remembered per correlation id, and replies."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from shared.domain.errors import EnvhubError
from shared.domain.outbound import host_problem, ip_literal, split_host, wildcard_match

REGISTRATION = "envhub.registration/1"
JOB_SUBMISSION = "envhub.job-submission/1"
SCHEMAS = (REGISTRATION, JOB_SUBMISSION)
QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # Azure Storage's rule for queue names
CorrelationId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]


class InvalidMessage(EnvhubError):
    """A message that can never be processed (not JSON, an unknown schema, fields missing): final at once."""

    slug = "invalid-message"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: str = Field(min_length=1, max_length=255)
    correlation_id: CorrelationId
    reply_to: str | None = Field(None, max_length=2048, description="a queue of the sender's, or an https webhook")
    ensure_image: bool = False
    sender: str | None = Field(None, max_length=255, description="who sent it, as the sender says (audited, "
                                                                 "never trusted: the queue grants what it grants)")


class RegistrationMessage(_Message):
    """Register an environment version, as POST /api/workspaces/{ws}/environments/{name}/versions does."""

    schema_: Literal["envhub.registration/1"] = Field(alias="schema")
    name: str = Field(min_length=1, max_length=255)
    version: str | None = Field(None, max_length=255)
    definition: dict[str, Any]


class JobSubmissionMessage(_Message):
    """Submit a job: its environment inline (registered anonymously) or 'azureml:name:version' / '@latest'."""

    schema_: Literal["envhub.job-submission/1"] = Field(alias="schema")
    job: dict[str, Any]


Message = RegistrationMessage | JobSubmissionMessage


class Reply(BaseModel):
    """What envhub sends to `reply_to`: the outcome, or after an ensured image's build, that build's end."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    status: Literal["registered", "submitted", "failed", "built"]
    environment: str | None = None  # name:version
    hash: str | None = None
    image: str | None = None
    digest: str | None = None
    build_id: str | None = None
    job: str | None = None
    error: dict[str, Any] | None = None  # a problem+json body


class InboxEntry(BaseModel):
    """What envhub remembers of a (workspace, correlation id): the message's fingerprint, when it was first taken,
    and once processed, the reply it gave (a redelivery gives it again and changes nothing)."""

    model_config = ConfigDict(frozen=True)

    workspace: str
    correlation_id: str
    fingerprint: str
    claimed_at: datetime
    reply: dict[str, Any] | None = None
    build_id: str | None = None
    # For a registration without a version: the name's next integer version when the message was claimed. A version
    # of the same content numbered from there on is the one this message wrote before a crash (no clocks compared).
    next_version: int | None = None


class BuildWaiter(BaseModel):
    """A reply owed when a build ends (a message that asked for its image)."""

    model_config = ConfigDict(frozen=True)

    build_id: str
    workspace: str
    correlation_id: str
    reply_to: str


def parse_message(body: str, *, max_bytes: int) -> Message:
    """A message body as one of the schemas; InvalidMessage says what is wrong and where."""
    if len(body.encode("utf8", errors="surrogatepass")) > max_bytes:
        raise InvalidMessage(f"the message is larger than {max_bytes} bytes", where="<message>")
    try:
        data = json.loads(body)
    except ValueError as error:
        raise InvalidMessage(f"the message is not JSON ({error})", where="<message>") from None
    if not isinstance(data, dict):
        raise InvalidMessage("the message is a JSON object", where="<message>")
    schema = data.get("schema")
    model: type[RegistrationMessage] | type[JobSubmissionMessage]
    if schema == REGISTRATION:
        model = RegistrationMessage
    elif schema == JOB_SUBMISSION:
        model = JobSubmissionMessage
    else:
        raise InvalidMessage(f"unknown schema {str(schema)[:100]!r}; envhub reads {', '.join(SCHEMAS)}",
                             where="schema")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<message>"
        raise InvalidMessage(f"{first['msg']} ({error.error_count()} problem(s) in all)", where=where) from None


def salvage(body: str) -> tuple[str | None, str | None, str | None]:
    """(workspace, correlation_id, reply_to) of a message that failed to parse, where they can be read, so that
    even a bad message gets its failure reply."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    found = tuple(data.get(key) if isinstance(data.get(key), str) else None
                  for key in ("workspace", "correlation_id", "reply_to"))
    return found[0], found[1], found[2]


def fingerprint(message: Message) -> str:
    """The content of a message (what it asks for, not where replies go): the same correlation id with other
    content is a mistake of the sender's, refused rather than taken for a redelivery."""
    content = message.model_dump(mode="json", by_alias=True, exclude={"reply_to", "sender"})
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_reply_to(reply_to: str | None, *, own_queues: frozenset[str], webhooks: frozenset[str] = frozenset()
                   ) -> None:
    """A reply goes to a queue of the sender's (never one envhub reads: a reply there would be taken for work), or
    to an https webhook whose host[:port] is on ENVHUB_REPLY_WEBHOOKS (`*.suffix` entries match names below it)."""
    if reply_to is None:
        return
    if reply_to.startswith("https://"):
        refusal = webhook_refusal(urlsplit(reply_to).netloc, webhooks)
        if refusal is not None:
            raise InvalidMessage(refusal, where="reply_to")
        return
    if not QUEUE_NAME.match(reply_to):
        raise InvalidMessage("reply_to is a queue name (3-63 lowercase letters, digits and single hyphens) or an "
                             "https webhook", where="reply_to")
    if reply_to in own_queues or reply_to.removesuffix("-poison") in own_queues:
        raise InvalidMessage(f"'{reply_to}' is one of envhub's own queues; reply to a queue of yours",
                             where="reply_to")


def webhook_refusal(netloc: str, webhooks: frozenset[str]) -> str | None:
    """Why envhub may not post a reply to `netloc` (host[:port] of an https URL), or None. Loopback and private
    addresses only when written on the list as IP literals; names are checked again when connecting."""
    name = netloc.lower()
    problem = host_problem(name)
    if problem is not None:
        return f"the webhook '{netloc[:200]}' is refused: {problem}"
    if name in webhooks:
        return None
    host, port = split_host(name)
    address = ip_literal(host)
    listed = address is None and any(wildcard_match(entry, host, port) for entry in webhooks)
    if listed and not (host == "localhost" or host.endswith(".localhost")):
        return None
    return (f"replies go to webhooks on ENVHUB_REPLY_WEBHOOKS only ({', '.join(sorted(webhooks)) or 'none listed'}),"
            f" not '{netloc[:200]}'")
