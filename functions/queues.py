"""Queue and timer triggers for Azure: build steps (the same JSON the local queue carries) and their poison
queue, the recovery sweep that re-sends the steps of builds whose messages were lost, and the patch scan
(its timer fans out, its queue trigger scans one repository)."""

from __future__ import annotations

import json
from datetime import timedelta

import azure.functions as func

from shared.bootstrap import Services
from shared.domain.errors import MessageRefused
from shared.ports import QueueMessage

POISON_SUFFIX = "-poison"  # where the Functions host moves a message after maxDequeueCount failures
RECOVERY_SCHEDULE = "0 */5 * * * *"  # NCRONTAB: every five minutes
GC_SCHEDULE = "0 30 4 * * *"  # NCRONTAB: daily at 04:30 UTC


def _message(message: func.QueueMessage) -> QueueMessage:
    return QueueMessage(id=message.id or "", receipt=message.pop_receipt or "",
                        body=message.get_body().decode("utf8"), dequeue_count=message.dequeue_count or 1)


def is_envelope(body: str) -> bool:
    """Whether a poison-queue message is envhub's own envelope (`{"body", "reason", ...}`), not a bare original."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and {"body", "reason"} <= data.keys()


def _take(services: Services, queue: str, message: func.QueueMessage) -> None:
    """A registration or job submission. A message that can never succeed goes to the poison queue at once, its
    sender told; other faults propagate, and the host retries them up to maxDequeueCount."""
    taken = _message(message)
    try:
        services.intake.handle(queue, taken)
    except MessageRefused as refused:
        # Our own envelope, with the reason, then the message deleted: the host's later delete finds it gone,
        # which it takes as done.
        services.consumers[queue].queue.poison(taken, f"refused: {refused}")


def _gave_up(services: Services, queue: str, message: func.QueueMessage) -> None:
    """The poison queue: messages the host moved after the last retry get their failure reply; those envhub
    refused itself (its envelope) were answered already."""
    body = message.get_body().decode("utf8")
    if is_envelope(body):
        return
    services.intake.give_up(queue, _message(message), "retried until the queue gave up")


def _intake(bp: func.Blueprint, services: Services, kind: str, queue: str) -> None:
    """The triggers of one queue of work handed in as messages: `<kind>_received`, and `<kind>_gave_up` on its
    poison queue."""

    @bp.function_name(f"{kind}_received")
    @bp.queue_trigger(arg_name="message", queue_name=queue, connection="AzureWebJobsStorage")
    def received(message: func.QueueMessage) -> None:
        _take(services, queue, message)

    @bp.function_name(f"{kind}_gave_up")
    @bp.queue_trigger(arg_name="message", queue_name=queue + POISON_SUFFIX, connection="AzureWebJobsStorage")
    def gave_up(message: func.QueueMessage) -> None:
        _gave_up(services, queue, message)


def blueprint(services: Services) -> func.Blueprint:
    """The triggers over these services. A handler that raises is retried by the host (host.json sets
    maxDequeueCount); after the last try the message lands in the poison queue, and the build fails."""
    bp = func.Blueprint()
    queue = services.settings.build_queue

    @bp.function_name("build_requested")
    @bp.queue_trigger(arg_name="message", queue_name=queue, connection="AzureWebJobsStorage")
    def build_requested(message: func.QueueMessage) -> None:
        services.building.handle_message(_message(message))

    @bp.function_name("build_gave_up")
    @bp.queue_trigger(arg_name="message", queue_name=queue + POISON_SUFFIX, connection="AzureWebJobsStorage")
    def build_gave_up(message: func.QueueMessage) -> None:
        services.building.give_up(_message(message), "the build step was retried until the queue gave up")

    scans = services.settings.scan_queue

    @bp.function_name("scan_requested")
    @bp.queue_trigger(arg_name="message", queue_name=scans, connection="AzureWebJobsStorage")
    def scan_requested(message: func.QueueMessage) -> None:
        services.scanning.handle_message(_message(message))

    @bp.function_name("scan_gave_up")
    @bp.queue_trigger(arg_name="message", queue_name=scans + POISON_SUFFIX, connection="AzureWebJobsStorage")
    def scan_gave_up(message: func.QueueMessage) -> None:
        services.scanning.give_up(_message(message), "the registry was retried until the queue gave up")

    _intake(bp, services, "registration", services.settings.registration_queue)
    _intake(bp, services, "submission", services.settings.submission_queue)

    @bp.function_name("patch_scan")
    @bp.timer_trigger(arg_name="timer", schedule="%PATCH_SCAN_SCHEDULE%", run_on_startup=False)
    def patch_scan(timer: func.TimerRequest) -> None:
        # Only fans out: one message per base repository; the queue-triggered workers do the scanning.
        services.scanning.start("timer")

    @bp.function_name("recover_builds")
    @bp.timer_trigger(arg_name="timer", schedule=RECOVERY_SCHEDULE, run_on_startup=False)
    def recover_builds(timer: func.TimerRequest) -> None:
        services.building.recover()

    @bp.function_name("recover_replies")
    @bp.timer_trigger(arg_name="timer", schedule=RECOVERY_SCHEDULE, run_on_startup=False)
    def recover_replies(timer: func.TimerRequest) -> None:
        # Replies owed for builds that ended while a reply queue or webhook was down.
        services.intake.recover()

    @bp.function_name("collect_context_garbage")
    @bp.timer_trigger(arg_name="timer", schedule=GC_SCHEDULE, run_on_startup=False)
    def collect_context_garbage(timer: func.TimerRequest) -> None:
        # Blobs of uploads that were refused or interrupted, which no manifest names.
        services.contexts.collect_garbage(timedelta(hours=services.settings.context_gc_hours))

    return bp
