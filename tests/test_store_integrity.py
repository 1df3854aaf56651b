"""Image stores as an adversary meets them: swapped, replaced, resized, vanished or hostile
pieces, other people's folders under ``--overwrite``, Ctrl-C and kill -9 part-way.

Each damage must be one line naming the piece (never zeros or another answer), on the eager
and the lazy path; nothing a user owns is deleted; an interrupted write leaves the old
store whole and nothing beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xpnet.cli import main
from xpnet.errors import DataError
from xpnet.scaleout import store as store_module
from xpnet.scaleout.store import open_store, write_store

pytest.importorskip("zarr")

pytestmark = pytest.mark.needs_session("dask", reason="zarr is the dask session's")

ROWS, CHUNK = 600, 200


def digits(rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (rows, 784), dtype=np.uint8), rng.integers(0, 10, rows)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    x, t = digits()
    return Path(write_store(tmp_path / "s.zarr", x, t, chunk_rows=CHUNK).path)


def beside(path: Path) -> list[str]:
    """Everything in ``path``'s folder but ``path`` itself (litter a write may leave)."""
    return sorted(name for name in os.listdir(path.parent) if name != path.name)


def read_eagerly(path: Path) -> object:
    return open_store(path).read()


def read_lazily(path: Path) -> object:
    import dask

    images, labels = open_store(path).read(lazy=True)
    return dask.compute(images, labels, scheduler="synchronous")


def one_line_error(read, path: Path, *pieces: str) -> str:
    """The one-line DataError of ``read(path)``; each piece is in it (a regex where it
    starts with ``^``)."""
    with pytest.raises(DataError) as caught:
        read(path)
    message = str(caught.value)
    assert "\n" not in message
    for piece in pieces:
        assert re.search(piece[1:], message) if piece.startswith("^") else piece in message
    return message


SWAPPED = r"^chunk images/c/(0/0 \(rows 0:200\)|1/0 \(rows 200:400\))"
"""Either swapped chunk may be read first (dask's order)."""


# --- damaged stores -------------------------------------------------------------------------


def swap_image_chunks(path: Path) -> None:
    first, second = path / "images/c/0/0", path / "images/c/1/0"
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def replace_a_label_chunk(path: Path) -> None:
    shutil.copyfile(path / "labels/c/0", path / "labels/c/2")


@pytest.mark.parametrize("read", [read_eagerly, read_lazily], ids=["eager", "lazy"])
def test_swapped_image_chunks_are_named_not_read(store, read):
    swap_image_chunks(store)
    one_line_error(read, store, SWAPPED, "does not match the manifest")


@pytest.mark.parametrize("read", [read_eagerly, read_lazily], ids=["eager", "lazy"])
def test_a_label_chunk_replaced_by_another_is_named(store, read):
    replace_a_label_chunk(store)
    one_line_error(read, store, "chunk labels/c/2 (rows 400:600)", "does not match the manifest")


def test_shape_shrunk_in_both_arrays_metadata_is_refused_on_open(store):
    for name in ("images", "labels"):
        meta_file = store / name / "zarr.json"
        meta = json.loads(meta_file.read_text())
        meta["shape"][0] = 400  # two whole chunks: the rest would simply not be read
        meta_file.write_text(json.dumps(meta))
    one_line_error(open_store, store, "images/zarr.json gives shape [400, 784]", "manifest")


@pytest.mark.parametrize("read", ["eager", "lazy"])
def test_a_chunk_deleted_after_open_is_missing_not_zeros(store, read):
    opened = open_store(store)
    if read == "lazy":
        images, _ = opened.read(lazy=True)  # the graph exists before the chunk goes
    (store / "images/c/1/0").unlink()
    with pytest.raises(DataError, match=r"chunk images/c/1/0 \(rows 200:400\) .* is missing"):
        if read == "lazy":
            images.compute(scheduler="synchronous")
        else:
            opened.read()


