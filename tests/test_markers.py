"""The suite's own markers (``conftest.py``): which cases each session runs, skips or deselects.

A small test module runs under a copy of this suite's ``conftest.py`` in a fresh pytest
process, so what is checked is what a nox session's ``pytest --backend NAME`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

MODULE = """
import pytest

@pytest.fixture
def backend(request):  # in place of the suite's: no backend's library is needed here
    return request.param

def test_plain():
    pass

@pytest.mark.needs_session("torch", reason="needs torch's library")
def test_for_torch():
    pass

@pytest.mark.needs_session("torch", "jax", reason="needs keras")
def test_for_keras():
    pass

def test_on_each(backend):
    pass

@pytest.mark.skip_backends("numpy", reason="numpy lacks it")
def test_not_on_numpy(backend):
    pass

@pytest.mark.only_backends("jax", reason="jit is JAX's")
def test_only_on_jax(backend):
    pass

@pytest.mark.parametrize("kind", ["a", pytest.param("b", marks=pytest.mark.needs_session(
    "dask", reason="b needs zarr"))])
def test_kinds(kind):
    pass
"""
ONE_DEVICE = ("--device", "default", "--device", "cpu")
"""Each backend's first device only (torch's ``cuda:0`` is not every machine's)."""


def run(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest -rA`` on ``module`` beside a copy of the suite's conftest, in a new process."""
    for name in ("conftest.py", "realdata.py"):
        shutil.copy(HERE / name, tmp_path / name)
    (tmp_path / "test_module.py").write_text(module)
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
    command += ["-rA", "--rootdir", str(tmp_path), "-c", os.devnull, "--strict-markers", *args]
    return subprocess.run(
        [*command, str(tmp_path / "test_module.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=300,
    )


def outcomes(output: str) -> dict[str, str]:
    """``{test id: "PASSED" or the skip's reason}`` from ``-rA``'s short summary."""
    found = {}
    for line in output.splitlines():
        if line.startswith("PASSED ") and "::" in line:
            found[line.split("::", 1)[1]] = "PASSED"
        elif line.startswith("SKIPPED [1] ") and ": " in line:
            _, where, reason = line.split(": ", 2)[0], *line.split(": ", 2)[1:]
            found[where] = reason
    return found


def test_the_numpy_session_runs_the_backend_independent_tests(tmp_path):
    done = run(tmp_path, MODULE, "--backend", "numpy")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {name for name, outcome in outcomes(done.stdout).items() if outcome == "PASSED"}
    assert passed == {"test_plain", "test_on_each[numpy-default]", "test_kinds[a]"}
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2
    assert any(line.endswith(": skipped on numpy: numpy lacks it") for line in skips)
    assert any(line.endswith(": only on jax, not numpy: jit is JAX's") for line in skips)
    assert "3 passed, 2 skipped, 3 deselected" in done.stdout.splitlines()[-1]
    assert "backend-independent tests: run here" in done.stdout


def test_another_session_runs_its_backend_and_what_needs_its_library(tmp_path):
    done = run(tmp_path, MODULE, "--backend", "torch", *ONE_DEVICE)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {name for name, outcome in outcomes(done.stdout).items() if outcome == "PASSED"}
    assert passed == {
        "test_for_torch",
        "test_for_keras",
        "test_on_each[torch-cpu]",
        "test_not_on_numpy[torch-cpu]",
    }
    assert "only on jax, not torch: jit is JAX's" in done.stdout
    assert "4 passed, 1 skipped, 3 deselected" in done.stdout.splitlines()[-1]
    assert "backend-independent tests: left to the numpy session" in done.stdout


def test_a_parameter_can_need_a_session(tmp_path):
    done = run(tmp_path, MODULE, "--backend", "dask", "-k", "kinds")
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcomes(done.stdout) == {"test_kinds[b]": "PASSED"}
    assert "1 passed, 7 deselected" in done.stdout.splitlines()[-1]


def test_selecting_several_backends_runs_each_test_once(tmp_path):
    chosen = ("--backend", "numpy", "--backend", "torch", "--backend", "jax")
    done = run(tmp_path, MODULE, *chosen, *ONE_DEVICE)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {name for name, outcome in outcomes(done.stdout).items() if outcome == "PASSED"}
    assert passed == {
        "test_plain",
        "test_for_torch",
        "test_for_keras",
        "test_kinds[a]",
        *(f"test_on_each[{case}]" for case in ("numpy-default", "torch-cpu", "jax-default")),
        "test_not_on_numpy[torch-cpu]",
        "test_not_on_numpy[jax-default]",
        "test_only_on_jax[jax-default]",
    }
    assert "10 passed, 3 skipped, 1 deselected" in done.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        ('@pytest.mark.skip_backends("numpy", reason="r")', "is for tests that take the backend"),
        ('@pytest.mark.only_backends("numpy", reason="r")', "is for tests that take the backend"),
        ('@pytest.mark.needs_session("torch")', "takes backend names from"),
        ('@pytest.mark.needs_session(reason="r")', "takes backend names from"),
        ('@pytest.mark.needs_session("pytorch", reason="r")', "takes backend names from"),
    ],
)
def test_a_marker_used_wrongly_stops_the_run(tmp_path, mark, message):
    done = run(
        tmp_path, f"import pytest\n\n{mark}\ndef test_x():\n    pass\n", "--backend", "numpy"
    )
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert message in done.stdout + done.stderr
