"""The downloader against an HTTP server on 127.0.0.1 that each test starts and stops.

Every failure must leave the cache folder empty: no partial, temporary or wrong file.
"""

from __future__ import annotations

import gzip
import hashlib
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

from xpnet.datasets import DATASETS, DataFile, Dataset, SplitFiles, fetch, load_mnist
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
    from xpnet.cli.infer import load_network
    from xpnet.datasets import book

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
    from xpnet.datasets import book, fetch_book_weights

    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(book, "BOOK_WEIGHTS_MIRRORS", (server.url("gone"),))
    with pytest.raises(DataError, match=r"sample_weight\.pkl.*HTTP 404.*--weights PATH"):
        fetch_book_weights()
    assert leftovers(tmp_path / "book") == []


def test_book_weights_without_a_cache_folder_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xpnet.datasets import fetch_book_weights

    monkeypatch.delenv("XPNET_CACHE_DIR")
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # the core install
    with pytest.raises(DataError) as raised:
        fetch_book_weights()
    message = str(raised.value)
    assert message.startswith("to download the book's weights, xpnet needs platformdirs")
    assert "pip install 'xpnet[data]'" in message and message.endswith("--weights PATH")
