"""The rules every ``xpnet`` command keeps (docs/cli.md): --version, ``python -m xpnet``,
help, one-line usage errors with status 2, one-line failures with status 1, no silent
overwrite, strict JSON with shared keys, quiet exit on a closed pipe, Ctrl-C while scoring,
escaped metadata and file names that are not UTF-8.

Made-up data stands in for MNIST (``load_mnist`` replaced); where a real process is needed
(pipes, signals, argv bytes) ``tests/cli_child.py`` runs the command on made-up data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from realdata import MNIST_DIR, REPO, TEST_FILES, needs_mnist

import xpnet
from xpnet.cli import build_parser, main, pictures
from xpnet.cli import train as train_command

CHILD = Path(__file__).with_name("cli_child.py")

pytest.importorskip("matplotlib", reason="the picture commands need matplotlib")


def child(*args: str | bytes, env: dict[str, str] | None = None, **kwargs):  # type: ignore[no-untyped-def]
    """``xpnet ARGS`` in a child process on made-up data; returns the CompletedProcess."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=kwargs.pop("capture_output", True),
        env=environment,
        check=False,
        **kwargs,
    )


def strict_json(text: str) -> dict:
    """``text`` parsed as strict JSON: NaN and Infinity are refused, as jq refuses them."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    value = json.loads(text, parse_constant=refuse)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def made_up_mnist(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """``load_mnist`` gives 40 random MNIST-shaped images a split; records its calls."""
    sys.path.insert(0, str(CHILD.parent))
    from cli_child import fake_load_mnist

    calls: list[dict] = []

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return fake_load_mnist(*args, **kwargs)

    monkeypatch.setattr("xpnet.datasets.load_mnist", recording)
    monkeypatch.setattr(train_command, "load_mnist", recording)
    return calls


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "weights.npz"
    xpnet.save_weights(xpnet.init_network((784, 6, 10), seed=1), path)
    return path


# --version and python -m xpnet -----------------------------------------------------------


def test_version_in_process_and_as_python_m_xpnet(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"xpnet {xpnet.__version__}\n"
    result = subprocess.run(
        [sys.executable, "-m", "xpnet", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"xpnet {xpnet.__version__}\n",
        "",
    )


def test_python_m_xpnet_runs_the_same_commands():
    result = subprocess.run(
        [sys.executable, "-m", "xpnet", "backends", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    names = [entry["backend"] for entry in strict_json(result.stdout)["backends"]]
    assert names == list(xpnet.BACKENDS)


def test_the_package_version_is_the_one_place_it_is_written():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["hatch"]["version"] == {"path": "xpnet/__init__.py"}


# Usage errors: status 2 and exactly one line naming the command ---------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["infer", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
        (["infer", "--limit", "-5"], "argument --limit: expected a positive integer, got '-5'"),
        (["infer", "--backend", "nope"], "argument --backend: invalid choice: 'nope'"),
        (["infer", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
        (["train", "--lr", "nan"], "argument --lr: expected a finite number"),
        (["train", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["train", "--epochs", "2.5"], "argument --epochs: expected an integer, got '2.5'"),
        (["inspect", "--max-images", "0"], "argument --max-images: expected a positive"),
        (["plot-activations", "--dpi", "x"], "argument --dpi: expected an integer, got 'x'"),
        (["backends", "--bogus"], "unrecognized arguments: --bogus"),
        (["convert", "s.zarr", "--chunk-rows", "0"], "argument --chunk-rows: expected a positive"),
        (["infer", "--local-cluster", "2"], "--local-cluster needs --backend dask"),
        (["infer", "--local-cluster", "2", "--chunk-rows", "5"], "--local-cluster and "),
    ],
)
def test_usage_errors_are_one_line_with_status_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    command = argv[0]
    (line,) = captured.err.splitlines()
    assert line.startswith(f"xpnet {command}: error: ")
    assert line.endswith(f" (see 'xpnet {command} --help')")
    assert message in line
    assert "positive_int" not in line and "invalid int value" not in line


def test_a_missing_command_is_a_usage_error_of_xpnet(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "xpnet: error: the following arguments are required: COMMAND (see 'xpnet --help')"
    )


def test_a_usage_error_from_a_real_process_is_one_line_and_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "xpnet", "infer", "--batch-size", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "xpnet infer: error: argument --batch-size: expected a positive integer, got '0' "
        "(see 'xpnet infer --help')\n"
    )


# Help ---------------------------------------------------------------------------------------


def command_parsers() -> dict:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


@pytest.mark.parametrize("name", list(command_parsers()))
def test_each_command_has_plain_help_with_its_defaults(name):
    parser = command_parsers()[name]
    assert parser.description, f"{name} has no description"
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    for action in parser._actions:
        default = action.default
        if not action.option_strings or default is None or isinstance(default, bool):
            continue
        if default == "==SUPPRESS==":
            continue
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        flat = " ".join(text.split())
        assert f"(default: {shown})" in flat or f"default: {shown}" in flat, (
            f"xpnet {name} {action.option_strings[0]}'s default {shown} is not in its help"
        )


def test_help_names_the_defaults_the_issue_found_missing():
    parsers = command_parsers()
    flat = {name: " ".join(parser.format_help().split()) for name, parser in parsers.items()}
    assert "array backend (default: numpy)" in flat["infer"]
    assert "images per batch; default: 100 on a CPU" in flat["infer"]
    assert "(default: mnist)" in flat["infer"]
    assert "dataset to train on (default: mnist-5k)" in flat["train"]
    assert "(default: adam)" in flat["train"] and "(default: float32)" in flat["train"]
    assert "default: 0.003 with adam" in flat["train"]
    assert "split to draw from (default: test)" in flat["show-mnist"]
    assert "required unless --show" in flat["plot-activations"]


def test_top_level_help_lists_every_command_with_a_line():
    text = build_parser().format_help()
    for name in command_parsers():
        assert re.search(rf"^\s+{re.escape(name)}\s+\S|^\s+{re.escape(name)}\n\s+\S", text, re.M)


def test_the_installed_command_has_no_benchmark(capsys):
    """The benchmarks run from a checkout (``scripts/benchmark.py``), not as ``xpnet bench``."""
    assert "bench" not in command_parsers()
    with pytest.raises(SystemExit) as info:
        main(["bench"])
    assert info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


# Pictures: any format matplotlib writes; sizes bounded before drawing ------------------------


@pytest.mark.parametrize("suffix", ["jpg", "pdf", "webp", "tiff"])
def test_plots_write_any_format_matplotlib_writes(suffix, tmp_path, capsys):
    from matplotlib.backend_bases import FigureCanvasBase

    assert suffix in FigureCanvasBase.get_supported_filetypes()
    out = tmp_path / f"activations.{suffix}"
    assert main(["plot-activations", "--out", str(out), "--dpi", "20"]) == 0
    magic = {"jpg": b"\xff\xd8", "pdf": b"%PDF", "webp": b"RIFF", "tiff": b"II"}[suffix]
    assert out.read_bytes().startswith(magic)


def test_a_huge_dpi_is_refused_before_any_raster_is_drawn(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def no_drawing(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("savefig called: the raster would be allocated")

    monkeypatch.setattr(Figure, "savefig", no_drawing)
    out = tmp_path / "activations.png"
    assert main(["plot-activations", "--out", str(out), "--dpi", "100000"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    width, height = activations_picture_inches()
    assert line.startswith(
        f"xpnet: error: --dpi 100000 makes a {width * 100_000:,.0f}x{height * 100_000:,.0f}-pixel"
    )
    assert "at most 100,000,000 pixels and 65,535 a side" in line
    assert not list(tmp_path.iterdir())


def activations_picture_inches() -> tuple[float, float]:
    """Width and height of the activations picture, as the library draws it."""
    from xpnet.plotting import plot_activations

    width, height = plot_activations().get_size_inches()
    return float(width), float(height)


def test_the_pixel_bound_is_checked_on_the_picture_size(tmp_path, capsys):
    # A dpi that keeps both sides under MAX_SIDE but the area over MAX_PIXELS: refused by area.
    width, height = activations_picture_inches()
    dpi = int(pictures.MAX_SIDE / max(width, height))
    assert width * dpi * height * dpi > pictures.MAX_PIXELS
    assert main(["plot-activations", "--out", str(tmp_path / "a.png"), "--dpi", str(dpi)]) == 1
    assert f"{width * dpi:,.0f}x{height * dpi:,.0f}-pixel" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# No silent overwrite ------------------------------------------------------------------------


def test_train_refuses_an_existing_out_before_loading_anything(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"
    out.write_bytes(b"mine")
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"xpnet: error: --out {out} exists; pass --force to replace it"
    assert out.read_bytes() == b"mine" and made_up_mnist == []


def test_train_force_replaces_an_existing_out(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"
    out.write_bytes(b"mine")
    args = ["train", "--epochs", "1", "--json", "--out", str(out), "--force"]
    assert main(args) == 0
    assert xpnet.load_weights(out).sizes == (784, 50, 100, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]


def test_train_refuses_a_file_that_appears_while_it_trains(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"

    def appear(self, stats, network):  # type: ignore[no-untyped-def]
        out.write_bytes(b"someone else's")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_command.EpochBars, "epoch", appear)
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"xpnet: error: --out {out} exists; pass --force to replace it"
    )
    assert out.read_bytes() == b"someone else's"


def test_a_missing_parent_folder_is_an_error_and_never_created(made_up_mnist, tmp_path, capsys):
    missing = tmp_path / "missing"
    for argv in (
        ["train", "--epochs", "1", "--out", str(missing / "w.npz")],
        ["plot-activations", "--out", str(missing / "a.png")],
        ["inspect", "--out", str(missing / "pictures")],
    ):
        assert main(argv) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert "does not exist (xpnet does not create it)" in line
        assert not missing.exists()


def test_plots_refuse_an_existing_picture_and_replace_it_with_force(tmp_path, capsys):
    out = tmp_path / "a.png"
    out.write_bytes(b"mine")
    assert main(["plot-activations", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"xpnet: error: --out {out} exists; pass --force to replace it\n"
    )
    assert out.read_bytes() == b"mine"
    assert main(["plot-activations", "--out", str(out), "--force"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary file left


def test_a_new_picture_honours_the_umask(tmp_path, capsys):
    old = os.umask(0o027)
    try:
        assert main(["plot-activations", "--out", str(tmp_path / "a.png")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640


def test_force_writes_through_a_symlink_and_never_replaces_a_device(tmp_path, capsys):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert main(["plot-activations", "--out", str(link), "--force"]) == 0
    assert link.is_symlink() and real.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "real.png"]
    capsys.readouterr()
    device = Path("/dev/null")
    assert main(["train", "--out", str(device), "--force"]) == 1
    assert "is not a regular file" in capsys.readouterr().err
    assert device.is_char_device()


def test_inspect_refuses_existing_pictures_and_makes_one_folder_level(
    made_up_mnist, weights, tmp_path, capsys
):
    folder = tmp_path / "pictures"
    argv = ["inspect", "--weights", str(weights), "--out", str(folder), "--dpi", "20"]
    assert main(argv) == 0
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["confusion_matrix.png", "first_layer_weights.png", "misclassified.png"]
    capsys.readouterr()
    calls = len(made_up_mnist)
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("misclassified.png exists; pass --force to replace it")
    assert len(made_up_mnist) == calls  # refused before loading anything
    assert main([*argv, "--force", "--format", "jpg"]) == 0
    assert len(list(folder.glob("*.jpg"))) == 3


# One JSON shape, strict ---------------------------------------------------------------------

SHARED = {"backend", "device", "weights", "dataset", "split", "images", "correct", "accuracy"}
"""The keys of every command that classifies images (docs/cli.md)."""


def test_infer_and_inspect_share_their_keys_and_values(made_up_mnist, weights, tmp_path, capsys):
    assert main(["infer", "--weights", str(weights), "--json"]) == 0
    infer = strict_json(capsys.readouterr().out)
    argv = ["inspect", "--weights", str(weights), "--json", "--out", str(tmp_path / "p")]
    assert main([*argv, "--dpi", "20"]) == 0
    inspect = strict_json(capsys.readouterr().out)
    assert set(infer) >= SHARED and set(inspect) >= SHARED
    assert {key: infer[key] for key in SHARED} == {key: inspect[key] for key in SHARED}
    assert infer["backend"] == "numpy" and infer["device"] == "cpu"
    assert infer["weights"] == str(weights) and infer["split"] == "test"
    assert infer["images"] == 40 and infer["correct"] == round(infer["accuracy"] * 40)
    assert inspect["out"] == str(tmp_path / "p")
    assert sorted(Path(f).name for f in inspect["files"]) == [
        "confusion_matrix.png",
        "first_layer_weights.png",
        "misclassified.png",
    ]


def test_train_and_backends_use_the_same_names(made_up_mnist, tmp_path, capsys):
    out = tmp_path / "w.npz"
    assert main(["train", "--epochs", "1", "--json", "--out", str(out)]) == 0
    train = strict_json(capsys.readouterr().out)
    assert (train["backend"], train["device"], train["dataset"]) == ("numpy", "cpu", "mnist-5k")
    assert train["out"] == str(out) and train["files"] == [str(out)]
    assert main(["backends", "--json"]) == 0
    listing = strict_json(capsys.readouterr().out)
    assert set(listing) == {"backends", "numpy_engine"}
    for entry in listing["backends"]:
        assert set(entry) == {"backend", "available", "reason"}
        assert isinstance(entry["available"], bool) and isinstance(entry["reason"], str)
    assert listing["numpy_engine"] == dict(zip(("engine", "detail"), xpnet.numpy_engine()))


def test_backends_names_the_numpy_engine_and_why(capsys, monkeypatch):
    import xpnet.cli.backends as backends_command

    reason = "onnxruntime not installed (pip install 'xpnet[fast]')"
    monkeypatch.setattr(backends_command, "numpy_engine", lambda: ("auto", reason))
    assert main(["backends"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"numpy engine: auto ({reason})"


def test_backends_says_which_engine_the_environment_chose(capsys, monkeypatch):
    monkeypatch.setenv("XPNET_ENGINE", "array-api")
    assert main(["backends"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == "numpy engine: array-api (xpnet's array-API code)"
    monkeypatch.setenv("XPNET_ENGINE", "auto")
    assert main(["backends", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["numpy_engine"]
    assert engine["engine"] == "auto"
    assert engine["detail"].startswith(("onnxruntime ", "xpnet's array-API code: "))


def test_no_images_give_null_not_nan(made_up_mnist, weights, capsys, monkeypatch):
    monkeypatch.setenv("XPNET_FAKE_IMAGES", "0")
    assert main(["infer", "--weights", str(weights), "--json"]) == 0
    report = strict_json(capsys.readouterr().out)
    assert report["images"] == 0 and report["accuracy"] is None


def write_with_header_metadata(path: Path, metadata_json: str) -> None:
    """An xpnet weights file whose header's metadata is ``metadata_json``, written by hand
    as another program might write it."""
    xpnet.save_weights(xpnet.init_network((784, 6, 10), seed=1), path)
    with np.load(path) as archive:
        header = json.loads(str(archive["xpnet_header"]))
        arrays = {name: archive[name] for name in archive.files if name != "xpnet_header"}
    header["metadata"] = "@METADATA@"
    text = json.dumps(header).replace('"@METADATA@"', metadata_json)
    np.savez(path, **arrays, xpnet_header=np.array(text))


def test_nan_in_a_weights_header_becomes_null(made_up_mnist, tmp_path, capsys):
    path = tmp_path / "w.npz"
    write_with_header_metadata(path, '{"loss": NaN, "best": Infinity, "list": [-Infinity]}')
    assert main(["infer", "--weights", str(path), "--json"]) == 0
    provenance = strict_json(capsys.readouterr().out)["weights_provenance"]
    assert provenance == {"loss": None, "best": None, "list": [None]}


def test_a_diverged_training_records_null_losses(made_up_mnist, tmp_path, capsys, monkeypatch):
    real_train = train_command.train

    def diverging(*args, **kwargs):  # type: ignore[no-untyped-def]
        network, history = real_train(*args, **kwargs)
        history.epochs[-1] = dataclasses.replace(history.epochs[-1], loss=float("nan"))
        return network, history

    monkeypatch.setattr(train_command, "train", diverging)
    out = tmp_path / "w.npz"
    assert main(["train", "--epochs", "1", "--json", "--out", str(out)]) == 0
    report = strict_json(capsys.readouterr().out)
    assert report["train_loss"] is None and report["history"][0]["loss"] is None
    assert xpnet.read_weights_info(out)["metadata"]["train_loss"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["infer", "--json", "--weights", "{tmp}/missing.npz"],
        ["inspect", "--json", "--weights", "{tmp}/missing.npz", "--out", "{tmp}/p"],
        ["train", "--json", "--epochs", "1", "--out", "{tmp}/no/w.npz"],
        ["train", "--json", "--epochs", "1", "--layers", "784-10-9", "--out", "{tmp}/w.npz"],
    ],
)
def test_json_is_empty_on_failure(argv, made_up_mnist, tmp_path, capsys):
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("xpnet: error: ")


# Failures: one line, status 1 ---------------------------------------------------------------


def test_layers_too_large_for_memory_are_refused_before_allocating(made_up_mnist, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_command, "physical_memory", lambda: 16 * 2**30)
        argv = ["train", "--layers", "784-100000000-10", "--out", str(tmp_path / "w.npz")]
        assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "xpnet: error: --layers 784-100000000-10: 79,500,000,010 float32 parameters need "
        "about 1,480.8 GiB to train, more than this machine's 16.0 GiB"
    )
    assert made_up_mnist == []


def test_memory_error_is_one_line(made_up_mnist, tmp_path, capsys, monkeypatch):
    def exhausted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise MemoryError("Unable to allocate 296. GiB for an array")

    monkeypatch.setattr(train_command, "init_network", exhausted)
    assert main(["train", "--out", str(tmp_path / "w.npz")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "xpnet: error: out of memory: Unable to allocate 296. GiB for an array"
    )


def test_control_characters_in_a_header_are_escaped(made_up_mnist, tmp_path, capsys):
    path = tmp_path / "w.npz"
    record = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]
    record["command"] = "xpnet train \x1b[2J\x1b]0;owned\x07 \u202e"
    xpnet.save_weights(xpnet.init_network((784, 6, 10), seed=1), path, metadata=record)
    assert main(["infer", "--weights", str(path)]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    (provenance,) = [line for line in err.splitlines() if line.startswith("provenance:")]
    assert "made by: xpnet train \\x1b[2J\\x1b]0;owned\\x07 \\u202e" in provenance


@pytest.mark.parametrize(
    "metadata",
    ['["a", "list"]', '"a string"', "12", '{"dataset_md5": ["a"], "command": 5}', "RECORD"],
)
def test_odd_metadata_never_gives_a_traceback(made_up_mnist, tmp_path, capsys, metadata):
    path = tmp_path / "w.npz"
    if metadata == "RECORD":  # a training record with fields of the wrong types
        record = xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]
        metadata = json.dumps({**record, "dataset_md5": ["a", "list"], "test_images": "many"})
    write_with_header_metadata(path, metadata)
    status = main(["infer", "--weights", str(path)])
    err = capsys.readouterr().err
    if status == 1:  # refused by the weights reader: one line naming the file, last
        (line,) = [line for line in err.splitlines() if line.startswith("xpnet")]
        assert line == err.splitlines()[-1]
        assert line.startswith("xpnet: error: ") and str(path) in line
    else:
        assert status == 0
        (line,) = [line for line in err.splitlines() if line.startswith("provenance:")]
        assert json.loads(line.removeprefix("provenance: ")) == json.loads(metadata)


def test_printable_escapes_what_moves_a_terminal_and_keeps_the_rest():
    from xpnet.cli.output import printable

    text = "plain é ü 中 \t\n\x1b[31m\x7f\x9b\u2028\u202e\udcff"
    assert printable(text) == "plain é ü 中 \\x09\\x0a\\x1b[31m\\x7f\\x9b\\u2028\\u202e\\xff"


# Real processes: pipes, signals, bytes ------------------------------------------------------


def closed_pipe_run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    """Run the child with stdout a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return child(
            *args,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=cwd,
            capture_output=False,
            text=True,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["infer", "--help"],
        ["backends"],
        ["backends", "--json"],
        ["infer", "--json"],
        ["infer"],
        ["train", "--epochs", "1", "--json", "--out", "{tmp}/w.npz"],
        ["train", "--epochs", "1", "--out", "{tmp}/w2.npz"],
        ["inspect", "--json", "--dpi", "20", "--out", "{tmp}/pictures"],
        ["inspect", "--dpi", "20", "--out", "{tmp}/pictures2"],
        ["plot-activations", "--dpi", "20", "--out", "{tmp}/a.png"],
        ["show-mnist", "--dpi", "20", "--out", "{tmp}/m.png"],
    ],
)
def test_a_closed_pipe_ends_quietly_with_status_0(argv, tmp_path):
    result = closed_pipe_run(*(arg.format(tmp=tmp_path) for arg in argv))
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr and "Exception" not in result.stderr
    assert "xpnet: error" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [["infer"], ["train", "--epochs", "2", "--out", "{tmp}/w.npz"], ["--help"]],
)
def test_stdout_and_stderr_into_one_closed_pipe_end_quietly(argv, tmp_path):
    """As ``xpnet infer 2>&1 | head -1`` after head has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = child(
            *(arg.format(tmp=tmp_path) for arg in argv),
            stdout=write_end,
            stderr=write_end,
            capture_output=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0


def test_a_closed_pipe_after_training_still_leaves_the_network(tmp_path):
    out = tmp_path / "w.npz"
    result = closed_pipe_run("train", "--epochs", "1", "--json", "--out", str(out))
    assert result.returncode == 0
    assert xpnet.load_weights(out).sizes == (784, 50, 100, 10)


def test_a_closed_pipe_on_stdout_does_not_hide_a_real_failure(tmp_path):
    result = closed_pipe_run("infer", "--weights", str(tmp_path / "missing.npz"))
    assert result.returncode == 1
    line = result.stderr.splitlines()[-1]
    assert line.startswith("xpnet: error: ") and "missing.npz" in line


def test_ctrl_c_while_scoring_on_the_test_split_still_saves(tmp_path):
    out = tmp_path / "w.npz"
    result = child(
        "train",
        "--epochs",
        "2",
        "--json",
        "--out",
        str(out),
        env={"XPNET_INTERRUPT_WHILE_SCORING": "1"},
        text=True,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"xpnet: interrupted after all 2 epochs, before the test score; saved the network to {out}"
    )
    record = xpnet.read_weights_info(out)["metadata"]
    assert record == {
        k: v for k, v in strict_json(result.stdout).items() if k not in ("out", "files")
    }
    assert record["interrupted"] and record["epochs_completed"] == 2
    assert record["test_accuracy"] is None and record["test_loss"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]


def test_a_second_ctrl_c_while_saving_does_not_lose_the_network(
    made_up_mnist, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "w.npz"
    save = train_command.save_weights

    def interrupted_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        signal.raise_signal(signal.SIGINT)  # deferred: the save goes on
        save(*args, **kwargs)

    monkeypatch.setattr(train_command, "save_weights", interrupted_save)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert xpnet.load_weights(out).sizes == (784, 50, 100, 10)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"xpnet: interrupted while saving; saved the network to {out}"
    )


def test_an_out_whose_name_is_not_utf8_works(tmp_path):
    out = os.fsencode(tmp_path) + b"/w\xff.npz"
    result = child("train", "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[-1] == f"saved: {tmp_path}/w\\xff.npz"
    assert xpnet.load_weights(os.fsdecode(out)).sizes == (784, 50, 100, 10)
    again = child("train", "--epochs", "1", "--out", out)
    assert again.returncode == 1
    (line,) = again.stderr.decode().splitlines()
    assert line == f"xpnet: error: --out {tmp_path}/w\\xff.npz exists; pass --force to replace it"


@needs_mnist
def test_a_data_dir_whose_name_is_not_utf8_works_or_fails_in_one_line(tmp_path):
    folder = os.fsencode(tmp_path) + b"/data\xff"
    os.mkdir(folder)
    for name in TEST_FILES:
        os.symlink(MNIST_DIR / name, folder + b"/" + name.encode())
    result = subprocess.run(
        [sys.executable, "-m", "xpnet", "infer", "--data-dir", folder, "--no-download", "--json"],
        capture_output=True,
        check=False,
        env={**os.environ, "XPNET_CACHE_DIR": str(tmp_path / "cache")},
    )
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err
    assert result.returncode == 0, err
    assert strict_json(result.stdout.decode())["accuracy"] >= 0.95
