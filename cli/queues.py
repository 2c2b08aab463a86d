"""`envhub queue put|get`: send a message to one of envhub's queues, or take one, as another system would.

The queue backend is the one the settings name (ENVHUB_QUEUE: the SQLite queue under the data folder, or Azure
Storage queues); while `envhub serve --emulators` runs, its Azurite (named in <data dir>/emulators.json)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from cli.app import Json, app, err, fail, out

if TYPE_CHECKING:
    from shared.settings import Settings

queues = typer.Typer(help="Send messages to envhub's queues and take them off (the SQLite queue, or Azure "
                          "Storage queues as ENVHUB_QUEUE says).", no_args_is_help=True)
app.add_typer(queues, name="queue")

EMULATORS_FILE = "emulators.json"  # written by `envhub serve --emulators` (shared.local_stack) while it runs
POISON_SUFFIX = "-poison"
VISIBILITY_SECONDS = 30.0  # a taken message reappears this long after a reader died before deleting it
POLL_SECONDS = 0.2
MAX_BASE64_BYTES = 64 * 1024  # Azure Storage's limit for one message, as it travels (base64)
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")  # Azure Storage's queue names
_EXPLICIT = ("ENVHUB_QUEUE", "ENVHUB_STORAGE_CONNECTION_STRING")

QueueName = Annotated[str, typer.Argument(help="The queue: 3-63 lowercase letters, digits and single hyphens; "
                                               "NAME-poison is NAME's poisoned messages.")]


def queue_name(value: str) -> str:
    """An Azure Storage queue name, or exit 2 with one line."""
    if not _NAME.fullmatch(value):
        fail(f"{value!r} is not a queue name: 3-63 lowercase letters, digits and single hyphens, starting and "
             "ending with a letter or digit")
    return value


def queue_settings() -> tuple[Settings, Path | None]:
    """The settings from ENVHUB_*; while `envhub serve --emulators` runs (its emulators.json is in the data
    folder) and neither ENVHUB_QUEUE nor ENVHUB_STORAGE_CONNECTION_STRING is set, its Azurite. Returns the
    emulators file used, if any."""
    from shared.settings import Settings

    try:
        settings = Settings()
        found = settings.data_dir / EMULATORS_FILE
        explicit = {key.upper() for key in os.environ} & set(_EXPLICIT)
        if explicit or not found.is_file():
            return settings, None
        try:
            emulators = json.loads(found.read_text())
            connection = str(emulators["storage_connection_string"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            fail(f"cannot read {found} ({error}); remove it if `envhub serve --emulators` is not running", 2)
        return Settings(queue="storage", storage_connection_string=connection, storage_create=True), found
    except ValidationError as error:
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        fail(f"envhub's settings are not valid: {why}", 2)


def _text(file: str) -> str:
    """FILE's text (`-`: stdin), unchanged; exit 2 when it cannot be read or would not fit a queue message."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        text = data.decode("utf-8")
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror or error}")
    except UnicodeDecodeError:
        fail(f"{'stdin' if file == '-' else file} is not UTF-8 text; a message body must be")
    if not text:
        fail(f"{'stdin' if file == '-' else file} is empty; a message needs a body")
    encoded = len(base64.b64encode(data))
    if encoded > MAX_BASE64_BYTES:
        fail(f"the message is {len(data)} bytes; a queue message takes at most 48 KiB (64 KiB once base64-encoded, "
             "as Azure Storage queues carry it)")
    return text


@contextlib.contextmanager
def _backend(queue: str, emulators: Path | None) -> Iterator[None]:
    """Failures of the queue backend as one line: exit 3 when it cannot be reached, else 1."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as error:  # every backend failure ends as one line, never a traceback
        _explain(error, queue, emulators)


def _explain(error: Exception, queue: str, emulators: Path | None) -> NoReturn:
    from shared.domain.errors import Unavailable

    hint = (f" (the queue named in {emulators}: is `envhub serve --emulators` still running? remove the file if "
            "not)") if emulators is not None else ""
    if isinstance(error, Unavailable):
        fail(f"cannot reach the queue {queue}: {error.detail}{hint}", 3)
    if isinstance(error, sqlite3.Error):
        fail(f"the SQLite queue failed on {queue}: {error}", 1)
    if "azure.core" in sys.modules:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        from shared.adapters.azure_errors import TRANSIENT

        if isinstance(error, ClientAuthenticationError):
            fail(f"cannot sign in to Azure Storage for {queue}: {_first_line(error)}", 3)
        if isinstance(error, HttpResponseError):
            if error.status_code in TRANSIENT:
                fail(f"Azure Storage did not answer for {queue} ({error.status_code}){hint}", 3)
            code = getattr(error, "error_code", None) or error.status_code
            fail(f"Azure Storage refused {queue} ({code}): {_first_line(error)}", 1)
        if isinstance(error, AzureError):
            fail(f"cannot reach Azure Storage for {queue} ({type(error).__name__}: {_first_line(error)}){hint}", 3)
    if isinstance(error, ValueError):
        fail(str(error), 2)
    raise error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@queues.command("put")
def put(
    queue: QueueName,
    file: Annotated[str, typer.Argument(help="The message body: a file, or - for stdin (sent as is).")],
    as_json: Json = False,
) -> None:
    """Send FILE's text to QUEUE as one message (JSON messages are the use; the text is sent unchanged)."""
    from shared.factories import named_queue

    queue_name(queue)
    text = _text(file)
    settings, emulators = queue_settings()
    base = _poison_of(queue)
    with _backend(queue, emulators):
        if base is not None and settings.queue == "sqlite":
            fail(f"{queue} is where the SQLite queue keeps the poisoned messages of {base}; messages get there by "
                 "being poisoned, not sent", 2)
        if base is not None:  # a real queue on Storage: the poison sibling of `base`, without creating its own
            named_queue(settings, base).poison_client.send_message(text)
        else:
            named_queue(settings, queue).send(text)
    if as_json:
        print(json.dumps({"queue": queue, "bytes": len(text.encode("utf-8"))}))
    else:
        out.print(f"sent to {queue}", markup=False, highlight=False)


