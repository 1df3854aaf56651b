"""Dask inference: lazy, one task per chunk, equal to NumPy; image stores and their CLI."""

from __future__ import annotations

import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from realdata import BOOK_CORRECT, MNIST_DIR, needs_mnist

import xpnet
from xpnet.cli import main
from xpnet.scaleout import training as dask_training
from xpnet.scaleout.schedulers import compute
from xpnet.scaleout.store import open_store, write_store
from xpnet.scaleout.tiling import tiled_order

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
pytest.importorskip("zarr")

pytestmark = pytest.mark.needs_session(
    "dask", reason="dask, distributed and zarr are the dask session's"
)

SIZES = (784, 50, 100, 10)


def digits(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 'images' and labels, for tests that need no real data."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (rows, SIZES[0]), dtype=np.uint8), rng.integers(0, 10, rows)


def networks() -> tuple[xpnet.Network, xpnet.Network]:
    """The same seeded network for raw pixels, on NumPy and on dask."""
    on_numpy = xpnet.init_network(SIZES, seed=1).scale_input(1 / 255)
    return on_numpy, xpnet.to_backend(on_numpy, "dask")


def refuse_to_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("dask computed something before the caller asked")


@pytest.mark.parametrize("batch_size", [None, 7, 1000])
def test_predict_is_lazy_with_one_task_per_chunk_and_the_weights_once(batch_size):
    on_numpy, on_dask = networks()
    x, _ = digits(1000)
    chunks = ((300, 250, 450), (SIZES[0],))
    x_dask = da.from_array(x, chunks=chunks)
    with dask.config.set(scheduler=refuse_to_compute):
        labels = xpnet.predict_labels(on_dask, x_dask, batch_size=batch_size)
        probabilities = xpnet.predict(on_dask, x_dask, batch_size=batch_size)
    assert labels.chunks == chunks[:1]
    assert probabilities.chunks == (chunks[0], (SIZES[-1],))
    graph = dict(labels.__dask_graph__())
    tasks = [task for key, task in graph.items() if key[0].startswith("xpnet-labels")]
    assert len(tasks) == 3  # one per chunk, however many batches a chunk holds
    first_weights = on_numpy.layers[0].weight.nbytes
    assert all(len(pickle.dumps(task)) < first_weights / 10 for task in tasks)
    inputs = set(dict(x_dask.__dask_graph__()))
    holding = [k for k, v in graph.items() if k not in inputs and len(pickle.dumps(v)) > 1e5]
    assert len(holding) == 1  # the first layer's weights, once for all tasks
    np.testing.assert_array_equal(labels.compute(), xpnet.predict_labels(on_numpy, x))
    np.testing.assert_allclose(
        probabilities.compute(), xpnet.predict(on_numpy, x), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_count_correct_and_accuracy_match_numpy(one_hot, dtype):
    on_numpy, on_dask = networks()
    x, t = digits(900, seed=2)
    x = x.astype(dtype)
    t = np.eye(10, dtype=np.float32)[t] if one_hot else t
    expected = xpnet.count_correct(on_numpy, x, t)
    x_dask, t_dask = da.from_array(x, chunks=(256, 392)), da.from_array(t, chunks=200)
    assert xpnet.count_correct(on_dask, x_dask, t_dask, batch_size=64) == expected
    assert xpnet.accuracy(on_dask, x_dask, t_dask) == expected / 900


def test_compute_draws_dasks_progress_bar_on_stderr(capsys):
    assert compute(da.ones(10, chunks=5).sum(), progress=True) == (10,)
    assert "100% Completed" in capsys.readouterr().err


def test_tiled_order_repeats_the_source_in_fresh_orders():
    order = tiled_order(10, 25, seed=3)
    assert len(order) == 25
    for start in (0, 10):
        assert sorted(order[start : start + 10]) == list(range(10))
    assert len(set(order[20:])) == 5
    assert not np.array_equal(order[:10], order[10:20])
    np.testing.assert_array_equal(order, tiled_order(10, 25, seed=3))
    assert not np.array_equal(order, tiled_order(10, 25, seed=4))


def test_store_reads_back_whole_and_lazily(tmp_path):
    x, t = digits(500, seed=4)
    order = tiled_order(len(x), 1200, seed=5)
    store = write_store(
        tmp_path / "s.zarr",
        x.reshape(-1, 28, 28),
        t,
        order=order,
        chunk_rows=256,
        metadata={"dataset": "noise"},
    )
    assert (len(store), store.chunk_rows) == (1200, 256)
    assert store.metadata["image_shape"] == [28, 28]
    assert store.metadata["dataset"] == "noise"
    images, labels = open_store(store.path).read()
    np.testing.assert_array_equal(images, x[order])
    np.testing.assert_array_equal(labels, t[order])
    assert labels.dtype == np.int64
    lazy_images, lazy_labels = store.read(lazy=True)
    assert lazy_images.chunks[0] == (256, 256, 256, 256, 176)
    np.testing.assert_array_equal(lazy_images.compute(), x[order])
    np.testing.assert_array_equal(lazy_labels.compute(), t[order])


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.npz"
    xpnet.save_weights(xpnet.init_network(SIZES, seed=1), path)
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    x, t = digits(600, seed=6)
    return Path(write_store(tmp_path / "digits.zarr", x, t, chunk_rows=200).path)


def infer(capsys, *args: object) -> tuple[int, str, str]:
    status = main(["infer", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def damage_metadata(store: Path) -> None:
    (store / "zarr.json").write_text("{not json")


def unmark(store: Path) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["xpnet"]
    (store / "zarr.json").write_text(json.dumps(meta))


def lose_a_chunk(store: Path) -> None:
    (store / "images" / "c" / "1" / "0").unlink()


def corrupt_a_chunk(store: Path) -> None:
    (store / "images" / "c" / "2" / "0").write_bytes(b"\x28\xb5\x2f\xfd not zstd at all")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda store: store.rename(store.with_name("gone")), "no image store at"),
        (damage_metadata, "cannot open the image store"),
        (unmark, "is not an xpnet image store"),
        (lose_a_chunk, "1 chunk(s) are missing"),
        (corrupt_a_chunk, "cannot read chunk images/c/2/0 (rows 400:600) of the image store"),
    ],
    ids=["missing", "bad-metadata", "not-xpnet", "lost-chunk", "corrupt-chunk"],
)
def test_missing_or_damaged_store_is_a_one_line_error(
    capsys, weights_file, store_path, damage, message
):
    damage(store_path)
    status, out, err = infer(
        capsys, "--backend", "dask", "--weights", weights_file, "--input", store_path, "--json"
    )
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("xpnet: error: ")
    assert message in err


def test_stores_without_zarr_say_what_to_install(capsys, monkeypatch, weights_file, store_path):
    monkeypatch.setitem(sys.modules, "zarr", None)  # installed without the dask extra
    hint = "xpnet's image stores need zarr 3: pip install 'xpnet[dask]'"
    status, _, err = infer(capsys, "--weights", weights_file, "--input", store_path)
    assert status == 1 and err.endswith(f"\nxpnet: error: ImportError: {hint}\n")
    x, t = digits(10, seed=6)
    with pytest.raises(ImportError, match=re.escape(hint)):
        write_store(store_path.with_name("new.zarr"), x, t)
    assert not store_path.with_name("new.zarr").exists()


def test_dask_options_need_the_dask_backend(capsys, weights_file, store_path):
    with pytest.raises(SystemExit) as info:  # a usage error: status 2, one line
        infer(capsys, "--weights", weights_file, "--input", store_path, "--local-cluster", "2")
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "xpnet infer: error: --local-cluster needs --backend dask (see 'xpnet infer --help')\n"
    )


