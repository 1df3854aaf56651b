"""The IDX reader and writer: round trips, and every damaged file is one DataError."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from xpnet.datasets.idx import idx_bytes, iter_idx, read_idx, write_idx
from xpnet.errors import DataError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SAMPLE = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
SAMPLE_RAW = idx_bytes(SAMPLE)
SAMPLE_GZ = gzip.compress(SAMPLE_RAW, mtime=0)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path: Path, name: str, dtype: str) -> None:
    array = (np.arange(60).reshape(3, 4, 5) - 30).astype(dtype)
    if dtype == "uint8":
        array = array + np.uint8(30)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    np.testing.assert_array_equal(read_idx(write_bytes(tmp_path / "raw.gz", SAMPLE_RAW)), SAMPLE)
    np.testing.assert_array_equal(read_idx(write_bytes(tmp_path / "zipped", SAMPLE_GZ)), SAMPLE)


def test_header_matches_the_mnist_layout() -> None:
    header = idx_bytes(np.zeros((10000, 28, 28), np.uint8))[:16]
    assert header == bytes.fromhex("00000803000027100000001c0000001c")  # magic 2051


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "shorter than the 4-byte magic"),
        (b"\x01\x00\x08\x01" + b"\x00" * 5, "magic number starts with 0x0100"),
        (b"\x00\x00\x07\x01" + b"\x00" * 5, "unknown type code 0x07"),
        (b"\x00\x00\x08\x00", "no dimensions"),
        (SAMPLE_RAW[:10], "truncated in the header"),
        (SAMPLE_RAW[:-1], "promises 24 data bytes, the file has 23"),
        (SAMPLE_RAW + b"\x00", "bytes follow the 24 data bytes"),
        (SAMPLE_GZ[:-9], "truncated"),
        (SAMPLE_GZ[:-8] + b"\x00\x00\x00\x00" + SAMPLE_GZ[-4:], "CRC check failed"),
        (SAMPLE_GZ + b"junk", "corrupt gzip data"),
        (SAMPLE_GZ[:12] + b"\xff" * 8 + SAMPLE_GZ[20:], "corrupt gzip data"),
    ],
    ids=[
        "empty",
        "magic",
        "type",
        "rank0",
        "short-header",
        "short-data",
        "trailing",
        "gz-cut",
        "gz-crc",
        "gz-trailing",
        "gz-deflate",
    ],
)
def test_damaged_files_are_one_data_error(tmp_path: Path, data: bytes, words: str) -> None:
    path = write_bytes(tmp_path / "bad", data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message


def test_unreadable_paths_are_data_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.gz", tmp_path):
        with pytest.raises(DataError, match="cannot read"):
            read_idx(path)


def test_write_rejects_what_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="cannot hold"):
        write_idx(tmp_path / "a", np.float32(1.0))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.idx"
    write_idx(path, SAMPLE)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, SAMPLE[:1])
    np.testing.assert_array_equal(read_idx(path), SAMPLE)
    assert [p.name for p in tmp_path.iterdir()] == ["a.idx"]


# What IDX holds: a count of items (maybe 0) of up to three more dimensions of 1 or more.
IDX_SHAPES = st.tuples(
    st.integers(0, 5), array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5)
).map(lambda parts: (parts[0], *parts[1]))


@FUZZ
@given(array=arrays(st.sampled_from(DTYPES), IDX_SHAPES), gz=st.booleans())
def test_fuzz_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = tmp_path / ("a.gz" if gz else "a")
    write_idx(path, array)
    np.testing.assert_array_equal(read_idx(path), array)


@FUZZ
@given(data=st.data(), gz=st.booleans())
def test_fuzz_truncation_is_a_data_error(tmp_path: Path, data: st.DataObject, gz: bool) -> None:
    whole = SAMPLE_GZ if gz else SAMPLE_RAW
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    with pytest.raises(DataError):
        read_idx(write_bytes(tmp_path / "cut", whole[:cut]))


@FUZZ
@given(data=st.data(), gz=st.booleans())
def test_fuzz_corruption_is_a_data_error_or_a_correct_array(
    tmp_path: Path, data: st.DataObject, gz: bool
) -> None:
    """A damaged header or gzip stream: either a DataError or exactly what the bytes say."""
    whole = bytearray(SAMPLE_GZ if gz else SAMPLE_RAW)
    header_end = len(whole) if gz else 4 + 4 * SAMPLE.ndim
    at = data.draw(st.integers(0, header_end - 1), label="at")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != whole[at]), label="value")
    whole[at] = value
    try:
        array = read_idx(write_bytes(tmp_path / "bad", bytes(whole)))
    except DataError:
        return
    if gz:  # a gzip stream that still checks out (e.g. a new mtime) holds the same bytes
        np.testing.assert_array_equal(array, SAMPLE)
    else:  # a header that still adds up: the array it describes, byte for byte
        assert idx_bytes(array) == bytes(whole)


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
@pytest.mark.parametrize("rows", [1, 7, 50, 64])
def test_blocks_reassemble_the_file(tmp_path: Path, name: str, rows: int) -> None:
    images = np.random.default_rng(4).integers(0, 256, (50, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    blocks = list(iter_idx(tmp_path / name, rows))
    assert [len(b) for b in blocks[:-1]] == [rows] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), images)


def test_blocks_of_a_damaged_file_end_in_a_data_error(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((10, 4), np.uint8))
    (tmp_path / "short.idx").write_bytes(data[:-5])
    with pytest.raises(DataError, match=r"short\.idx.*truncated"):
        list(iter_idx(tmp_path / "short.idx", 3))
    (tmp_path / "long.idx").write_bytes(data + b"\0")
    with pytest.raises(DataError, match=r"long\.idx.*bytes follow"):
        list(iter_idx(tmp_path / "long.idx", 3))
    with pytest.raises(ValueError, match="positive"):
        next(iter_idx(tmp_path / "long.idx", 0))


def _header(*dims: int, code: int = 0x08, rank: int | None = None) -> bytes:
    rank = len(dims) if rank is None else rank
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, rank, *dims)


READERS = {"read_idx": read_idx, "iter_idx": lambda path: list(iter_idx(path, 3))}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_header(10, 0, 28), r"header \(10, 0, 28\) declares items of no bytes"),
        (_header(10, 0, 28) + b"\0" * 280, r"declares items of no bytes"),
        (_header(1, 4_000_000_000, 4_000_000_000) + b"\0" * 64, r"\(1, 4000000000, 4000000000\)"),
        (_header(4_294_967_295, 4_294_967_295, 4_294_967_295, 4_294_967_295), r"4294967295"),
        (_header(*[2] * 5), "declares 5 dimensions, more than 4"),
        (_header(*[1] * 255), "declares 255 dimensions, more than 4"),
        (_header(3, rank=0), "no dimensions"),
        (b"\x00\x01\x08\x01" + b"\0" * 8, "magic number starts with 0x0001"),
        (b"\x00\x00\x10\x01" + b"\0" * 8, "unknown type code 0x10"),
        (_header(2, 3)[:9], "truncated in the header"),
        (_header(2, 3) + b"\0" * 5, r"truncated: the header \(2, 3\) promises"),
        (_header(2, 3) + b"\0" * 7, r"bytes follow"),
    ],
    ids=[
        "zero-side",
        "zero-side-data",
        "4e9x4e9",
        "max-uint32",
        "rank5",
        "rank255",
        "rank0",
        "magic",
        "type",
        "short-header",
        "short-data",
        "long-data",
    ],
)
def test_a_lying_header_is_one_data_error_for_every_reader(
    tmp_path: Path, reader: Callable[[Path], object], gz: bool, data: bytes, words: str
) -> None:
    """Never TypeError, ValueError or MemoryError: one line naming the file."""
    path = write_bytes(tmp_path / "bad", gzip.compress(data, mtime=0) if gz else data)
    with pytest.raises(DataError, match=words) as info:
        reader(path)
    assert type(info.value) is DataError
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_gzipped_header_declaring_more_than_gzip_can_hold_is_refused_before_inflating(
    tmp_path: Path,
) -> None:
    # 1000 x 1000 x 1000 bytes cannot come out of a file of a few hundred bytes.
    path = write_bytes(tmp_path / "big.gz", gzip.compress(_header(1000, 1000, 1000) + bytes(4096)))
    with pytest.raises(DataError, match=r"declares 1000000000 data bytes, more than its \d+ gzip"):
        read_idx(path)


@pytest.mark.parametrize("reader", ["read_idx(p)", "list(iter_idx(p, 3))"])
def test_a_pipe_or_a_device_is_refused_without_waiting(tmp_path: Path, reader: str) -> None:
    if not hasattr(os, "mkfifo") or not Path("/dev/zero").exists():
        pytest.skip("no named pipes or /dev/zero here")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # In a child: a reader that opened the pipe (no writer) would wait for ever; the
    # child's limit only turns such a hang into a failure, it is never reached otherwise.
    code = (
        "import sys\n"
        "from xpnet.datasets import iter_idx, read_idx\n"
        "from xpnet.errors import DataError\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        f"        {reader}\n"
        "    except DataError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo), "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == [
        f"cannot read {fifo}: it is not a regular file",
        "cannot read /dev/zero: it is not a regular file",
    ], done.stderr


@pytest.mark.parametrize("rows", [1, 4])
def test_an_empty_item_count_yields_nothing_and_reads_back_empty(tmp_path: Path, rows: int) -> None:
    write_idx(tmp_path / "empty.gz", np.zeros((0, 28, 28), np.uint8))
    assert list(iter_idx(tmp_path / "empty.gz", rows)) == []
    assert read_idx(tmp_path / "empty.gz").shape == (0, 28, 28)
