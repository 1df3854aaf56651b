"""scripts/gpu_check.sh, rehearsed on a CPU machine: a stand-in ``nvidia-smi``, prepared
folders made here (a probe wheel, the MNIST test split), array-api-strict in place of
cupy. The script's own logic is what is tested: its steps, the record each one leaves as
it ends, its results folder (at most 8 files, all of which come back from the device
machine), and its exit status for a pass, a failing test, a test that hangs and ignores
SIGTERM, and missing or altered carried folders. The rehearsal with the default settings
in a host-like Python 3.12 is the nox session ``gpu_rehearsal``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from realdata import BOOK_CORRECT

GPU_CHECK = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
STAND_IN_GPU = "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)"


def test_gpu_check_parses_and_refuses_without_a_gpu(tmp_path):
    for parsed in (GPU_CHECK, GPU_CHECK.parent / "gpu_prepare.sh"):
        subprocess.run(["bash", "-n", str(parsed)], check=True)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": f"{empty}:/usr/bin:/bin", "XPNET_GPU_RESULTS": str(tmp_path / "r")}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(GPU_CHECK)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2  # a GPU is what it needs: nothing was checked
    assert "gpu: missing (nvidia-smi lists no NVIDIA GPU" in done.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["exit_status"] == 2 and summary["steps"][0]["status"] == "missing"


def probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, standing in for the carried ones."""
    import zipfile

    wheel = folder / "xpnet_check_probe-1.0-py3-none-any.whl"
    info = "xpnet_check_probe-1.0.dist-info"
    files = {
        "xpnet_check_probe/__init__.py": "CARRIED = True\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: xpnet-check-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(name, text)
    return wheel


def sha256_sums(folder: Path) -> None:
    import hashlib

    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder)}\n"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    (folder / "SHA256SUMS").write_text("".join(lines))


@pytest.fixture
def rehearsal(tmp_path):
    """The prepared folders, a stand-in nvidia-smi, and how to run the check's rehearsal."""
    from realdata import BOOK_WEIGHTS, MNIST_DIR, TEST_FILES

    if not (BOOK_WEIGHTS.is_file() and all((MNIST_DIR / f).is_file() for f in TEST_FILES)):
        pytest.skip(f"the rehearsal's benchmark needs the MNIST test split in {MNIST_DIR}")
    import shutil

    wheels, data, stand_in = tmp_path / "whl", tmp_path / "data", tmp_path / "bin"
    for folder in (wheels, data / "mnist", data / "book", stand_in):
        folder.mkdir(parents=True)
    probe_wheel(wheels)
    sha256_sums(wheels)
    for name in TEST_FILES:
        shutil.copy(MNIST_DIR / name, data / "mnist" / name)
    shutil.copy(BOOK_WEIGHTS, data / "book" / "sample_weight.pkl")
    sha256_sums(data)
    smi = stand_in / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{STAND_IN_GPU}'\n")
    smi.chmod(0o755)
    (tmp_path / "fail_one.py").write_text(
        "def pytest_runtest_call(item):\n"
        "    raise AssertionError('made to fail by the gpu_check rehearsal test')\n"
    )
    (tmp_path / "hang_one.py").write_text(  # deaf to SIGTERM from the start, then stuck
        "import signal, time\n"
        "def pytest_configure(config):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "def pytest_runtest_call(item):\n"
        "    time.sleep(3600)\n"
    )

    def run(results: str, **extra: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PATH": f"{stand_in}:{os.environ['PATH']}",
            "PYTHON": sys.executable,
            "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}",
            "XPNET_GPU_CHECK_REHEARSAL": "1",
            "XPNET_GPU_WHEELS": str(wheels),
            "XPNET_GPU_DATA": str(data),
            "XPNET_GPU_RESULTS": str(tmp_path / results),
            "XPNET_GPU_CHECK_BENCH_BUDGET": "5",
            # the script's logic is tested here, not its timing: a loaded CI machine may
            # take minutes to import the test modules
            "XPNET_GPU_CHECK_DEADLINE": "3000",
            "XPNET_GPU_CHECK_TEST_SECONDS": "600",
            "XPNET_GPU_CHECK_WORKERS": "1",
            # a case every session can run: no library beyond the test extra's
            "XPNET_GPU_CHECK_PYTEST_ARGS": "-k test_softmax_refuses_an_axis_out_of_range",
            **extra,
        }
        return subprocess.run(
            ["bash", str(GPU_CHECK)], env=env, capture_output=True, text=True, timeout=3000
        )

    run.data = data  # type: ignore[attr-defined]
    run.root = tmp_path  # type: ignore[attr-defined]
    return run