@needs_mnist
@pytest.mark.parametrize(
    "options",
    [
        ["--backend", "numpy"],
        ["--backend", "dask"],
        ["--backend", "dask", "--scheduler", "processes", "--chunk-rows", "5000"],
    ],
    ids=["numpy", "dask-threads", "dask-processes"],
)
def test_converted_test_split_gives_the_books_accuracy(capsys, tmp_path, book_weights, options):
    store = tmp_path / "mnist-test.zarr"
    status = main(["convert", str(store), "--data-dir", str(MNIST_DIR), "--chunk-rows", "2500"])
    assert status == 0
    assert "wrote 10000 images (mnist test split)" in capsys.readouterr().err
    status, out, _ = infer(capsys, *options, "--weights", book_weights, "--input", store, "--json")
    assert status == 0
    report = json.loads(out)
    assert (report["images"], report["correct"]) == (10_000, BOOK_CORRECT)
    assert report["dataset"] == "mnist"


@needs_mnist
def test_convert_refuses_to_overwrite_unless_asked(capsys, store_path):
    status = main(["convert", str(store_path), "--data-dir", str(MNIST_DIR)])
    assert status == 1
    assert "exists; choose another path, or overwrite it" in capsys.readouterr().err


def train_twice(network: xpnet.Network, data: list, augment_shift: int) -> tuple:
    """Two epochs of Adam on ``data`` (x, t, x_val, t_val): the network, log and optimizer."""
    optimizer = xpnet.Adam(0.01)
    trained, history = xpnet.train(
        network, data[0], data[1], x_val=data[2], t_val=data[3], epochs=2, batch_size=10,
        optimizer=optimizer, seed=5, augment_shift=augment_shift,
    )  # fmt: skip
    return trained, history, optimizer


