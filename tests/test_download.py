"""The downloader against an HTTP server on 127.0.0.1 that each test starts and stops.

Every failure must leave the cache folder empty: no partial, temporary or wrong file.
"""

from __future__ import annotations

import gzip
import hashlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from xpnet.datasets import DATASETS, DataFile, Dataset, SplitFiles, download, fetch, load_mnist
from xpnet.datasets.idx import idx_bytes
from xpnet.errors import DataError

pytest.importorskip("requests", reason="downloads need requests (pip install 'xpnet[data]')")

REPO = Path(__file__).resolve().parents[1]
NAME = "blob.gz"
PAYLOAD = np.random.default_rng(0).bytes(200_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()

Answer = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """An HTTP server on 127.0.0.1:<free port>; ``answers[mirror]`` answers ``/mirror/<file>``."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                mirror = self.path.strip("/").split("/")[0]
                server.answers.get(mirror, status(404))(self)

            def log_message(self, *args: object) -> None:
                """Keep the test output quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, mirror: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mirror}/"


def serve(data: bytes, barrier: threading.Barrier | None = None) -> Answer:
    """Send ``data``; with a barrier, wait for the other clients and send it slowly."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        if barrier is not None:
            barrier.wait()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        for start in range(0, len(data), 20_000):
            handler.wfile.write(data[start : start + 20_000])
            if barrier is not None:
                time.sleep(0.01)

    return answer


def status(code: int) -> Answer:
    return lambda handler: handler.send_error(code)


def cut(data: bytes) -> Answer:
    """Promise all of ``data`` in Content-Length, send half, hang up."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return answer


def silent(stop: threading.Event) -> Answer:
    """Accept the request, never answer (until the test ends)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(30)

    return answer


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    local.thread.start()
    yield local
    local.stop.set()
    local.httpd.shutdown()
    local.httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def leftovers(folder: Path) -> list[str]:
    """Everything under ``folder`` (files and folders), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_download_from_the_first_mirror(server: LocalServer, cache: Path) -> None:
    server.answers["a"] = serve(PAYLOAD)
    path = fetch(NAME, MD5, [server.url("a")], cache, timeout=5, progressbar=False)
    assert path == cache / NAME and path.read_bytes() == PAYLOAD
    assert leftovers(cache) == [NAME]
    # Already there with the right md5: no mirror is asked again.
    assert fetch(NAME, MD5, [server.url("a")], cache, progressbar=False) == path
    assert server.requests == [f"/a/{NAME}"]


def test_a_404_moves_on_to_the_next_mirror(server: LocalServer, cache: Path) -> None:
    server.answers["good"] = serve(PAYLOAD)
    fetch(NAME, MD5, [server.url("gone"), server.url("good")], cache, timeout=5, progressbar=False)
    assert server.requests == [f"/gone/{NAME}", f"/good/{NAME}"]
    assert leftovers(cache) == [NAME]


def test_a_wrong_file_everywhere_is_an_error_that_leaves_nothing(
    server: LocalServer, cache: Path
) -> None:
    server.answers["a"] = server.answers["b"] = serve(PAYLOAD[:-1] + b"!")
    mirrors = [server.url("a"), server.url("b")]
    with pytest.raises(DataError) as info:
        fetch(NAME, MD5, mirrors, cache, timeout=5, progressbar=False)
    message = str(info.value)
    assert "\n" not in message
    for words in (
        NAME,
        str(cache),
        *mirrors,
        "md5 mismatch",
        "data_dir=",
        "XPNET_DATA_DIR",
        "--data-dir",
    ):
        assert words in message
    assert leftovers(cache) == []


def test_a_cut_connection_falls_through_or_fails_cleanly(server: LocalServer, cache: Path) -> None:
    server.answers["cut"] = cut(PAYLOAD)
    with pytest.raises(DataError, match=r"cut mid-file|md5 mismatch"):
        fetch(NAME, MD5, [server.url("cut")], cache, timeout=5, progressbar=False)
    assert leftovers(cache) == []
    server.answers["good"] = serve(PAYLOAD)
    fetch(NAME, MD5, [server.url("cut"), server.url("good")], cache, timeout=5, progressbar=False)
    assert (cache / NAME).read_bytes() == PAYLOAD and leftovers(cache) == [NAME]


def test_a_silent_server_is_bounded_by_the_timeout(server: LocalServer, cache: Path) -> None:
    server.answers["mute"] = silent(server.stop)
    began = time.monotonic()
    with pytest.raises(DataError, match="no answer within 1 s"):
        fetch(NAME, MD5, [server.url("mute")], cache, timeout=1, progressbar=False)
    assert time.monotonic() - began < 10
    assert leftovers(cache) == []


def test_a_refused_connection_is_reported(cache: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DataError, match="cannot connect"):
        fetch(NAME, MD5, [f"http://127.0.0.1:{port}/"], cache, timeout=1, progressbar=False)
    assert leftovers(cache) == []


