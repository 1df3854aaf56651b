"""``xpnet infer`` / scripts/mnist_inference.py on the real data, and its one-line failures."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from realdata import BOOK_CORRECT, MNIST_DIR, REPO, needs_mnist

import xpnet
import xpnet._onnxruntime_engine
import xpnet.inference
from xpnet._array_api import device_name
from xpnet.backends import to_host
from xpnet.cli import main
from xpnet.datasets import DATASETS, load_mnist
from xpnet.inference import AUTO_ROWS, ENGINES


def infer(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["infer", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.skip_backends("numpy_readonly", reason="a command makes its own arrays from names")
@needs_mnist
def test_book_accuracy_on_every_backend(backend, device_option, book_weights, capsys):
    status, out, _ = infer(
        capsys,
        "--backend",
        backend.name,
        *device_option,
        "--weights",
        str(book_weights),
        "--data-dir",
        str(MNIST_DIR),
        "--json",
    )
    assert status == 0
    report = json.loads(out)
    assert report["correct"] == BOOK_CORRECT
    assert report["accuracy"] == 0.9352
    assert report["images"] == 10_000
    assert report["backend"] == backend.name
    assert report["device"] == device_name(backend.device)
    assert report["images_per_second"] > 0
    if backend.name == "dask":  # lazy: no first call apart from the rest
        assert report["first_call_seconds"] is None
    else:
        assert report["first_call_seconds"] > 0
    stages = ("load_seconds", "transfer_seconds", "first_call_seconds", "compute_seconds")
    assert report["seconds"] >= sum(report[stage] or 0 for stage in stages)
    assert report["compute_seconds"] > 0
    assert report["weights_provenance"] is None  # the textbook's pickle records none


def test_the_main_job_loads_only_what_it_runs(tmp_path):
    """``xpnet infer`` on the shipped test split, in a fresh process: NumPy arrays compute in
    NumPy's own namespace (array-api-compat's wrapper clones NumPy's, importing every
    submodule NumPy loads lazily), and 10,000 rows, below ``auto``'s threshold, run the
    array-API code without importing ONNX Runtime."""
    from xpnet._backend_records import NUMPY_SPEAKS_STANDARD

    code = (
        "import json, sys\n"
        "from xpnet.cli import main\n"
        "status = main(['infer', '--json'])\n"
        "loaded = [m for m in ('array_api_compat.numpy', 'onnxruntime') if m in sys.modules]\n"
        "print(json.dumps({'status': status, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPNET_")}
    env["XPNET_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    report, last = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert last["status"] == 0 and report["images"] == 10_000 and report["accuracy"] >= 0.95
    assert AUTO_ROWS > 10_000 and report["engine"] == "array-api"
    assert "onnxruntime" not in last["loaded"]
    assert ("array_api_compat.numpy" in last["loaded"]) is not NUMPY_SPEAKS_STANDARD


@needs_mnist
def test_without_weights_the_bundled_ones_are_used_and_described(capsys):
    status, out, _ = infer(capsys, "--data-dir", str(MNIST_DIR), "--json")
    assert status == 0
    report = json.loads(out)
    provenance = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]
    assert report["weights"] == str(xpnet.BUNDLED_WEIGHTS)
    assert report["weights_provenance"] == provenance
    assert report["images"] == 10_000 and report["accuracy"] >= 0.95

    status, out, err = infer(capsys, "--data-dir", str(MNIST_DIR))
    assert status == 0
    assert out.splitlines()[-1] == f"Accuracy:{report['accuracy']}"
    weights_line, provenance_line = err.splitlines()[1:3]
    assert weights_line == (
        f"weights: {xpnet.BUNDLED_WEIGHTS} (784-50-100-10, sigmoid/sigmoid/softmax, float32)"
    )
    assert provenance_line.startswith(
        "provenance: trained on mnist-5k (5000 images; mnist_5k.csv.gz md5 "
        "1edea4bd327f562974bd5a5321bbb524), 100 epochs, seed 0; test accuracy "
        f"{provenance['test_accuracy']} on 10000 test images; made by: xpnet train "
    )


@needs_mnist
def test_predicted_labels_identical_across_backends(backend, book_weights):
    x, _ = load_mnist(split="test", data_dir=MNIST_DIR)
    numpy_labels = to_host(xpnet.predict_labels(xpnet.load_weights(book_weights), x))
    network = xpnet.load_weights(
        book_weights,
        backend=backend.name,
        device=device_name(backend.device),
    )
    labels = xpnet.predict_labels(network, backend.asarray(x), batch_size=1000)
    np.testing.assert_array_equal(to_host(labels), numpy_labels)


@needs_mnist
def test_human_output_uses_the_books_spelling(book_weights, capsys):
    status, out, err = infer(
        capsys,
        "--weights",
        str(book_weights),
        "--data-dir",
        str(MNIST_DIR),
        "--limit",
        "500",
        "--batch-size",
        "64",
    )
    assert status == 0
    assert out.splitlines()[-1].startswith("Accuracy:0.9")
    assert "images: 500" in out
    assert "load" in out and "transfer" in out and "compute" in out
    assert "numpy on cpu" in err


def test_the_script_runs_as_a_program_and_fails_in_one_line(tmp_path):
    script = REPO / "scripts" / "mnist_inference.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--weights",
            str(tmp_path / "missing.npz"),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("xpnet: error:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Devices that exist on no machine, so the cases hold on GPU hosts too.
        (["--backend", "cupy", "--device", "cuda:99"], "CUDA device 99|'cupy', which is not"),
        (["--backend", "torch", "--device", "cuda:99"], "CUDA device 99|'torch', which is not"),
        (["--backend", "array_api_strict", "--device", "device7"], "no device 'device7'"),
    ],
)
def test_unusable_backend_is_one_line(capsys, args, message):
    status, out, err = infer(capsys, *args, "--weights", "unused.npz")
    assert status == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_missing_data_names_files_and_fix(book_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)  # CI points it at the real files
    # As if the package shipped no test split (it does: the main job's offline default).
    mnist = dataclasses.replace(DATASETS["mnist"], embedded=None)
    monkeypatch.setitem(DATASETS, "mnist", mnist)
    status, _, err = infer(
        capsys, "--weights", str(book_weights), "--data-dir", str(tmp_path), "--no-download"
    )
    last = err.strip().splitlines()[-1]
    assert status == 1
    assert "t10k-images-idx3-ubyte" in last and str(tmp_path) in last and "--data-dir" in last


def test_bad_weights_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "weights.pkl"
    bad.write_bytes(b"\x80\x04not really a pickle")
    status, _, err = infer(capsys, "--weights", str(bad), "--data-dir", str(tmp_path))
    assert status == 1
    assert str(bad) in err.strip().splitlines()[-1]


@needs_mnist
def test_weights_that_do_not_fit_the_images(tmp_path, capsys):
    narrow = tmp_path / "narrow.npz"
    xpnet.save_weights(xpnet.init_network((780, 10), seed=0), narrow)
    status, _, err = infer(capsys, "--weights", str(narrow), "--data-dir", str(MNIST_DIR))
    assert status == 1
    assert "expects 780 features" in err.strip().splitlines()[-1]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(xpnet.WeightsError):
        main(["infer", "--weights", str(tmp_path / "missing.npz"), "--debug"])


def test_no_options_classify_the_shipped_test_split_offline(tmp_path, capsys, monkeypatch):
    """A fresh install with no network, no data folder and an empty cache: the bundled
    weights on the test split shipped in the package, with the accuracy their header
    records from training."""
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "empty cache"))
    monkeypatch.setattr("xpnet.datasets.locate.fetch", lambda *a, **k: pytest.fail("fetched"))
    recorded = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]["test_accuracy"]
    for _ in range(2):  # parsed from the package, then from the cache
        status, out, _ = infer(capsys)
        assert status == 0
        assert out.splitlines()[-1] == f"Accuracy:{recorded}"


@needs_mnist
def test_the_engine_is_the_users_choice_and_the_report_names_it(book_weights, capsys, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the engine needs onnxruntime (extra fast)")
    monkeypatch.delenv("XPNET_ENGINE", raising=False)
    common = ("--weights", str(book_weights), "--data-dir", str(MNIST_DIR))
    chosen = "onnxruntime" if AUTO_ROWS <= 10_000 else "array-api"  # auto's rule

    def as_a_fresh_process() -> None:  # auto also weighs what this process ran before
        monkeypatch.setattr(xpnet.inference, "_generic_rows", 0)
        monkeypatch.setattr(xpnet._onnxruntime_engine, "_entries", [])

    for option, expected in (("auto", chosen), *((e, e) for e in ENGINES[1:])):
        as_a_fresh_process()
        status, out, err = infer(capsys, *common, "--engine", option, "--json")
        assert status == 0
        report = json.loads(out)
        assert report["engine"] == expected and report["correct"] == BOOK_CORRECT
        as_a_fresh_process()
        status, out, err = infer(capsys, *common, "--engine", option)
        assert f"engine: {expected}" in out.splitlines() and f"engine: {expected}" in err
    monkeypatch.setenv("XPNET_ENGINE", "onnxruntime")
    assert json.loads(infer(capsys, *common, "--json")[1])["engine"] == "onnxruntime"
    status, out, _ = infer(capsys, *common, "--engine", "array-api", "--json")
    assert json.loads(out)["engine"] == "array-api"  # the option wins over the variable


def test_the_command_line_offers_the_libraries_engines():
    from xpnet.cli import options

    assert options.ENGINES == ENGINES


def test_an_unknown_engine_is_one_line(capsys, monkeypatch):
    with pytest.raises(SystemExit) as usage:
        infer(capsys, "--engine", "numba")
    assert usage.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice: 'numba'" in err
    monkeypatch.setenv("XPNET_ENGINE", "numba")
    status, out, err = infer(capsys)
    assert status == 1 and out == ""
    assert err.strip() == (
        "xpnet: error: ValueError: XPNET_ENGINE='numba' is not an engine; choose one of "
        "auto, array-api, onnxruntime"
    )