@pytest.mark.parametrize("augment_shift", [0, 2])
def test_training_on_dask_equals_numpy_holding_one_group_of_rows_at_a_time(
    monkeypatch, augment_shift
):
    x, t = digits(130, seed=4)
    data = [x.astype(np.float32) / 255.0, t, x[:50].astype(np.float32) / 255.0, t[:50]]
    network = xpnet.init_network((784, 12, 10), seed=2)
    on_numpy, numpy_log, numpy_optimizer = train_twice(network, data, augment_shift)

    computed: list[list[tuple[int, ...]]] = []
    compute_for_real = dask_training.computed

    def recording(arrays: list) -> list:
        computed.append([tuple(a.shape) for a in arrays])
        return compute_for_real(arrays)

    monkeypatch.setattr(dask_training, "computed", recording)
    monkeypatch.setattr(dask_training, "GROUP_ROWS", 20)
    lazy_data = [da.from_array(a, chunks=15) for a in data]
    on_dask, dask_log, dask_optimizer = train_twice(
        xpnet.to_backend(network, "dask"), lazy_data, augment_shift
    )
    numpy_state = [a for arrays in numpy_optimizer.state.values() for a in arrays]
    dask_state = [a for arrays in dask_optimizer.state.values() for a in arrays]
    numpy_arrays = [*on_numpy.to_mapping().values(), *numpy_state]
    dask_arrays = [*on_dask.to_mapping().values(), *dask_state]
    assert len(dask_arrays) == len(numpy_arrays) == 3 * 4
    for host, lazy in zip(numpy_arrays, dask_arrays):
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(), host)  # the same batches, the same math
    same = [(s.loss, s.accuracy, s.val_loss, s.val_accuracy) for s in numpy_log.epochs]
    assert [(s.loss, s.accuracy, s.val_loss, s.val_accuracy) for s in dask_log.epochs] == same
    # The network and the optimizer's state (none yet) once, then groups of whole batches
    # covering a chunk or GROUP_ROWS (here 20 rows), never everything: per epoch 130 training
    # rows (x, targets, labels) in 7 groups, then 50 validation rows (x, targets) in 3.
    network_shapes, state_shapes, *groups = computed
    assert network_shapes == [(784, 12), (12,), (12, 10), (10,)] and state_shapes == []
    assert [len(group) for group in groups] == 2 * ([3] * 7 + [2] * 3)
    group_rows = [{shape[0] for shape in group} for group in groups]
    assert group_rows == 2 * ([{20}] * 6 + [{10}] + [{20}] * 2 + [{10}])


def test_training_on_dask_hands_back_dask_arrays_to_callbacks():
    x, t = digits(40, seed=6)
    network = xpnet.to_backend(xpnet.init_network((784, 8, 10), seed=0), "dask")
    losses, networks_seen = [], []
    trained, _ = xpnet.train(
        network.scale_input(1 / 255),
        da.from_array(x, chunks=10),
        da.from_array(t, chunks=10),
        epochs=1,
        batch_size=20,
        on_batch=lambda stats: losses.append(stats.loss),
        on_epoch=lambda stats, net: networks_seen.append(net),
    )
    assert len(losses) == 2 and all(isinstance(loss, da.Array) for loss in losses)
    assert all(loss.shape == () and np.isfinite(loss.compute()) for loss in losses)
    (seen,) = networks_seen
    assert all(isinstance(a, da.Array) for a in seen.to_mapping().values())
    for a, b in zip(seen.to_mapping().values(), trained.to_mapping().values()):
        np.testing.assert_array_equal(a.compute(), b.compute())


def test_training_on_dask_wraps_a_batch_loss_only_when_it_is_read(monkeypatch):
    # A progress bar never reads the loss, and wrapping every step's loss for dask would
    # cost time on each step: it is wrapped on the first read, once.
    wrapped_sizes = []

    def as_dask(arrays):
        wrapped_sizes.append(len(arrays))
        return real_as_dask(arrays)

    real_as_dask = dask_training.as_dask
    monkeypatch.setattr(dask_training, "as_dask", as_dask)
    x, t = digits(40, seed=6)
    network = xpnet.to_backend(xpnet.init_network((784, 8, 10), seed=0), "dask")
    seen = []
    xpnet.train(
        network.scale_input(1 / 255),
        da.from_array(x, chunks=10),
        da.from_array(t, chunks=10),
        epochs=1,
        batch_size=10,
        on_batch=seen.append,
    )
    assert len(seen) == 4 and 1 not in wrapped_sizes  # only the network's four arrays
    first_reads = [stats.loss for stats in seen]
    assert wrapped_sizes.count(1) == 4
    assert all(stats.loss is loss for stats, loss in zip(seen, first_reads))  # cached
    assert wrapped_sizes.count(1) == 4
    assert all(isinstance(loss, da.Array) and loss.shape == () for loss in first_reads)
    assert all(np.isfinite(loss.compute()) for loss in first_reads)
