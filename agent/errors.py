"""One error base for the agent, so callers can catch Ringlane's failures without catching bugs."""

from __future__ import annotations

import errno as _errno
import os


class RinglaneError(Exception):
    """Base of every error Ringlane raises on purpose; the message says what to do."""


class ConfigError(RinglaneError):
    """The operator's configuration is invalid; nothing was changed on the node."""


class KernelFeatureError(RinglaneError):
    """The kernel lacks something Ringlane needs; the message names it and the remedy."""


class NativeError(RinglaneError, OSError):
    """A call into the ring core or libbpf failed with an errno."""

    def __init__(self, what: str, err: int, hint: str = "") -> None:
        code = abs(err)
        text = f"{what}: {os.strerror(code)} ({_errno.errorcode.get(code, code)})"
        if hint:
            text += f". {hint}"
        OSError.__init__(self, code, text)
        self.what = what

    def __str__(self) -> str:
        return str(self.strerror)


def check(ret: int, what: str, hint: str = "") -> int:
    """Raise NativeError for a negative -errno return of a C call; pass other values through."""
    if ret < 0:
        raise NativeError(what, ret, hint)
    return ret
