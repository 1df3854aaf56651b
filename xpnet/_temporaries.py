"""The temporary files xpnet makes, and the one rule that sweeps those a dead process left.

The rule: a temporary is xpnet's by its name (a pattern only xpnet gives: ``atomic_write``'s
``.NAME.<token>.xpnet-tmp``, a download's ``.download-*`` staging folder and its lock, an
image store's ``.NAME.xpnet-<token>`` staging folder and its marker), and it is in use
exactly while a live process holds an exclusive ``flock`` on it (a file) or on its lock
file (a folder). The kernel drops a lock when its process ends by any route, ``kill -9``
included, so a temporary whose lock no process holds was left by a dead process and is
removed, at once, by the next xpnet process that writes there. A live process's temporary
is never removed (its lock is held), nor is anything that is not xpnet's: a name xpnet
does not give, a symlink, a folder, FIFO or device where a file is expected.

A writer takes its lock as it creates the file and then checks that the file is still the
one at that name; a sweeper checks the same after taking the lock and before removing. So
a sweeper that happens on a file in the instant between its creation and its lock makes
the writer take another name, and never removes a file that a writer holds.

Where ``fcntl`` is missing (Windows) nothing can be locked and nothing is swept.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no locks, no sweeping
    fcntl = None  # type: ignore[assignment]

ATTEMPTS = 100
"""Names tried before :func:`create_locked` gives up (each clash is a sweeper's race or a
name already taken)."""


def create_locked(folder: Path, name: Callable[[], str], mode: int = 0o666) -> tuple[int, Path]:
    """A new file in ``folder`` named by ``name()``, locked by this process: its descriptor
    (open for writing; the lock lasts until every copy of it is closed) and path.

    Raises ``FileExistsError`` where :data:`ATTEMPTS` names in a row are taken, and the
    ``OSError`` of ``os.open`` otherwise (a missing folder, no permission).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(ATTEMPTS):
        path = folder / name()
        try:
            fd = os.open(path, flags, mode)
        except FileExistsError:
            continue
        if _lock(fd) and _is_at(fd, path):
            return fd, path
        os.close(fd)  # a sweeper took it in the instant before the lock: another name
    raise FileExistsError(f"no free name for a temporary file in {folder}")


@contextlib.contextmanager
def abandoned(path: Path) -> Iterator[bool]:
    """Whether ``path`` is a regular file whose lock no process holds; while the block
    runs with ``True``, this process holds it (so the caller may remove it and what it
    stands for)."""
    if fcntl is None:
        yield False
        return
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            yield False
            return
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        yield False
        return
    try:
        yield _lock(fd) and _is_at(fd, path)
    finally:
        os.close(fd)


def sweep_files(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the files in ``folder`` whose whole name matches ``pattern`` and whose lock
    no process holds (see the module's rule); return those removed."""
    removed: list[Path] = []
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry):
            continue
        path = folder / entry
        with abandoned(path) as gone:
            if gone:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    return removed


def _lock(fd: int) -> bool:
    """Take ``fd``'s exclusive lock without waiting; False where another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (not removed or replaced)."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
