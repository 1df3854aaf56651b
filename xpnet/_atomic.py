"""Atomic file writes: readers see the old file or the whole new one, never half of one.

``path`` may be a symlink: the file it points to is replaced, in that file's folder, and the
link stays. Only a regular file (or nothing) is replaced: a folder, device node, FIFO or
socket at ``path`` (or behind its links) is refused with an :class:`OSError`, never
replaced. A replaced file keeps its mode (and, where permitted, its owner and group); a new
one gets the mode the umask leaves of ``0o666``, as ``open`` would give it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from xpnet._temporaries import create_locked, sweep_files

TEMP_SUFFIX = ".xpnet-tmp"
"""How the temporary files of a write end (beside the target, hidden: ``.NAME.<token>...``).
Each is locked by its writer until renamed; one a killed writer left is swept by the next
write to the same file (:mod:`xpnet._temporaries`)."""


class NotRegularFileError(OSError):
    """The target of a write is not a regular file (a folder, device, FIFO, socket, loop)."""


def write_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` replaces: ``path`` with its symlinks followed.

    Raises :class:`NotRegularFileError` where that is something other than a regular file
    or nothing (a dangling link names the file to create).
    """
    target = Path(os.path.realpath(path))
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISREG(mode):
        return target
    kind = (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a symlink that does not resolve (a loop)"
        if stat.S_ISLNK(mode)
        else "a device, FIFO or socket"
    )
    raise NotRegularFileError(
        errno.EINVAL,
        f"it is {kind}, not a regular file; xpnet replaces only regular files",
        os.fspath(path),
    )


@contextlib.contextmanager
def atomic_write(
    path: Path, *, replace: bool = True, make_folders: bool = False, flush_to_disk: bool = True
) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only once the ``with`` block ends cleanly.

    The data goes to a hidden temporary file in the folder of the file ``path`` names
    (symlinks followed), is flushed to disk, then renamed
    over it, so the rename stays on one file system and concurrent writers each leave a
    whole file (the last one wins). With ``replace=False`` it appears by a hard link
    instead, which raises ``FileExistsError`` rather than replace a file that is there by
    then. An exception, Ctrl-C included, at any step leaves the old file untouched and
    removes the temporary file. A missing folder is ``FileNotFoundError``, as for
    ``open``, unless ``make_folders`` (xpnet's own cache folders) creates it.
    ``flush_to_disk=False`` skips waiting for the disk (``fsync``), for files that check
    themselves on every read and are rebuilt when a crash has torn them.
    """
    target = write_target(path)
    if make_folders:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, "no such folder to write the file into", os.fspath(target.parent)
        )
    sweep_files(target.parent, temp_pattern(target))  # what killed writes left
    tmp: str | None = None
    lock: int | None = None
    try:
        fd, tmp = _create_temp(target)
        lock = os.dup(fd)  # holds the lock from the writing until the rename
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            if flush_to_disk:
                os.fsync(stream.fileno())
        write_target(target)  # still a regular file or nothing, just before the rename
        if replace:
            os.replace(tmp, target)
        else:
            _publish_new(tmp, target)
        tmp = None
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    if flush_to_disk:
        _fsync_folder(target.parent)


def write_all(
    items: Sequence[tuple[Path, Callable[[BinaryIO], None]]], *, replace: bool = True
) -> None:
    """Write a set of files, each by its ``write(stream)``, so that all of them are
    replaced or none: every file is written whole to its temporary file (and flushed to
    disk) before the first is renamed into place, so a failure while writing, a full disk
    above all, leaves every target as it was.

    Each target is as for :func:`atomic_write` (symlinks followed, only a regular file
    replaced; with ``replace=False``, ``FileExistsError`` where one has appeared). A
    failure is the ``OSError`` with ``filename`` set to the file being written.
    """
    staged: list[tuple[str, int, Path]] = []  # temporary file, its lock, its target
    try:
        for path, write in items:
            target = write_target(path)
            if not target.parent.is_dir():
                raise FileNotFoundError(
                    errno.ENOENT, "no such folder to write the file into", os.fspath(path)
                )
            sweep_files(target.parent, temp_pattern(target))
            fd, tmp = _create_temp(target)
            staged.append((tmp, os.dup(fd), target))
            try:
                with os.fdopen(fd, "wb") as stream:
                    write(stream)
                    stream.flush()
                    os.fsync(stream.fileno())
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None
        for number, (tmp, lock, target) in enumerate(staged):
            write_target(target)
            if replace:
                os.replace(tmp, target)
            else:
                _publish_new(tmp, target)
            staged[number] = ("", lock, target)
    finally:
        for tmp, lock, _ in staged:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            os.close(lock)
    for folder in {target.parent for _, _, target in staged}:
        _fsync_folder(folder)


def temp_pattern(target: Path | None = None) -> re.Pattern[str]:
    """The names of :func:`atomic_write`'s temporary files for ``target`` (for any file
    where ``None``), which :mod:`xpnet._temporaries`' rule sweeps."""
    stem = ".+" if target is None else re.escape(target.name[:64])
    return re.compile(rf"\.{stem}\.[0-9a-f]{{16}}{re.escape(TEMP_SUFFIX)}")


def _publish_new(tmp: str, target: Path) -> None:
    """Move ``tmp``'s file to the name ``target``, unless that name exists by then."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "it exists by now", os.fspath(target)) from None
        os.replace(tmp, target)
    else:
        os.unlink(tmp)


def _create_temp(target: Path) -> tuple[int, str]:
    """A new hidden file beside ``target``, with the mode ``target`` has or a new file gets."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    stem = target.name[:64]  # room for the token within the file system's name limit
    # 0o666 less the umask, as for any new file; never an existing file; locked as made.
    fd, path = create_locked(
        target.parent, lambda: f".{stem}.{secrets.token_hex(8)}{TEMP_SUFFIX}", 0o666
    )
    tmp = str(path)
    try:
        if old is not None:
            with contextlib.suppress(PermissionError):  # keeping the owner needs the right
                os.fchown(fd, old.st_uid, old.st_gid)
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's entry for the renamed file, where the system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
