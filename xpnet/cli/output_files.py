"""Output files of the ``xpnet`` commands: never silently replaced, whole or absent.

The rule (docs/cli.md states it for users): ``--out`` never replaces an existing file
without ``--force``, never replaces anything but a regular file, and never creates a
missing parent folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from xpnet._atomic import atomic_write, write_all
from xpnet.cli.output import display_path
from xpnet.errors import XpnetError


def check_output(path: Path, *, force: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output that would replace a file without ``force``.

    The parent folder must exist (it is never created); an existing ``path`` is refused
    without ``force``, and always where it is a folder or not a regular file (a device).
    """
    shown = display_path(path)
    parent = path.parent
    if not parent.is_dir():
        raise XpnetError(
            f"{option} {shown}: the folder {display_path(parent)} does not exist "
            f"(xpnet does not create it)"
        )
    if path.is_dir():
        raise XpnetError(f"{option} {shown} is a folder; name a file in it")
    if path.exists() or path.is_symlink():
        if not force:
            raise XpnetError(f"{option} {shown} exists; pass --force to replace it")
        if path.exists() and not path.resolve().is_file():
            raise XpnetError(f"{option} {shown} is not a regular file; xpnet will not replace it")


def write_output(path: Path, write: Callable[[BinaryIO], None], *, force: bool) -> None:
    """Write a file through ``write`` so that ``path`` is either as it was or whole and new.

    :func:`xpnet._atomic.atomic_write` does the writing (through a symlink, keeping the old
    file's permissions, the umask's for a new one); without ``force`` the new file appears
    only if no file has appeared at ``path`` meanwhile.
    """
    check_output(path, force=force)
    try:
        with atomic_write(path, replace=force) as stream:
            write(stream)
    except FileExistsError:
        raise XpnetError(f"--out {display_path(path)} exists; pass --force to replace it") from None


def write_outputs(items: Sequence[tuple[Path, Callable[[BinaryIO], None]]], *, force: bool) -> None:
    """Write a command's set of output files, each through its ``write``: all of them are
    replaced or none (see :func:`xpnet._atomic.write_all`). A failure, a full disk above
    all, is one line naming the file and the cause, and says that nothing was replaced."""
    for path, _ in items:
        check_output(path, force=force)
    try:
        write_all(items, replace=force)
    except FileExistsError as exc:
        shown = display_path(exc.filename or "")
        raise XpnetError(f"--out {shown} exists; pass --force to replace it") from None
    except OSError as exc:
        which = display_path(exc.filename) if exc.filename else "an output file"
        kept = "no file was written" if len(items) == 1 else f"none of the {len(items)} files"
        raise XpnetError(
            f"cannot write {which}: {exc.strerror or exc}; {kept}"
            + ("" if len(items) == 1 else " was written or replaced")
        ) from None
