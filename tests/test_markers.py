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

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent

MODULE = """
import numpy as np
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


AXES = """
import numpy as np
import pytest

@pytest.fixture
def backend(request):  # in place of the suite's: no backend's library is needed here
    return request.param

def test_each_dtype(backend, dtype):
    pass

@pytest.mark.skip_backends("numpy", reason="numpy lacks it")
def test_not_on_numpy(backend):
    pass

@pytest.mark.skip_backends("numpy_readonly", reason="its arrays are its own")
def test_not_read_only(backend):
    pass

@pytest.mark.only_backends("numpy", reason="numpy's alone")
def test_only_numpy(backend):
    pass
"""


def test_the_dtype_axis_gives_each_backend_its_floating_dtypes(tmp_path):
    chosen = ("--backend", "numpy", "--backend", "array_api_strict", "--backend", "dask")
    done = run(tmp_path, AXES, *chosen, "-k", "each_dtype")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {name for name, outcome in outcomes(done.stdout).items() if outcome == "PASSED"}
    assert passed == {
        *(f"test_each_dtype[numpy-default-{d}]" for d in ("float32", "float64", "float16")),
        *(
            f"test_each_dtype[{c}-{d}]"
            for c in ("array_api_strict-default", "array_api_strict-device1", "dask-default")
            for d in ("float32", "float64")
        ),
    }


def test_the_read_only_numpy_backend_is_numpy_to_the_markers(tmp_path):
    chosen = ("--backend", "numpy", "--backend", "numpy_readonly")
    done = run(tmp_path, AXES, *chosen, "-k", "not each_dtype")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {name for name, outcome in outcomes(done.stdout).items() if outcome == "PASSED"}
    assert passed == {
        "test_not_read_only[numpy-default]",
        "test_only_numpy[numpy-default]",
        "test_only_numpy[numpy_readonly-default]",
    }
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert sorted(line.split(": ", 1)[1] for line in skips) == [
        "skipped on numpy: numpy lacks it",
        "skipped on numpy_readonly: its arrays are its own",
        "skipped on numpy_readonly: numpy lacks it",
    ]


def test_a_backend_test_that_parametrizes_dtype_itself_stops_the_run(tmp_path):
    module = AXES + (
        '\n@pytest.mark.parametrize("dtype", ["float32"])\n'
        "def test_own_dtype(backend, dtype):\n    pass\n"
    )
    done = run(tmp_path, module, "--backend", "numpy")
    assert done.returncode == 2, done.stdout + done.stderr  # an error in collection
    assert "parametrizes 'dtype' itself" in done.stdout + done.stderr


def test_the_read_only_backend_refuses_writes_into_what_it_made():
    from conftest import make_backend

    host = np.arange(4.0)
    backend = make_backend("numpy_readonly", None)
    for x in (backend.asarray(host), backend.xp.asarray(host), backend.xp.zeros(3)):
        with pytest.raises(ValueError, match="read-only"):
            x[0] = 1.0
    counted = backend.xp.unique_counts(backend.asarray(np.array([1, 1, 2])))  # a named tuple
    assert counted.counts.tolist() == [2, 1]
    with pytest.raises(ValueError, match="read-only"):
        counted.counts[0] = 5
    host[0] = 7.0  # the test's own array stays writeable, and the view shows the change
    assert backend.asarray(host)[0] == 7.0
    assert backend.xp.float32 is np.float32 and backend.name == "numpy"