def test_a_lazy_slice_across_chunks_is_checked_and_right(store):
    x, _ = digits()
    images, _ = open_store(store).read(lazy=True)
    np.testing.assert_array_equal(images[150:450:7, 3:9].compute(), x[150:450:7, 3:9])
    np.testing.assert_array_equal(images[[5, 590, 201]].compute(), x[[5, 590, 201]])
    swap_image_chunks(store)
    images, _ = open_store(store).read(lazy=True)
    with pytest.raises(DataError, match="chunk images/c/1/0"):
        images[250:260].compute(scheduler="synchronous")


def labels_a_group(path: Path) -> None:
    shutil.rmtree(path / "labels")
    (path / "labels").mkdir()
    (path / "labels/zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')


def deeply_nested(path: Path) -> None:
    depth = 100_000
    (path / "zarr.json").write_text("[" * depth + "]" * depth)


def deeply_nested_object(path: Path) -> None:
    depth = 100_000
    (path / "images/zarr.json").write_text('{"a":' * depth + "1" + "}" * depth)


def oversized(path: Path) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["padding"] = "x" * (store_module.MAX_METADATA_BYTES + 1)
    (path / "zarr.json").write_text(json.dumps(meta))


def manifest_gone(path: Path) -> None:
    (path / store_module.MANIFEST).unlink()


def attributes_changed(path: Path) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["image_shape"] = [392, 2]
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "pieces"),
    [
        (labels_a_group, ["labels is a group, not an array"]),
        (deeply_nested, ["zarr.json: its JSON is nested too deeply"]),
        (deeply_nested_object, ["zarr.json: its JSON is nested too deeply"]),
        (oversized, ["zarr.json", "bytes is more than metadata needs"]),
        (manifest_gone, ["xpnet-manifest.json is missing"]),
        (attributes_changed, ["attributes in zarr.json differ"]),
    ],
    ids=["labels-group", "deep-array", "deep-object", "oversized", "no-manifest", "attrs"],
)
def test_hostile_metadata_is_one_line(store, damage, pieces):
    damage(store)
    one_line_error(open_store, store, str(store), *pieces)


