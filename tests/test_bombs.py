"""Hostile data files: gzip bombs and lying headers must cost little memory to refuse.

Each case runs in its own process, which reports its peak resident memory (``VmHWM``
of /proc/self/status: unlike ``ru_maxrss`` it starts afresh at exec, not at the peak of
the process that started it) with the one-line error: the bounds are generous (a few times what the
real files need), but far below what the bombs would take if inflated. No timings.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc/self/status"
)

MB = 1 << 20
PEAK_BOUND_MB = 400
"""Far above what refusing takes (the training images are 45 MiB), far below the bombs."""


def zero_bomb(path: Path, head: bytes, zeros: int) -> Path:
    """A valid gzip file of ``head`` then ``zeros`` zero bytes (a multiple of 1 MiB).

    Built from one compressed MiB repeated (each piece flushed whole, so pieces do not
    refer to each other): gigabytes of payload cost megabytes and a CRC pass to make.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    piece = deflate.compress(bytes(MB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert piece == deflate.compress(bytes(MB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    count = zeros // MB
    crc = zlib.crc32(head)
    block = bytes(MB)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    size = (len(head) + count * MB) & 0xFFFFFFFF
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first)
        for _ in range(count):
            out.write(piece)
        out.write(deflate.flush() + struct.pack("<II", crc, size))
    return path


def images_header(count: int) -> bytes:
    return struct.pack(">BBBB3I", 0, 0, 8, 3, count, 28, 28)


_CHILD = """
import json, os, resource, sys
limit = int(os.environ.get("BOMB_ADDRESS_LIMIT", "0"))
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
result = {}
try:
    exec(sys.argv[1])
    result["error"] = None
except BaseException as exc:
    result["error"] = type(exc).__name__
    result["message"] = str(exc)
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            result["peak_mb"] = int(line.split()[1]) / 1024
print(json.dumps(result))
"""


def run_child(code: str, tmp_path: Path, address_limit: int = 0) -> dict[str, object]:
    env = {
        **os.environ,
        "XPNET_CACHE_DIR": str(tmp_path / "cache"),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "BOMB_ADDRESS_LIMIT": str(address_limit),
    }
    env.pop("XPNET_DATA_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


LOAD_TRAIN = "from xpnet.datasets import load_mnist; load_mnist(split='train', data_dir={!r})"


def test_a_bomb_declaring_more_images_is_refused_at_its_header(tmp_path: Path) -> None:
    """0.8 MB of gzip named like MNIST's training images, declaring 1,040,000 of them."""
    bomb = zero_bomb(
        tmp_path / "d" / "train-images-idx3-ubyte.gz", images_header(1_040_000), 815 * MB
    )
    assert bomb.stat().st_size < MB
    result = run_child(LOAD_TRAIN.format(str(bomb.parent)), tmp_path)
    assert result["error"] == "DataError"
    assert "holds a uint8 array of shape (1040000, 28, 28)" in str(result["message"])
    assert float(result["peak_mb"]) < PEAK_BOUND_MB  # (before the bound: about 825)


def test_a_bomb_with_the_right_header_stops_at_the_first_byte_too_many(tmp_path: Path) -> None:
    """The header is right, then gigabytes of zeros follow the 47 MB it declares."""
    bomb = zero_bomb(
        tmp_path / "d" / "train-images-idx3-ubyte.gz", images_header(60_000), 2048 * MB
    )
    result = run_child(LOAD_TRAIN.format(str(bomb.parent)), tmp_path)
    assert result["error"] == "DataError"
    assert "bytes follow the 47040000 data bytes" in str(result["message"])
    assert float(result["peak_mb"]) < PEAK_BOUND_MB


def test_a_csv_bomb_is_refused_at_the_known_payload_size(tmp_path: Path) -> None:
    """mnist_5k.csv.gz holding a gigabyte of text: refused past the known 9 MB."""
    bomb = tmp_path / "d" / "mnist_5k.csv.gz"
    zero_bomb(bomb, b"0,", 1024 * MB)  # "0," then NUL bytes: loadtxt would read it all
    code = (
        "from xpnet.datasets import load_mnist; "
        f"load_mnist(split='train', dataset='mnist-5k', data_dir={str(bomb.parent)!r})"
    )
    result = run_child(code, tmp_path, address_limit=4096 * MB)
    assert result["error"] == "DataError"
    assert "holds more than 9139322 bytes once decompressed" in str(result["message"])
    assert float(result["peak_mb"]) < PEAK_BOUND_MB


def test_read_idx_under_an_address_limit_says_so_in_one_line(tmp_path: Path) -> None:
    """`ulimit -v`: a gigabyte the header declares (and gzip can hold) cannot be allocated."""
    if resource.getrlimit(resource.RLIMIT_AS)[0] not in (resource.RLIM_INFINITY,):
        pytest.skip("an address-space limit is set already")
    head = struct.pack(">BBBB3I", 0, 0, 8, 3, 1000, 1000, 1000)
    bomb = zero_bomb(tmp_path / "big.gz", head, 1000 * MB)  # what it declares, and more
    code = f"from xpnet.datasets import read_idx; read_idx({str(bomb)!r})"
    result = run_child(code, tmp_path, address_limit=768 * MB)
    assert result["error"] == "DataError", result
    assert "more than can be allocated here" in str(result["message"])