def summary_of(folder: Path) -> dict[str, str]:
    steps = json.loads((folder / "summary.json").read_text())["steps"]
    return {step["step"]: step["status"] for step in steps}


def steps_of(folder: Path) -> dict[str, dict]:
    return {
        step["step"]: step for step in json.loads((folder / "summary.json").read_text())["steps"]
    }


RETURNED = re.compile(r"[A-Za-z0-9._-]+")
"""What the device machine sends back: at most 8 files, named in these characters."""


@pytest.mark.data
def test_gpu_check_rehearsal_passes_and_fails_when_a_test_fails(rehearsal):
    passed = rehearsal("ok")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    results = rehearsal.root / "ok"
    assert "REHEARSAL (array_api_strict's device1 stands in for cupy" in passed.stdout
    statuses = summary_of(results)
    assert statuses["gpu"] == statuses["carried"] == "passed"
    for framework in ("cupy", "torch", "jax"):  # a probe that fails says why, in one line
        assert statuses[framework] in ("passed", "rehearsed")
        assert statuses[f"tests-{framework}"] == "passed"
    assert statuses["benchmark"] == "passed"
    cupy_tests = steps_of(results)["tests-cupy"]
    assert cupy_tests["passed"] >= 1 and cupy_tests["failed"] == 0
    bench = json.loads((results / "bench.json").read_text())
    assert bench["backends"]["numpy"]["correct"] == BOOK_CORRECT
    for info in bench["backends"].values():
        assert info.get("correct", BOOK_CORRECT) == BOOK_CORRECT
    assert "exit status 0: every step passed" in (results / "summary.txt").read_text()
    files = sorted(path.name for path in results.iterdir())
    assert len(files) <= 8 and all(RETURNED.fullmatch(name) for name in files), files
    assert all(path.is_file() for path in results.iterdir())

    failed = rehearsal(
        "bad",
        XPNET_GPU_CHECK_PYTEST_ARGS="-k test_softmax_refuses -p fail_one",
        XPNET_GPU_CHECK_BENCH="0",
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    step = steps_of(rehearsal.root / "bad")["tests-cupy"]
    assert step["status"] == "failed" and step["failed"] >= 1
    assert "made to fail by the gpu_check rehearsal test" in step["first_failures"][0]
    log = (rehearsal.root / "bad" / "tests.log").read_text()
    assert "made to fail by the gpu_check rehearsal test" in log


@pytest.mark.data
def test_a_hung_step_is_killed_and_the_steps_before_it_are_kept(rehearsal):
    # pytest deaf to SIGTERM and stuck in a test, as a process stuck in the driver: timeout -k
    # kills it, the step is recorded as a timeout, and the check goes on to its end and exit
    # status with every step before it kept.
    started = time.monotonic()
    hung = rehearsal(
        "hung",
        XPNET_GPU_CHECK_ONLY="cupy",  # its stand-in, array-api-strict, is in every session
        XPNET_GPU_CHECK_PYTEST_ARGS="-k test_softmax_refuses -p hang_one",
        XPNET_GPU_CHECK_TEST_SECONDS="60",
        XPNET_GPU_CHECK_BENCH="0",
    )
    assert hung.returncode == 1, hung.stdout + hung.stderr
    assert time.monotonic() - started < 1200  # not the hour the stuck test would sleep
    steps = steps_of(rehearsal.root / "hung")
    assert steps["gpu"]["status"] == steps["carried"]["status"] == "passed"
    assert steps["cupy"]["status"] in ("passed", "rehearsed") and "jax" not in steps
    assert steps["tests-cupy"]["status"] == "timeout"
    assert 60 <= steps["tests-cupy"]["seconds"] < 60 + 10 + 30  # TERM ignored, then KILL
    assert steps["benchmark"]["status"] == "skipped"
    assert "exit status 1" in (rehearsal.root / "hung" / "summary.txt").read_text()


@pytest.mark.data
def test_gpu_check_rehearsal_refuses_missing_or_altered_folders(rehearsal):
    missing = rehearsal("missing", XPNET_GPU_DATA=str(rehearsal.root / "nowhere"))
    assert missing.returncode == 2
    assert "nowhere/SHA256SUMS absent" in missing.stdout
    labels = rehearsal.data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged = bytearray(labels.read_bytes())
    damaged[100] ^= 0xFF  # one byte changed, the size kept
    labels.write_bytes(bytes(damaged))
    altered = rehearsal("altered")
    assert altered.returncode == 2
    assert "does not match its SHA256SUMS" in altered.stdout
    assert summary_of(rehearsal.root / "altered") == {"gpu": "passed", "carried": "missing"}