def test_damage_reaches_the_cli_as_one_line(capsys, store, tmp_path):
    import xpnet

    weights = tmp_path / "net.npz"
    xpnet.save_weights(xpnet.init_network((784, 50, 100, 10), seed=1), weights)
    swap_image_chunks(store)
    args = ["infer", "--weights", str(weights), "--input", str(store), "--json"]
    for backend in ("numpy", "dask"):
        assert main([*args, "--backend", backend]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.count("\n") == 1 and re.search(SWAPPED[1:], err)


# --- overwrite: only xpnet's stores ---------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a").write_text("x")
    x, t = digits(10)
    with pytest.raises(DataError, match="is a folder without xpnet's store metadata"):
        write_store(precious, x, t, overwrite=True)
    assert (precious / "a").read_text() == "x"
    assert beside(precious) == []


def refuse_to_load(monkeypatch) -> None:
    import xpnet.datasets

    def load_mnist(**_: object) -> None:
        raise AssertionError("convert read the dataset before checking where it writes")

    monkeypatch.setattr(xpnet.datasets, "load_mnist", load_mnist)


@pytest.mark.parametrize(
    ("target", "options", "expected"),
    [
        ("precious", ["--overwrite"], "is a folder without xpnet's store metadata"),
        ("precious", [], "exists; choose another path, or overwrite it"),
        ("precious/a", ["--overwrite"], "is a file, not an xpnet image store"),
        ("missing/out.zarr", [], "missing is not a folder"),
    ],
)
def test_convert_refuses_what_it_may_not_write_first_in_one_line(
    tmp_path, capsys, monkeypatch, target, options, expected
):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a").write_text("x")
    refuse_to_load(monkeypatch)
    assert main(["convert", str(tmp_path / target), *options]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert os.listdir(precious) == ["a"] and (precious / "a").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["precious"]


def test_convert_replaces_its_own_store(tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.zarr"
    write_store(target, *digits(30, seed=1))
    fake_mnist(monkeypatch)
    assert main(["convert", str(target), "--overwrite", "--chunk-rows", "500"]) == 0
    assert "wrote 2000 images" in capsys.readouterr().err
    np.testing.assert_array_equal(open_store(target).read()[0], digits(2000, seed=5)[0])
    assert beside(target) == []


def test_a_store_at_a_non_utf8_path_is_written_and_read(tmp_path):
    target = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xff\xfe.zarr"))
    x, t = digits()
    write_store(target, x, t, chunk_rows=CHUNK)
    write_store(target, x, t, chunk_rows=CHUNK, overwrite=True)
    np.testing.assert_array_equal(read_eagerly(target)[0], x)
    np.testing.assert_array_equal(read_lazily(target)[0], x)
    assert beside(target) == []


@pytest.mark.parametrize("kind", ["file", "symlink-to-store", "fifo"])
def test_overwrite_refuses_files_links_and_fifos(tmp_path, store, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("mine")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(store)
    x, t = digits(10)
    with pytest.raises(DataError, match="not an xpnet image store"):
        write_store(target, x, t, overwrite=True)
    assert os.path.lexists(target)
    if kind == "file":
        assert target.read_text() == "mine"
    open_store(store).read()  # the store a link points to is untouched


def test_without_overwrite_anything_existing_is_refused(tmp_path, store):
    x, t = digits(10)
    for existing in (store, tmp_path):
        with pytest.raises(DataError, match="exists; choose another path"):
            write_store(existing, x, t)


def test_a_missing_parent_folder_is_an_error_not_created(tmp_path):
    x, t = digits(10)
    with pytest.raises(DataError, match="is not a folder"):
        write_store(tmp_path / "no" / "such" / "s.zarr", x, t)
    assert not (tmp_path / "no").exists()


def test_overwrite_replaces_a_store_and_leaves_nothing_beside_it(store):
    x, t = digits(450, seed=9)
    replaced = write_store(store, x, t, chunk_rows=100, overwrite=True)
    images, labels = replaced.read()
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, t)
    assert beside(store) == []


def test_overwrite_deletes_only_the_files_the_old_manifest_lists(store, tmp_path_factory):
    (store / "images" / "notes.txt").write_text("mine")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep").write_text("mine")
    (store / "labels" / "link").symlink_to(outside, target_is_directory=True)
    x, t = digits(50, seed=2)
    with pytest.warns(RuntimeWarning, match="holds files that xpnet did not write"):
        write_store(store, x, t, overwrite=True)
    np.testing.assert_array_equal(open_store(store).read()[0], x)
    (left,) = beside(store)  # the old store's folder, kept for what xpnet did not write
    kept = store.parent / left
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == [
        "images",
        "images/notes.txt",
        "labels",
        "labels/link",
    ]
    assert (outside / "keep").read_text() == "mine"


# --- interrupted and killed writes ----------------------------------------------------------


def interrupt_at(monkeypatch, name: str, after: int = 0) -> None:
    """Make ``store_module.<name>`` raise KeyboardInterrupt on its call number ``after + 1``."""
    real = getattr(store_module, name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, name, interrupted)


@pytest.mark.parametrize(
    ("step", "after"),
    [("create_locked", 0), ("write_chunk", 3), ("_write_json", 0), ("_exchange", 0)],
    ids=["marker", "chunks", "manifest", "swap"],
)
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_ctrl_c_at_each_step_leaves_the_old_store_whole_and_no_litter(
    store, monkeypatch, step, after, exchange
):
    if not exchange:
        monkeypatch.setattr(store_module, "_rename_exchange", lambda a, b: False)
    before = open_store(store).read()
    interrupt_at(monkeypatch, step, after)
    x, t = digits(450, seed=9)
    with pytest.raises(KeyboardInterrupt):
        write_store(store, x, t, chunk_rows=100, overwrite=True)
    after_images, after_labels = open_store(store).read()
    np.testing.assert_array_equal(after_images, before[0])
    np.testing.assert_array_equal(after_labels, before[1])
    assert beside(store) == []


def test_ctrl_c_between_the_two_renames_puts_the_old_store_back(store, monkeypatch):
    monkeypatch.setattr(store_module, "_rename_exchange", lambda a, b: False)
    real = os.rename

    def rename(source, destination):
        if Path(destination) == store and Path(source).name.endswith(tuple("0123456789abcdef")):
            raise KeyboardInterrupt  # the new store moving into place (not the old moving back)
        real(source, destination)

    monkeypatch.setattr(store_module.os, "rename", rename)
    before = open_store(store).read()[0]
    x, t = digits(30, seed=3)
    with pytest.raises(KeyboardInterrupt):
        write_store(store, x, t, overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(open_store(store).read()[0], before)
    assert beside(store) == []


def test_the_two_rename_swap_gives_the_new_store(store, monkeypatch):
    monkeypatch.setattr(store_module, "_rename_exchange", lambda a, b: False)
    x, t = digits(30, seed=3)
    np.testing.assert_array_equal(write_store(store, x, t, overwrite=True).read()[0], x)
    assert beside(store) == []


KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from xpnet.scaleout import store

    real = store.write_chunk
    calls = []

    def killed(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        real(*args)

    store.write_chunk = killed
    x = np.zeros((600, 784), np.uint8)
    store.write_store(sys.argv[1], x, np.zeros(600, np.uint8), chunk_rows=100,
                      overwrite=True)
    """
)


def test_what_a_killed_write_left_is_removed_by_the_next_but_nothing_else(store, tmp_path):
    child = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(store)], check=False)
    assert child.returncode == -signal.SIGKILL
    (left,) = beside(store)
    assert left.startswith(f".{store.name}.xpnet-")
    assert (store.parent / left / store_module.STAGING_MARKER).exists()
    # Look-alikes that xpnet did not leave: no marker, a live builder, another store's name.
    lookalike = store.parent / f".{store.name}.xpnet-0123456789abcdef"
    lookalike.mkdir()
    (lookalike / "a").write_text("mine")
    live = store.parent / f".{store.name}.xpnet-fedcba9876543210"
    live.mkdir()
    (live / store_module.STAGING_MARKER).write_text(json.dumps({"pid": os.getpid()}))
    held = os.open(live / store_module.STAGING_MARKER, os.O_RDONLY)  # its builder's lock
    fcntl.flock(held, fcntl.LOCK_EX)
    other = store.parent / ".other.zarr.xpnet-00112233445566ff"
    shutil.copytree(store.parent / left, other)
    x, t = digits(20, seed=1)
    try:
        write_store(store, x, t, overwrite=True)
    finally:
        os.close(held)
    assert beside(store) == sorted([lookalike.name, live.name, other.name])
    assert (lookalike / "a").read_text() == "mine"
    open_store(store).read()


SECOND_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from xpnet.scaleout.store import write_store
    rng = np.random.default_rng(int(sys.argv[2]))
    x = rng.integers(0, 256, (50, 784), dtype=np.uint8)
    write_store(sys.argv[1], x, rng.integers(0, 10, 50), chunk_rows=20, overwrite=True)
    """
)


@pytest.mark.parametrize("replacing", [False, True])
def test_a_second_writer_never_removes_a_finished_staging_store(tmp_path, monkeypatch, replacing):
    # The first write is held at its swap, its store complete beside the target, while a
    # second process writes the same target from start to end.
    target = tmp_path / "s.zarr"
    if replacing:
        write_store(target, *digits(30, seed=3))
    swap = "_exchange" if replacing else "_rename_new"
    real_swap = getattr(store_module, swap)
    second: list[subprocess.CompletedProcess[str]] = []

    def swap_after_a_second_write(staging: Path, into: Path) -> None:
        command = [sys.executable, "-c", SECOND_WRITER, str(target), "4"]
        second.append(subprocess.run(command, capture_output=True, text=True, check=False))
        real_swap(staging, into)

    monkeypatch.setattr(store_module, swap, swap_after_a_second_write)
    x, t = digits(40, seed=1)
    if replacing:  # last to swap, the first write wins; the second's store was the old one
        write_store(target, x, t, chunk_rows=20, overwrite=True)
        expected = x
    else:  # the second write came first; the first refuses to replace what appeared
        with pytest.raises(DataError, match="appeared while the store was written"):
            write_store(target, x, t, chunk_rows=20)
        expected = np.random.default_rng(4).integers(0, 256, (50, 784), dtype=np.uint8)
    assert second[0].returncode == 0, second[0].stderr
    np.testing.assert_array_equal(open_store(target).read()[0], expected)
    assert beside(target) == []
    assert sorted(os.listdir(target)) == ["images", "labels", "xpnet-manifest.json", "zarr.json"]


def fake_mnist(monkeypatch) -> None:
    import xpnet.datasets

    def load_mnist(**_: object) -> tuple[np.ndarray, np.ndarray]:
        x, t = digits(2000, seed=5)
        return x.reshape(-1, 1, 28, 28), t

    monkeypatch.setattr(xpnet.datasets, "load_mnist", load_mnist)


INTERRUPTED_CONVERT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import xpnet.datasets
    from zarr.storage import LocalStore
    from xpnet.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the parent ignores

    def load_mnist(**_):
        rng = np.random.default_rng(5)
        return rng.integers(0, 256, (2000, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 2000)

    xpnet.datasets.load_mnist = load_mnist
    real_set = LocalStore.set
    chunks = []

    async def set(self, key, value):
        if "/c/" in key:
            chunks.append(key)
            if len(chunks) == int(sys.argv[2]):  # Ctrl-C while zarr's loop writes this chunk
                os.kill(os.getpid(), signal.SIGINT)
        return await real_set(self, key, value)

    LocalStore.set = set
    sys.exit(main(["convert", sys.argv[1], "--chunk-rows", "200", "--overwrite"]))
    """
)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
@pytest.mark.parametrize("at_chunk", [1, 7])
def test_ctrl_c_in_convert_leaves_no_litter_and_prints_one_line(tmp_path, existing, at_chunk):
    target = tmp_path / "out.zarr"
    if existing:
        x, t = digits(300, seed=1)
        write_store(target, x, t, chunk_rows=100)
    child = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_CONVERT, str(target), str(at_chunk)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (child.returncode, child.stderr) == (130, "xpnet: interrupted\n")
    assert beside(target) == []
    if existing:
        np.testing.assert_array_equal(open_store(target).read()[0], x)
    else:
        assert not target.exists()


def old_format_store(path: Path) -> None:
    """A store as xpnet wrote them before the manifest: format 1, no manifest file."""
    x, t = digits(300, seed=8)
    write_store(path, x, t, chunk_rows=100)
    (path / store_module.MANIFEST).unlink()
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["xpnet"] = "labelled-images/1"
    (path / "zarr.json").write_text(json.dumps(meta))


def test_a_store_without_a_manifest_is_refused_on_read_but_may_be_replaced(tmp_path):
    path = tmp_path / "old.zarr"
    old_format_store(path)
    (path / "images" / "mine.txt").write_text("mine")
    one_line_error(open_store, path, "an earlier xpnet, without a manifest", "convert")
    x, t = digits(40, seed=4)
    with pytest.warns(RuntimeWarning, match="holds files that xpnet did not write"):
        write_store(path, x, t, overwrite=True)
    np.testing.assert_array_equal(read_eagerly(path)[0], x)
    (left,) = beside(path)  # only what the old layout does not explain stays
    kept = tmp_path / left
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == [
        "images",
        "images/mine.txt",
    ]


def test_an_empty_store_reads_as_empty_arrays(tmp_path):
    x, t = digits(0)
    opened = write_store(tmp_path / "e.zarr", x, t)
    images, labels = opened.read()
    assert images.shape == (0, 784) and labels.shape == (0,)
    lazy_images, lazy_labels = opened.read(lazy=True)
    assert lazy_images.compute().shape == (0, 784) and lazy_labels.compute().shape == (0,)