def test_two_processes_fetching_at_once_both_succeed(server: LocalServer, cache: Path) -> None:
    server.answers["slow"] = serve(PAYLOAD, threading.Barrier(2, timeout=20))
    script = (
        "import sys; from xpnet.datasets import fetch; "
        "fetch(sys.argv[1], sys.argv[2], [sys.argv[3]], sys.argv[4], timeout=20, "
        "progressbar=False)"
    )
    command = [sys.executable, "-c", script, NAME, MD5, server.url("slow"), str(cache)]
    workers = [subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
    assert len(server.requests) == 2  # both really downloaded, at the same time
    assert (cache / NAME).read_bytes() == PAYLOAD and leftovers(cache) == [NAME]


def test_without_requests_the_error_says_what_to_install(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(DataError, match=r"needs requests \(pip install 'xpnet\[data\]'\)"):
        fetch(NAME, MD5, ["http://127.0.0.1:9/"], cache)


def test_importing_the_datasets_loads_no_download_package() -> None:
    code = (
        "import sys, xpnet.datasets; "
        "print(sorted({'pooch', 'requests', 'tqdm', 'platformdirs'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_load_mnist_downloads_missing_files_into_the_cache(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: nothing local, so both test files come from the mirror, once."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    served = {
        "images.gz": gzip.compress(idx_bytes(images)),
        "labels.gz": gzip.compress(idx_bytes(labels)),
    }
    files = SplitFiles(
        DataFile("images", hashlib.md5(served["images.gz"]).hexdigest(), None, images.shape),
        DataFile("labels", hashlib.md5(served["labels.gz"]).hexdigest(), None, labels.shape),
    )
    server.answers["m"] = lambda h: serve(served[h.path.rsplit("/", 1)[1]])(h)
    monkeypatch.setitem(DATASETS, "toy", Dataset("toy", (server.url("m"),), {"test": files}))
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    for _ in range(2):
        x, t = load_mnist(normalize=False, split="test", dataset="toy")
        np.testing.assert_array_equal(x, images.reshape(6, 784))
        np.testing.assert_array_equal(t, labels)
    assert sorted(server.requests) == ["/m/images.gz", "/m/labels.gz"]
    assert sorted(p.name for p in (tmp_path / "cache" / "toy").iterdir()) == [
        "images.gz",
        "labels.gz",
        "parsed",
    ]


def test_infer_fetches_the_book_weights_once(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    book_weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from xpnet.cli.network_loading import load_network
    from xpnet.pretrained import book

    server.answers["gone"] = status(404)
    server.answers["book"] = serve(book_weights.read_bytes())
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(book, "BOOK_WEIGHTS_MIRRORS", (server.url("gone"), server.url("book")))
    network = load_network("book", "array_api_strict", "device1")
    assert network.sizes == (784, 50, 100, 10)
    assert str(network.backend) == "array_api_strict on device1"
    assert (tmp_path / "book" / "sample_weight.pkl").read_bytes() == book_weights.read_bytes()
    load_network("book", "numpy", None)
    assert server.requests == ["/gone/sample_weight.pkl", "/book/sample_weight.pkl"]


def test_book_weights_offline_error_says_to_pass_a_path(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xpnet.pretrained import book, fetch_book_weights

    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(book, "BOOK_WEIGHTS_MIRRORS", (server.url("gone"),))
    with pytest.raises(DataError, match=r"sample_weight\.pkl.*HTTP 404.*--weights PATH"):
        fetch_book_weights()
    assert leftovers(tmp_path / "book") == []


def test_book_weights_without_a_cache_folder_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xpnet.pretrained import fetch_book_weights

    monkeypatch.delenv("XPNET_CACHE_DIR")
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # the core install
    with pytest.raises(DataError) as raised:
        fetch_book_weights()
    message = str(raised.value)
    assert message.startswith("to download the book's weights, xpnet needs platformdirs")
    assert "pip install 'xpnet[data]'" in message and message.endswith("--weights PATH")


# Bounds: deadline, size cap, https first, staging folders of killed processes ----------


def trickle(data: bytes, stop: threading.Event) -> Answer:
    """Announce ``data``, then send it one byte at a time, a little apart (never finishing
    within the test's deadline, never silent for as long as its per-read timeout)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        for byte in data:
            if stop.wait(0.05):
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return

    return answer


def endless(stop: threading.Event, *, length: int | None = None) -> Answer:
    """Send zeros until the client hangs up (a bounded lot), announcing ``length`` if given."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        block = bytes(1 << 16)
        for _ in range(1600):  # at most 100 MiB
            if stop.is_set():
                return
            try:
                handler.wfile.write(block)
            except OSError:
                return

    return answer


def stall(data: bytes, stop: threading.Event) -> Answer:
    """Send half of ``data``, then wait (until the test ends) without closing."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        stop.wait(120)

    return answer


def test_a_trickling_mirror_is_cut_off_at_the_deadline(server: LocalServer, cache: Path) -> None:
    server.answers["slow"] = trickle(PAYLOAD, server.stop)
    began = time.monotonic()
    with pytest.raises(DataError, match=r"slow/blob\.gz \(not complete within 1 s\)"):
        fetch(NAME, MD5, [server.url("slow")], cache, timeout=20, deadline=1, progressbar=False)
    assert time.monotonic() - began < 60  # generous: a byte arrives every 0.05 s
    assert leftovers(cache) == []


@pytest.mark.parametrize("size", [len(PAYLOAD), None])
def test_an_endless_body_stops_at_the_size_cap(
    server: LocalServer, cache: Path, monkeypatch: pytest.MonkeyPatch, size: int | None
) -> None:
    monkeypatch.setattr(download, "MAX_UNKNOWN_SIZE", 1 << 20)
    cap = len(PAYLOAD) if size is not None else 1 << 20
    server.answers["flood"] = endless(server.stop)
    with pytest.raises(DataError, match=f"sends more than the {cap} bytes expected"):
        fetch(NAME, MD5, [server.url("flood")], cache, timeout=20, size=size, progressbar=False)
    assert leftovers(cache) == []


def test_a_mirror_announcing_another_size_is_not_read(server: LocalServer, cache: Path) -> None:
    server.answers["huge"] = endless(server.stop, length=10_000_000_000)
    server.answers["short"] = serve(PAYLOAD[:-1])
    mirrors = [server.url("huge"), server.url("short")]
    with pytest.raises(DataError) as info:
        fetch(NAME, MD5, mirrors, cache, timeout=20, size=len(PAYLOAD), progressbar=False)
    message = str(info.value)
    assert "(announces 10000000000 bytes, more than the 200000 expected)" in message
    assert "(announces 199999 bytes, not the 200000 expected)" in message
    assert leftovers(cache) == []


def test_https_mirrors_are_tried_before_plain_http(server: LocalServer, cache: Path) -> None:
    with socket.socket() as probe:  # nothing listens there: the https try fails fast
        probe.bind(("127.0.0.1", 0))
        secure = f"https://127.0.0.1:{probe.getsockname()[1]}/s/"
    with pytest.raises(DataError) as info:
        fetch(NAME, MD5, [server.url("plain"), secure], cache, timeout=5, progressbar=False)
    message = str(info.value)
    assert message.index(secure) < message.index(server.url("plain"))
    # A plain-http mirror is still used, once the md5 of what it sent matches.
    server.answers["plain"] = serve(PAYLOAD)
    assert fetch(NAME, MD5, [server.url("plain")], cache, progressbar=False).read_bytes() == PAYLOAD


_CHILD_FETCH = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from xpnet.datasets import fetch
fetch(sys.argv[1], sys.argv[2], [sys.argv[3]], sys.argv[4], timeout=100, progressbar=False)
"""


def start_stalled_download(server: LocalServer, cache: Path) -> subprocess.Popen[bytes]:
    """A process downloading NAME from a mirror that stalls; returns once its partial
    file is in a staging folder."""
    server.answers["stall"] = stall(PAYLOAD, server.stop)
    command = [sys.executable, "-c", _CHILD_FETCH, NAME, MD5, server.url("stall"), str(cache)]
    child = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    for _ in range(6000):
        if list(cache.glob(f".download-*/{NAME}")) or child.poll() is not None:
            break
        time.sleep(0.01)
    assert child.poll() is None, child.communicate()[1].decode()
    assert list(cache.glob(f".download-*/{NAME}")), "the child never started downloading"
    return child


def test_a_download_killed_mid_file_is_swept_by_the_next_one(
    server: LocalServer, cache: Path
) -> None:
    child = start_stalled_download(server, cache)
    child.kill()  # SIGKILL: no clean-up runs
    child.communicate(timeout=60)
    (litter,) = cache.glob(".download-*")
    mine = cache / ".download-mine"  # not xpnet's (no lock file): never touched
    mine.mkdir()
    (mine / "notes").write_text("keep")
    server.answers["good"] = serve(PAYLOAD)
    fetch(NAME, MD5, [server.url("good")], cache, timeout=20, progressbar=False)
    assert not litter.exists()
    assert leftovers(cache) == [".download-mine", ".download-mine/notes", NAME]


def test_a_live_download_keeps_its_staging_folder(server: LocalServer, cache: Path) -> None:
    child = start_stalled_download(server, cache)
    (staging,) = cache.glob(".download-*")
    server.answers["good"] = serve(PAYLOAD)
    fetch(NAME, MD5, [server.url("good")], cache, timeout=20, progressbar=False)
    assert (staging / NAME).exists()  # the live one was left alone
    server.stop.set()  # the stalled mirror hangs up: the child fails and cleans up
    child.communicate(timeout=120)
    assert leftovers(cache) == [NAME]


def test_ctrl_c_mid_download_leaves_nothing(server: LocalServer, cache: Path) -> None:
    child = start_stalled_download(server, cache)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0 and b"KeyboardInterrupt" in err
    assert leftovers(cache) == []
