"""Queue triggers for Azure: build requests (the same JSON the local queue carries) and their poison queue."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import BUILD_QUEUE, Services
from shared.ports import QueueMessage

POISON_SUFFIX = "-poison"  # where the Functions host moves a message after maxDequeueCount failures


def _message(message: func.QueueMessage) -> QueueMessage:
    return QueueMessage(id=message.id or "", receipt=message.pop_receipt or "",
                        body=message.get_body().decode("utf8"), dequeue_count=message.dequeue_count or 1)


def blueprint(services: Services) -> func.Blueprint:
    """The queue triggers over these services. A handler that raises is retried by the host (host.json
    sets maxDequeueCount); after the last try the message lands in the poison queue, and the build fails."""
    bp = func.Blueprint()

    @bp.function_name("build_requested")
    @bp.queue_trigger(arg_name="message", queue_name=BUILD_QUEUE, connection="AzureWebJobsStorage")
    def build_requested(message: func.QueueMessage) -> None:
        services.building.handle_message(_message(message))

    @bp.function_name("build_gave_up")
    @bp.queue_trigger(arg_name="message", queue_name=BUILD_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
    def build_gave_up(message: func.QueueMessage) -> None:
        services.building.give_up(_message(message), "the build request was retried until the queue gave up")

    return bp
