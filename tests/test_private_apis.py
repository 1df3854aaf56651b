"""What xpnet takes from other libraries beyond their documented API, pinned down.

Each test holds one upstream behaviour xpnet relies on, with the reason it relies on it in
one line; an upstream change fails here by name, not as a quiet loss of a guarantee
elsewhere.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


class AskedTooMuch(Exception):
    pass


class RecordingFile(io.BytesIO):
    """A file that records each ``read`` size and refuses one past its end, as
    ``xpnet._safe_pickle._BoundedFile`` does."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, count: int | None = -1) -> bytes:
        self.asked.append(-1 if count is None else count)
        if count is not None and count > len(self.getbuffer()) - self.tell():
            raise AskedTooMuch(count)
        return super().read(count)


def test_pickles_pure_python_unpickler_asks_the_file_for_each_opcodes_whole_length():
    """Reason: the public pickle.Unpickler is the C one, which (CPython before the
    gh-115952 fix) allocates an opcode's announced length before reading it, so
    _safe_pickle subclasses pickle._Unpickler, whose read(n) the bounded file checks first."""
    assert pickle._Unpickler is not pickle.Unpickler, "pickle._Unpickler is now the C class"
    assert pickle._Unpickler.__module__ == "pickle"
    announced = 1 << 40
    lying = b"\x80\x04\x8e" + struct.pack("<Q", announced) + b"only a few bytes"
    recording = RecordingFile(lying)
    with pytest.raises(AskedTooMuch):
        pickle._Unpickler(recording).load()
    assert recording.asked[-1] == announced, (
        f"pickle._Unpickler read {recording.asked} for a BINBYTES8 of {announced} bytes: it "
        "no longer asks for the whole length at once; re-check xpnet._safe_pickle._BoundedFile"
    )


def test_pickles_pure_python_unpickler_resolves_globals_through_find_class():
    """Reason: _safe_pickle admits NumPy's array-pickling globals by overriding find_class
    on pickle._Unpickler; a global resolved any other way would run code."""
    asked = []

    class Refusing(pickle._Unpickler):  # type: ignore[name-defined,misc]
        def find_class(self, module: str, name: str, /) -> object:
            asked.append((module, name))
            raise pickle.UnpicklingError("refused")

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        Refusing(io.BytesIO(pickle.dumps(print, protocol=4))).load()
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        Refusing(io.BytesIO(pickle.dumps(print, protocol=2))).load()
    assert asked == [("builtins", "print"), ("__builtin__", "print")]  # as the pickle names it


@pytest.fixture
def trickle() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server on 127.0.0.1 that sends 10 of 20 bytes, then waits for the event."""
    server = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nContent-Encoding: gzip\r\n\r\n"
            connection.sendall(head + b"0123456789")
            release.wait(30)
            connection.sendall(b"abcdefghij")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/file", release
    release.set()
    thread.join(30)
    server.close()


def test_urllib3s_read1_returns_what_one_wait_brings_undecoded(trickle):
    """datasets/download.py reads a mirror with urllib3's public response.raw.read1(n,
    decode_content=False) (from urllib3 2.3, which the data extra requires), so a trickling
    mirror reaches the deadline check and the md5 is of the bytes sent."""
    requests = pytest.importorskip("requests")
    url, release = trickle
    with requests.get(url, stream=True, timeout=20) as response:
        raw = response.raw
        assert hasattr(raw, "read1"), "urllib3 < 2.3, which has no public read1"
        first = raw.read1(1 << 16, decode_content=False)  # blocks to the timeout if it waits
        release.set()
        rest = b""
        while chunk := raw.read1(1 << 16, decode_content=False):
            rest += chunk
    assert (first, rest) == (b"0123456789", b"abcdefghij")  # not gunzipped


def test_os_has_no_rename_exchange_of_its_own():
    """Reason: scaleout/store.py swaps two folders in one step with libc's renameat2 through
    ctypes because os has no such call; once it has one, store.py should use it."""
    names = {"renameat2", "RENAME_EXCHANGE", "rename_exchange"}
    assert not names & set(dir(os)), f"os now has {names & set(dir(os))}: use it in store.py"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_libcs_renameat2_exchanges_two_folders(tmp_path: Path):
    """Reason: store.py's ctypes call hard-codes AT_FDCWD (-100) and RENAME_EXCHANGE (2);
    wrong numbers would replace the old store in place of swapping it."""
    from xpnet.scaleout.store import _rename_exchange

    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    old.mkdir()
    (new / "which").write_text("new")
    (old / "which").write_text("old")
    if not _rename_exchange(new, old):
        pytest.skip("this kernel or file system cannot exchange (store.py falls back)")
    assert (new / "which").read_text() == "old" and (old / "which").read_text() == "new"
