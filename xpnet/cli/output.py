"""What the ``xpnet`` commands print: text that is safe on a terminal, strict JSON, and
stdout and stderr that may be pipes whose readers have gone."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) raised as an interrupt, remembering which,
    so that the command exits with that signal's status wherever it arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_status(signum: int) -> int:
    """The exit status after stop signal ``signum``: 128 plus its number, as shells report it
    (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + signum


def interrupted_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status for ``interrupt``: its signal's, Ctrl-C's where it names none."""
    return signal_status(interrupt.signum) if isinstance(interrupt, Interrupted) else INTERRUPTED


# Text and JSON that are safe to print -------------------------------------------------------

_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""Control characters (C0, DEL, C1), bidirectional overrides and marks, line and paragraph
separators, and lone surrogates (bytes of a name that are not UTF-8)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``), so that metadata read
    from a file cannot move the cursor, recolour or rewrite the terminal, and a file name
    whose bytes are not UTF-8 prints as those bytes (``\\xff``) instead of failing."""
    return _UNPRINTABLE.sub(_escape, text)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text safe to print (see :func:`printable`)."""
    return printable(os.fspath(path))


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities become ``None`` (null),
    tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_json(value: Mapping[str, Any]) -> None:
    """Print one strict JSON object on one line: no NaN or Infinity (a value that would
    need them is an error here, before anything is printed)."""
    text = json.dumps(value, allow_nan=False)
    print(text)


def word_list(names: Sequence[str]) -> str:
    """``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# Pipes --------------------------------------------------------------------------------------


def stdout_broken() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone, as after ``| head -1``."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file
        return False
    if not hasattr(select, "poll"):  # no poll (Windows): a broken pipe there is stdout's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def silence_stdout() -> None:
    """Point stdout at the null device, so that what is left in its buffer and the flush
    at exit go nowhere instead of raising ``BrokenPipeError`` again."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def tell(text: str) -> None:
    """Print a line on stderr; a stderr that is gone (closed pipe) is not another error."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr)


@dataclass(frozen=True)
class Score:
    """The keys every command that scores a network prints first, in one shape: where it
    ran, on what, and how many images it got right (docs/cli.md names them)."""

    backend: str
    device: str
    weights: str
    dataset: str
    split: str
    images: int
    correct: int
    accuracy: float | None
    """``None`` (JSON null) where there were no images."""
