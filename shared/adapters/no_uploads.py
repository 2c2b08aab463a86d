"""No upload area: build contexts are files on this machine, so Azure ML's SDK has no account to upload to."""

from __future__ import annotations

from datetime import timedelta
from typing import BinaryIO, NoReturn

from shared.domain.datastore import UploadedBlob


class NoUploadArea:
    """Says it is unavailable; the use cases answer with what to do instead before calling anything else."""

    available = False
    account = ""
    endpoint = ""

    def check(self) -> None:
        return None

    def _refuse(self) -> NoReturn:
        raise RuntimeError("no upload area: build contexts are files (ENVHUB_CONTEXTS=file)")

    def ensure_container(self, container: str) -> None:
        self._refuse()

    def sas(self, container: str, *, lifetime: timedelta) -> str:
        self._refuse()

    def folder(self, container: str, prefix: str, *, limit: int) -> list[UploadedBlob]:
        self._refuse()

    def open(self, container: str, name: str) -> BinaryIO:
        self._refuse()
