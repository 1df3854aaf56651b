"""Issue 25, classes 4 to 6: no silently wrong answer, no lost work, no mixed set of outputs.

- Non-finite values: every loader refuses NaN or infinite weights in one line naming the
  array; a row whose output is not finite gets no class (-1) and is never counted correct,
  on every backend and engine, and ``infer`` says how many there were.
- A backend that would narrow float64 (JAX without x64) refuses it with the fix.
- ``infer`` reads the weights file once: its report never pairs two files.
- ``xpnet train`` saves whatever signals arrive (real signals to a child process, whose
  dispositions are set explicitly, whatever this process inherited).
- One sweep rule: a temporary whose writer's lock is gone is removed; a live one, or a
  name xpnet does not give, never.
- A command's set of pictures is replaced whole or not at all on a full disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import _atomic
from xpnet.cli import main
from xpnet.datasets import download
from xpnet.errors import WeightsError

HERE = Path(__file__).parent
CHILD = HERE / "cli_child.py"
REPO = HERE.parent


def small_network(dtype: str = "float32") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "W1": rng.standard_normal((784, 8)).astype(dtype),
        "b1": np.zeros(8, dtype),
        "W2": rng.standard_normal((8, 10)).astype(dtype),
        "b2": np.zeros(10, dtype),
    }


# Non-finite values ---------------------------------------------------------------------


def write_npz(params, path):
    xpnet.save_weights(params, path)


def write_plain_npz(params, path):
    with open(path, "wb") as file:
        np.savez(file, **params)


def write_safetensors(params, path):
    pytest.importorskip("safetensors")
    xpnet.save_weights(params, path, format="safetensors")


def write_onnx(params, path):
    pytest.importorskip("onnx")
    xpnet.export_onnx(params, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "write", [write_npz, write_plain_npz, write_safetensors, write_onnx], ids=lambda w: w.__name__
)
def test_every_loader_refuses_weights_that_are_not_finite_naming_the_array(tmp_path, write, bad):
    params = small_network()
    params["W2"][3, 4] = bad
    params["W2"][5, 1] = bad
    path = tmp_path / "w.bin"
    write(params, path)
    for read in (xpnet.load_weights, xpnet.read_weights_info):
        with pytest.raises(WeightsError) as caught:
            read(path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message
        assert "W2: 2 of its 80 values are not finite" in message


def test_a_cast_that_overflows_to_infinity_is_refused(tmp_path):
    params = small_network("float64")
    params["b1"][0] = 1e300  # finite in float64, infinite in float32
    path = tmp_path / "w.npz"
    xpnet.save_weights(params, path)
    assert xpnet.load_weights(path).dtype == np.float64
    with pytest.raises(WeightsError, match="b1: 1 of its 8 values are not finite"):
        xpnet.load_weights(path, dtype="float32")


def test_infer_with_nan_weights_fails_in_one_line(tmp_path, capsys):
    params = small_network()
    params["W1"][0, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **params)
    status = main(["infer", "--weights", str(path), "--json", "--no-download"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert captured.err.strip() == (
        f"xpnet: error: {path}: W1: 1 of its 6272 values are not finite (NaN or infinity); "
        "xpnet loads only finite weights"
    )


def overflowing_rows(backend):
    """A network and rows of which some overflow to infinity or NaN in the output layer,
    labelled with the class an argmax would wrongly give them."""
    w = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.2]], np.float32)
    net = xpnet.Network.from_mapping(
        {"W1": backend.asarray(w), "b1": backend.asarray(np.zeros(3, np.float32))}, ["softmax"]
    )
    big = np.float32(3e38)
    rows = np.array(
        [
            [1.0, 0.0],  # class 0, finite
            [big, -big],  # z = (inf, -inf, finite): argmax says 0
            [0.0, 2.0],  # class 1, finite
            [-big, big],  # z = (-inf, inf, finite): argmax says 1
            [np.nan, 0.0],  # NaN input: argmax of NaN says 0
        ],
        np.float32,
    )
    return net, backend.asarray(rows), backend.asarray(np.array([0, 0, 1, 1, 0]))


def test_a_row_whose_output_is_not_finite_has_no_class_and_is_never_correct(backend):
    net, x, t = overflowing_rows(backend)
    with np.errstate(all="ignore"):
        labels = xpnet.to_host(xpnet.predict_labels(net, x))
        correct = xpnet.count_correct(net, x, t)
        both = xpnet.inference.count_correct_and_unlabelled(net, x, t)
        one_hot = backend.asarray(np.eye(3, dtype=np.float32)[[0, 0, 1, 1, 0]])
        accuracy = xpnet.accuracy(net, x, one_hot)
    assert labels.tolist() == [0, -1, 1, -1, -1]
    assert correct == 2 and both == (2, 3) and accuracy == 2 / 5


def test_the_numpy_engine_and_the_generic_path_give_no_class_alike():
    pytest.importorskip("onnxruntime")
    from xpnet import _onnxruntime_engine as engine
    from xpnet.forward_pass import forward

    net, x, _ = overflowing_rows(xpnet.get_backend("numpy"))
    with np.errstate(all="ignore"):
        generic = forward(net, x, labels=True)
        fast = engine.forward(net, x, labels=True)
    assert generic.tolist() == fast.tolist() == [0, -1, 1, -1, -1]


@pytest.mark.needs_session("dask", reason="dask is the dask session's")
def test_dask_chunks_give_no_class_alike():
    import dask.array as da

    net, x, _ = overflowing_rows(xpnet.get_backend("numpy"))
    lazy = xpnet.to_backend(net, "dask")
    with np.errstate(all="ignore"):
        labels = xpnet.predict_labels(lazy, da.from_array(x, chunks=(2, 2))).compute()
    assert labels.tolist() == [0, -1, 1, -1, -1]


# float64 where the backend cannot hold it ----------------------------------------------

JAX_WITHOUT_X64 = textwrap.dedent(
    """
    import sys, numpy as np, xpnet
    from xpnet.errors import BackendUnavailableError
    network = xpnet.init_network([4, 3, 2], dtype="float64")
    xpnet.save_weights(network, sys.argv[1])
    attempts = {
        "to_backend": lambda: xpnet.to_backend(network, "jax"),
        "load_weights": lambda: xpnet.load_weights(sys.argv[1], backend="jax"),
        "init_network": lambda: xpnet.init_network([4, 3, 2], dtype="float64", backend="jax"),
    }
    for name, attempt in attempts.items():
        try:
            got = attempt()
        except BackendUnavailableError as exc:
            print(name, "refused", str(exc))
        else:
            print(name, "gave", got.dtype)
    print("asked", xpnet.load_weights(sys.argv[1], backend="jax", dtype="float32").dtype)
    """
)


@pytest.mark.needs_session("jax", reason="jax is the jax session's")
def test_float64_onto_jax_without_x64_is_refused_with_the_fix(tmp_path):
    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", JAX_WITHOUT_X64, str(tmp_path / "w.npz")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout + result.stderr
    for line in lines[:3]:
        assert " refused " in line and "JAX_ENABLE_X64=1" in line, line
    assert lines[3] == "asked float32"


# Read once -----------------------------------------------------------------------------


def test_infer_reports_the_provenance_of_the_arrays_it_ran(tmp_path, capsys, monkeypatch):
    """The weights file is replaced by another right after it is first read: the report
    pairs the first file's arrays with the first file's header, never the second's."""
    import xpnet.weights as weights_module

    first = xpnet.init_network([784, 8, 10], seed=1)
    second = xpnet.init_network([784, 16, 12, 10], seed=2)
    path, other = tmp_path / "w.npz", tmp_path / "other.npz"
    xpnet.save_weights(first, path, metadata={"seed": 1})
    xpnet.save_weights(second, other, metadata={"seed": 2})
    real_read = weights_module._read

    def read_then_replace(*args, **kwargs):
        result = real_read(*args, **kwargs)
        os.replace(other, path) if other.exists() else None
        return result

    monkeypatch.setattr(weights_module, "_read", read_then_replace)
    from cli_child import fake_load_mnist

    monkeypatch.setattr(xpnet.datasets, "load_mnist", fake_load_mnist)
    status = main(["infer", "--weights", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["weights_provenance"] == {"seed": 1}
    assert report["not_finite"] == 0


# Signals during xpnet train ------------------------------------------------------------


def train_sending_signals(out: Path, signals: str) -> subprocess.CompletedProcess[str]:
    """``xpnet train`` (two epochs of made-up data) in a child that sends itself ``signals``
    (``XPNET_SIGNALS_AT``, see tests/cli_child.py) and sets their dispositions itself."""
    env = {**os.environ, "XPNET_SIGNALS_AT": signals, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [
            sys.executable,
            str(CHILD),
            "train",
            "--epochs",
            "2",
            "--batch-size",
            "10",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("signals", "status"),
    [
        ("batch2:SIGINT,record:SIGINT", 130),  # the second as training hands over
        ("batch2:SIGTERM", 143),
        ("batch2:SIGINT,save:SIGINT,save:SIGTERM", 130),  # more during the save itself
        ("record:SIGINT", 130),  # after the last step, before the save
        ("save:SIGTERM", 143),
    ],
)
def test_train_saves_the_network_whatever_signals_arrive(tmp_path, signals, status):
    out = tmp_path / "w.npz"
    result = train_sending_signals(out, signals)
    assert result.returncode == status, result.stderr
    assert "saved the network" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]
    record = xpnet.read_weights_info(out)["metadata"]
    assert record["interrupted"] == signals.startswith("batch2")
    assert record["epochs_completed"] == (0 if signals.startswith("batch2") else 2)
    assert xpnet.load_weights(out).sizes == (784, 50, 100, 10)


@pytest.mark.parametrize(
    ("signals", "status"),
    [("load:SIGINT", 130), ("load:SIGTERM", 143), ("load:SIGHUP", 129), ("batch2:SIGHUP", 129)],
)
def test_train_exits_with_the_status_of_the_signal_at_every_stage(tmp_path, signals, status):
    # The child sets each signal's disposition itself, so what this process inherited
    # (a shell's trap '' INT, nohup) does not change the outcome.
    out = tmp_path / "w.npz"
    result = train_sending_signals(out, signals)
    assert result.returncode == status, result.stderr
    if signals.startswith("load"):  # nothing trained yet: nothing saved, nothing left
        assert result.stderr.splitlines()[-1] == "xpnet: interrupted", result.stderr
        assert list(tmp_path.iterdir()) == []
    else:
        assert "saved the network" in result.stderr, result.stderr
        assert xpnet.read_weights_info(out)["metadata"]["interrupted"]


# One sweep rule ------------------------------------------------------------------------

KILLED_IN_ATOMIC_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from xpnet._atomic import atomic_write
    with atomic_write(Path(sys.argv[1])) as stream:
        stream.write(b"half")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_writers_temporary_is_swept_and_nothing_else(tmp_path):
    target = tmp_path / "w.npz"
    child = subprocess.run([sys.executable, "-c", KILLED_IN_ATOMIC_WRITE, str(target)], check=False)
    assert child.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir()]
    assert _atomic.temp_pattern(target).fullmatch(left.name)
    # A live writer's temporary (its lock held), and look-alikes xpnet did not make.
    live = tmp_path / f".w.npz.{'a' * 16}{_atomic.TEMP_SUFFIX}"
    live.write_bytes(b"live")
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    mine = tmp_path / f".w.npz.notes{_atomic.TEMP_SUFFIX}"
    mine.write_bytes(b"mine")
    link = tmp_path / f".w.npz.{'b' * 16}{_atomic.TEMP_SUFFIX}"
    link.symlink_to(mine)
    fifo = tmp_path / f".w.npz.{'c' * 16}{_atomic.TEMP_SUFFIX}"
    os.mkfifo(fifo)
    try:
        xpnet.save_weights(xpnet.init_network([4, 3, 2]), target)
    finally:
        os.close(held)
    assert not left.exists()
    assert live.read_bytes() == b"live" and mine.read_bytes() == b"mine"
    assert link.is_symlink() and fifo.exists()
    assert xpnet.load_weights(target).sizes == (4, 3, 2)


KILLED_IN_A_CHUNK = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from xpnet.scaleout.store import write_store

    real_replace = Path.replace

    def replace(self, target):  # zarr's rename of a written chunk into place
        if self.name.endswith(".partial") and "/c/" in self.as_posix():
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(self, target)

    Path.replace = replace
    rng = np.random.default_rng(0)
    write_store(sys.argv[1], rng.integers(0, 256, (30, 784), dtype=np.uint8),
                rng.integers(0, 10, 30), chunk_rows=10)
    """
)


def test_a_store_write_killed_mid_chunk_leaves_nothing_after_the_next(tmp_path):
    pytest.importorskip("zarr")
    from xpnet.scaleout.store import open_store, write_store

    store = tmp_path / "s.zarr"
    child = subprocess.run([sys.executable, "-c", KILLED_IN_A_CHUNK, str(store)], check=False)
    assert child.returncode == -signal.SIGKILL
    partials = list(tmp_path.rglob("*.partial"))
    assert partials, "the child was killed before zarr wrote a chunk"
    rng = np.random.default_rng(1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "left ...: it holds files that xpnet did not write"
        write_store(store, rng.integers(0, 256, (20, 784), dtype=np.uint8), rng.integers(0, 10, 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    assert not list(tmp_path.rglob("*.partial"))
    assert len(open_store(store)) == 20


def test_a_malformed_lock_in_a_staging_folder_is_left_alone(tmp_path):
    folder = tmp_path / f"{download.STAGING_PREFIX}planted"
    folder.mkdir()
    (folder / "xpnet-download.lock").write_text("[" * 3000 + "]" * 3000)
    (folder / "data.gz").write_bytes(b"someone's")
    assert download.sweep_staging(tmp_path) == []
    assert (folder / "data.gz").read_bytes() == b"someone's"
    with download.staging_folder(tmp_path, "x.gz") as staging:
        assert staging.is_dir()
    assert folder.is_dir()


def test_a_killed_downloads_staging_folder_is_swept_but_not_a_live_one(tmp_path):
    empty = tmp_path / f"{download.STAGING_PREFIX}empty"  # killed before its lock
    empty.mkdir()
    dead = tmp_path / f"{download.STAGING_PREFIX}dead"
    dead.mkdir()
    (dead / "xpnet-download.lock").write_text(json.dumps({"file": "t.gz"}))
    (dead / "t.gz").write_bytes(b"half")
    with download.staging_folder(tmp_path, "live.gz") as live:
        assert not dead.exists() and not empty.exists()  # swept as the next one began
        (live / "live.gz").write_bytes(b"half")
        assert download.sweep_staging(tmp_path) == []  # another process's sweep
        assert (live / "live.gz").exists()
    assert list(tmp_path.iterdir()) == []


# Sets of outputs on a full disk --------------------------------------------------------


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_full_disk_replaces_no_picture_of_the_set_and_names_the_file(
    tmp_path, capsys, monkeypatch, failing
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from xpnet.cli import pictures

    folder = tmp_path / "out"
    folder.mkdir()
    paths = [folder / f"{name}.png" for name in ("a", "b", "c")]
    for path in paths:
        path.write_bytes(b"old " + path.name.encode())
    figures = [Figure(figsize=(1, 1)) for _ in paths]
    real_savefig, calls = Figure.savefig, []

    def savefig(self, stream, *args, **kwargs):
        calls.append(1)
        if len(calls) == failing + 1:
            stream.write(b"part")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savefig(self, stream, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    args = type("Args", (), {"dpi": 50, "force": True, "show": False})()
    with pytest.raises(Exception) as caught:
        pictures.deliver(args, list(zip(paths, figures)), folder=folder)
    message = main_one_line(caught.value)
    assert str(paths[failing]) in message and "No space left on device" in message
    assert [p.read_bytes() for p in paths] == [b"old " + p.name.encode() for p in paths]
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png"]


def main_one_line(exc: BaseException) -> str:
    from xpnet.cli import one_line

    return one_line(exc)


def test_inspect_counts_a_row_without_a_class_as_misclassified_and_worst(backend):
    from xpnet.plotting import misclassified_indices

    probabilities = backend.asarray(
        np.array([[0.9, 0.1], [np.nan, np.nan], [0.4, 0.6], [0.2, 0.8], [np.inf, 0.0]], np.float32)
    )
    labels = backend.asarray(np.array([0, 0, 0, 1, 0]))
    # An argmax would call rows 1 and 4 class 0, as labelled; they have no class.
    assert xpnet.to_host(misclassified_indices(labels, probabilities)).tolist() == [1, 4, 2]


def test_infer_counts_and_reports_outputs_that_overflow(tmp_path, capsys, monkeypatch):
    """Finite weights whose sums overflow float32 on every image: no image has a class,
    so none is correct (an argmax would give class 0, right for a tenth of them)."""
    from cli_child import fake_load_mnist

    monkeypatch.setattr(xpnet.datasets, "load_mnist", fake_load_mnist)
    path = tmp_path / "huge.npz"
    huge = {"W1": np.full((784, 10), 3e38, np.float32), "b1": np.zeros(10, np.float32)}
    xpnet.save_weights(xpnet.Network.from_mapping(huge, ["softmax"]), path)
    with np.errstate(all="ignore"):
        status = main(["infer", "--weights", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["images"] == 40 and report["not_finite"] == 40
    assert report["correct"] == 0 and report["accuracy"] == 0.0
    with np.errstate(all="ignore"):
        main(["infer", "--weights", str(path)])
    assert "not finite: 40 images gave an output that is not finite" in capsys.readouterr().out
