"""Child processes that end with envhub: Linux's parent-death signal, so a killed server leaves no orphans."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc Linux: children simply outlive a killed parent
        return None


# Loaded once in the parent: a child between fork and exec should not have to run the dynamic loader.
_LIBC = _load_libc()


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this (child) process when the thread that started it ends."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