@queues.command("get")
def get(
    queue: QueueName,
    wait: Annotated[float, typer.Option(min=0, help="Wait up to this many seconds for a message.")] = 0.0,
    as_json: Json = False,
) -> None:
    """Take one message off QUEUE: print its body and delete it. Exit 1 when there is none (after --wait)."""
    from shared.factories import named_queue

    queue_name(queue)
    settings, emulators = queue_settings()
    base = _poison_of(queue)
    with _backend(queue, emulators):
        backend = named_queue(settings, base or queue)
        take = (lambda: _take_poisoned(backend, queue)) if base is not None else (lambda: _take(backend, queue))
        taken = _wait_for(take, queue, wait)
    if taken is None:
        if as_json:
            print("null")
        err.print(f"no message on {queue}", markup=False, highlight=False)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps({**taken, "body": _parsed(taken["body"])}, ensure_ascii=False))
        return
    body = taken["body"]
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
    if "reason" in taken:
        err.print(f"poisoned: {taken['reason']}", markup=False, highlight=False)


def _poison_of(queue: str) -> str | None:
    """NAME for NAME-poison (when NAME is a queue name itself), else None."""
    base = queue.removesuffix(POISON_SUFFIX)
    return base if base != queue and _NAME.fullmatch(base) else None


def _wait_for(take: Any, queue: str, wait: float) -> dict[str, Any] | None:
    """One try, then (with --wait) one every POLL_SECONDS until a message comes or `wait` seconds pass."""
    deadline = time.monotonic() + wait
    taken: dict[str, Any] | None = take()
    if taken is not None or wait <= 0:
        return taken
    try:
        with err.status(f"waiting up to {wait:g} s for a message on {queue}"):
            while taken is None and time.monotonic() < deadline:
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                taken = take()
    except KeyboardInterrupt:
        fail(f"stopped waiting for a message on {queue}", 130)
    return taken


def _take(backend: Any, queue: str) -> dict[str, Any] | None:
    """Receive one message (hidden VISIBILITY_SECONDS meanwhile) and delete it: this reader has it."""
    try:
        message = backend.receive(VISIBILITY_SECONDS)
    except Exception as error:
        if _missing(error):  # a Storage queue nobody created yet holds nothing
            return None
        raise
    if message is None:
        return None
    backend.delete(message)
    return {"queue": queue, "id": message.id, "body": message.body, "dequeue_count": message.dequeue_count}


def _take_poisoned(backend: Any, queue: str) -> dict[str, Any] | None:
    """The oldest poisoned message: from SQLite's poison table, or the Storage `<name>-poison` queue (unwrapped)."""
    if hasattr(backend, "take_poisoned"):
        found = backend.take_poisoned()
        return None if found is None else {"queue": queue, "id": found[0], "body": found[1], "reason": found[2]}
    from shared.adapters.storage_queue import _unwrap

    client = backend.poison_client
    try:
        message = client.receive_message(visibility_timeout=int(VISIBILITY_SECONDS))
    except Exception as error:
        if _missing(error):
            return None
        raise
    if message is None:
        return None
    body, reason = _unwrap(str(message.content))
    client.delete_message(message.id, pop_receipt=message.pop_receipt)
    return {"queue": queue, "id": message.id, "body": body, "reason": reason}


def _missing(error: Exception) -> bool:
    if "azure.core" not in sys.modules:
        return False
    from azure.core.exceptions import ResourceNotFoundError

    return isinstance(error, ResourceNotFoundError)


def _parsed(body: str) -> Any:
    """The body as JSON when it is JSON, else the text."""
    try:
        return json.loads(body, parse_constant=_not_json)
    except ValueError:
        return body


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")  # NaN and Infinity: Python reads them, JSON has none
