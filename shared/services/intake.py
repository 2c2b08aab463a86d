"""Work taken from queues: registrations and job submissions, processed once per correlation id, with replies."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.builds import BuildRecord, BuildStatus
from shared.domain.errors import EnvhubError, MessageRefused, NotFound, Unavailable, VersionConflict
from shared.domain.inbox import (
    BuildWaiter,
    InboxEntry,
    InvalidMessage,
    JobSubmissionMessage,
    Message,
    RegistrationMessage,
    Reply,
    check_reply_to,
    fingerprint,
    parse_message,
    salvage,
)
from shared.domain.problems import problem_of, status_of
from shared.domain.records import EnvironmentRecord
from shared.ports import BuildStore, InboxStore, QueueMessage, ReplySender
from shared.services.access import AccessService
from shared.services.environments import EnvironmentService
from shared.services.images import ImageService
from shared.services.jobs import JobService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeQueues:
    """The queues messages come from, and every queue envhub itself reads (replies never go there)."""

    registrations: str
    submissions: str
    own: frozenset[str]
    webhooks: frozenset[str] = frozenset()


class Intake:
    """One message at a time: parse, claim its correlation id, process through the same use cases as HTTP, record
    the reply, send it. A redelivered message finds its reply recorded and only sends it again."""

    def __init__(self, *, environments: EnvironmentService, jobs: JobService, images: ImageService,
                 builds: BuildStore, inbox: InboxStore, replies: ReplySender, access: AccessService,
                 queues: IntakeQueues, max_bytes: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.environments = environments
        self.jobs = jobs
        self.images = images
        self.builds = builds
        self.inbox = inbox
        self.replies = replies
        self.access = access
        self.queues = queues
        self.max_bytes = max_bytes
        self.clock = clock

    # -- entry points -------------------------------------------------------------------------------------

    def handle(self, queue: str, message: QueueMessage) -> None:
        """Process one message of `queue`. Raises MessageRefused for a message that can never succeed (after its failure
        reply); anything else raised is a fault worth a retry (the queue redelivers)."""
        parsed = self._parse(queue, message.body)
        content = fingerprint(parsed)
        entry = self.inbox.claim(InboxEntry(workspace=parsed.workspace, correlation_id=parsed.correlation_id,
                                            fingerprint=content, claimed_at=self.clock(),
                                            next_version=self._next_version(parsed)))
        if entry.fingerprint != content:
            error = VersionConflict(f"correlation id '{parsed.correlation_id}' was used before for another message "
                                    "in this workspace; each message needs its own", where="correlation_id")
            self._reply(parsed.reply_to, self._failure(parsed.correlation_id, error, queue))
            self._audit(queue, parsed, status_of(error))
            raise MessageRefused(str(error))
        if entry.reply is None:
            entry = self._process(queue, parsed, entry)
        reply = Reply.model_validate(entry.reply)
        self._reply(parsed.reply_to, reply)
        if reply.status == "failed":
            raise MessageRefused(str((reply.error or {}).get("detail", "failed")))
        if parsed.ensure_image:
            self._follow_build(parsed, reply)

    def entry(self, workspace: str, correlation_id: str) -> InboxEntry:
        """What envhub remembers of a message: when it was taken, and its reply once processed."""
        found = self.inbox.get_entry(workspace, correlation_id)
        if found is None:
            raise NotFound(f"no message with correlation id '{correlation_id}' was taken in workspace "
                           f"'{workspace}'", where="correlation_id")
        return found

    def give_up(self, queue: str, message: QueueMessage, reason: str) -> None:
        """A message retried until the queue gave up (a backend kept failing): its sender hears so."""
        workspace, correlation_id, reply_to = salvage(message.body)
        if correlation_id is None or reply_to is None:
            log.error("gave up on message %s of %s, which names no reply: %s", message.id, queue, reason)
            return
        error = Unavailable(f"envhub could not process the message: {reason}", where="<message>")
        try:
            check_reply_to(reply_to, own_queues=self.queues.own, webhooks=self.queues.webhooks)
            self.replies.send(reply_to, self._failure(correlation_id, error, queue).model_dump(exclude_none=True))
        except Exception as failure:  # the message goes to the poison queue whatever happens to its reply
            log.error("could not reply to %s about message %s: %s", reply_to, message.id, failure)
        log.error("gave up on message %s of %s (%s/%s): %s", message.id, queue, workspace, correlation_id, reason)

    def build_finished(self, build: BuildRecord) -> None:
        """Send the replies owed for a build that ended (messages that asked for their image)."""
        for waiter in self.inbox.take_waiters(build.id):
            self._send_built(waiter, build)

    def recover(self, top: int = 500) -> int:
        """The recovery sweep: replies still owed for builds that ended (a reply queue or webhook that was down, a
        process that died between the build's end and its replies); return how many were sent."""
        sent = 0
        for waiter in self.inbox.pending_waiters(top):
            build = self.builds.get(waiter.build_id)
            if build is not None and not build.status.finished:
                continue
            if self.inbox.take_waiter(waiter.build_id, waiter.workspace, waiter.correlation_id) is None:
                continue  # another sweep or the build's own listener took it
            if build is None:
                log.error("build %s of message %s/%s is gone; no reply is sent", waiter.build_id, waiter.workspace,
                          waiter.correlation_id)
                continue
            sent += self._send_built(waiter, build)
        return sent

    # -- steps -------------------------------------------------------------------------------------------

    def _parse(self, queue: str, body: str) -> Message:
        try:
            parsed = parse_message(body, max_bytes=self.max_bytes)
            expected = RegistrationMessage if queue == self.queues.registrations else JobSubmissionMessage
            if not isinstance(parsed, expected):
                other = self.queues.submissions if expected is RegistrationMessage else self.queues.registrations
                raise InvalidMessage(f"this is the {queue} queue; a {parsed.schema_} message goes to {other}",
                                     where="schema")
            check_reply_to(parsed.reply_to, own_queues=self.queues.own, webhooks=self.queues.webhooks)
            return parsed
        except InvalidMessage as error:
            workspace, correlation_id, reply_to = salvage(body)
            if correlation_id is not None and reply_to is not None and error.where != "reply_to":
                self._reply(reply_to, self._failure(correlation_id, error, queue), quiet=True)
            self.access.record(workspace=workspace or "", who=f"queue:{queue}", action=f"QUEUE {queue}",
                               status=status_of(error), request_id=correlation_id or "")
            raise MessageRefused(str(error)) from None

    def _process(self, queue: str, message: Message, entry: InboxEntry) -> InboxEntry:
        try:
            reply, build_id = self._do(message, entry)
        except Unavailable:
            raise  # a backend fault: the queue retries
        except EnvhubError as error:  # the message's own fault: final, recorded so a redelivery answers the same
            reply, build_id = self._failure(message.correlation_id, error, queue), None
        stored = self.inbox.finish(message.workspace, message.correlation_id, reply.model_dump(exclude_none=True),
                                   build_id)
        self._audit(queue, message, 200 if reply.status != "failed" else int((reply.error or {}).get("status", 400)))
        return stored or entry

    def _do(self, message: Message, entry: InboxEntry) -> tuple[Reply, str | None]:
        if isinstance(message, RegistrationMessage):
            record = self._register(message, entry)
            reply = Reply(correlation_id=message.correlation_id, status="registered",
                          environment=f"{record.name}:{record.version}", hash=record.description.hash)
            job = None
        else:
            job_record, record = self._submit(message)
            job = job_record.id
            reply = Reply(correlation_id=message.correlation_id, status="submitted",
                          environment=f"{record.name}:{record.version}", hash=record.description.hash, job=job)
        image = self.images.target(record)
        reply = reply.model_copy(update={"image": str(image)})
        if not message.ensure_image:
            return reply, None
        ensured = self.images.ensure(workspace=message.workspace, name=record.name, version=record.version)
        if ensured.build is None:
            return reply.model_copy(update={"digest": ensured.digest}), None
        return reply.model_copy(update={"build_id": ensured.build.id}), ensured.build.id

    def _register(self, message: RegistrationMessage, entry: InboxEntry) -> EnvironmentRecord:
        if message.version is None and (earlier := self._registered_since(message, entry)) is not None:
            return earlier  # a crash after the write and before the reply was recorded: that write was ours
        return self.environments.register(workspace=message.workspace, name=message.name,
                                          document=message.definition, version=message.version).record

    def _next_version(self, message: Message) -> int | None:
        if not isinstance(message, RegistrationMessage) or message.version is not None:
            return None
        container = self.environments.store.container(message.workspace, message.name)
        return 1 if container is None else int(container.next_version)

    def _registered_since(self, message: RegistrationMessage, entry: InboxEntry) -> EnvironmentRecord | None:
        """The version this message registered before a crash: one with its content, numbered from the name's next
        version at the claim on (versions are never reused, so an older one is not this message's)."""
        if entry.next_version is None:
            return None
        described = self.environments.describe_document({**message.definition, "name": message.name})
        page = self.environments.store.history(message.workspace, message.name, top=20, cursor=None)
        return next((r for r in page.items if r.description.hash == described.hash and r.version.isdigit()
                     and int(r.version) >= entry.next_version), None)

    def _submit(self, message: JobSubmissionMessage) -> tuple[Any, EnvironmentRecord]:
        job = dict(message.job)
        # A job without a name gets one from its correlation id: a redelivery finds the job it recorded.
        key = hashlib.sha256(f"{message.workspace}\n{message.correlation_id}".encode()).hexdigest()[:24]
        job.setdefault("name", f"msg-{key}")
        try:
            return self.jobs.submit(workspace=message.workspace, job=job)
        except VersionConflict:
            existing = self.jobs.store.get_job(message.workspace, str(job["name"]))
            if existing is None or existing.spec != {k: v for k, v in job.items() if k != "environment"}:
                raise
            return existing, self.environments.get(workspace=message.workspace, name=existing.environment_name,
                                                   version=existing.environment_version)

    def _follow_build(self, message: Message, reply: Reply) -> None:
        """The second reply of an ensured image: at once when there was nothing to build, else when the build ends
        (now, if it already has)."""
        if message.reply_to is None:
            return
        if reply.build_id is None:
            self._reply(message.reply_to, reply.model_copy(update={"status": "built"}))
            return
        waiter = BuildWaiter(build_id=reply.build_id, workspace=message.workspace,
                             correlation_id=message.correlation_id, reply_to=message.reply_to)
        self.inbox.wait_for(waiter)
        build = self.builds.get(reply.build_id)
        if build is not None and build.status.finished and self.inbox.take_waiter(
                waiter.build_id, waiter.workspace, waiter.correlation_id) is not None:
            self._send_built(waiter, build)

    def _send_built(self, waiter: BuildWaiter, build: BuildRecord) -> bool:
        entry = self.inbox.get_entry(waiter.workspace, waiter.correlation_id)
        first = Reply.model_validate(entry.reply) if entry is not None and entry.reply else Reply(
            correlation_id=waiter.correlation_id, status="registered")
        if build.status is BuildStatus.SUCCEEDED:
            second = first.model_copy(update={"status": "built", "digest": build.digest})
        else:
            error = NotFound(f"build {build.id} {build.status.value}: {build.reason or 'no reason given'}",
                             where=f"builds/{build.id}")
            second = first.model_copy(update={"status": "failed", "error": {
                **problem_of(error, f"/api/workspaces/{waiter.workspace}/builds/{build.id}"),
                "status": 500, "type": "urn:envhub:problem:build-failed", "title": "Build failed"}})
        try:
            self.replies.send(waiter.reply_to, second.model_dump(exclude_none=True))
        except Exception as error:  # put back: the recovery sweep sends it later
            log.warning("could not reply to %s that build %s ended (%s); the sweep will retry", waiter.reply_to,
                        build.id, error)
            self.inbox.wait_for(waiter)
            return False
        return True

    # -- helpers -----------------------------------------------------------------------------------------

    def _failure(self, correlation_id: str, error: EnvhubError, queue: str) -> Reply:
        return Reply(correlation_id=correlation_id, status="failed", error=problem_of(error, f"queue:{queue}"))

    def _reply(self, reply_to: str | None, reply: Reply, *, quiet: bool = False) -> None:
        if reply_to is None:
            return
        try:
            self.replies.send(reply_to, reply.model_dump(exclude_none=True))
        except Exception as error:
            if not quiet:
                raise  # the reply is part of the work: retried with the message (it is recorded, not redone)
            log.error("could not send the failure reply to %s: %s", reply_to, error)

    def _audit(self, queue: str, message: Message, status: int) -> None:
        claimed = f" (sender says {message.sender})" if message.sender else ""
        self.access.record(workspace=message.workspace, who=f"queue:{queue}{claimed}",
                           action=f"QUEUE {queue} {message.schema_}", status=status,
                           request_id=message.correlation_id)
