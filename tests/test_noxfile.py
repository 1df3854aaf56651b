"""The cupy nox session's plan: reuse any installed CuPy, install offline from wheels, skip
without a GPU. nox itself is not run (it would build environments); its decisions are."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def noxfile():
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("xpnet_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("installed", [["cupy-cuda13x"], ["cupy-cuda12x"], ["cupy"]])
def test_an_installed_cupy_is_reused(noxfile, installed):
    install, pytest_args = noxfile.cupy_plan(installed, None, ["-k", "softmax"])
    assert install == ["-e", ".[test]"]  # no cuda extra: no second CuPy
    assert pytest_args == ["-k", "softmax"]


def test_without_cupy_the_extra_is_installed(noxfile):
    assert noxfile.cupy_plan([], None, []) == (["-e", ".[test,cuda12]"], [])
    assert noxfile.cupy_plan([], None, ["cuda13", "-x"]) == (["-e", ".[test,cuda13]"], ["-x"])
    assert noxfile.cupy_plan(["cupy-cuda13x"], None, ["cuda12"]) == (["-e", ".[test]"], [])


def test_wheels_folder_installs_offline(noxfile, tmp_path):
    install, _ = noxfile.cupy_plan(["cupy-cuda13x"], str(tmp_path), [])
    assert install == ["--no-index", "--find-links", str(tmp_path), "-e", ".[test]"]


def test_two_cupys_are_refused(noxfile):
    with pytest.raises(ValueError, match="two CuPy packages are installed"):
        noxfile.cupy_plan(["cupy-cuda12x", "cupy-cuda13x"], None, [])


def test_the_query_finds_cupy_distributions(noxfile, tmp_path):
    # A fake installed distribution, seen through importlib.metadata as pip's would be.
    info = tmp_path / "cupy_cuda13x-14.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cupy-cuda13x\nVersion: 14.2.0\n")
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", noxfile.FIND_CUPY], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.split() == ["cupy-cuda13x"]


def test_gpus_are_listed_by_nvidia_smi(noxfile, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert noxfile.cuda_devices() == []  # no nvidia-smi: the session skips
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert noxfile.cuda_devices() == ["GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000)"]


class RecordingSession:
    """What a nox session function asks of nox, recorded: installs, runs, environment."""

    def __init__(self) -> None:
        self.installed: list[str] = []
        self.runs: list[tuple[str, ...]] = []
        self.env: dict[str, str] = {}
        self.posargs: list[str] = []

    def install(self, *args: str) -> None:
        self.installed.extend(args)

    def run(self, *args: str, silent: bool = False) -> str:
        self.runs.append(args)
        return ""  # no SIMD targets to switch off, no CuPy installed

    def log(self, *args: object) -> None:
        pass

    def skip(self, *args: object) -> None:
        raise AssertionError(f"the session skipped itself: {args}")

    error = skip


PER_BACKEND = ("numpy", "numpy_narrower_simd", "array_api_strict", "torch", "dask", "jax", "cupy")


@pytest.fixture(scope="module")
def sessions(noxfile) -> dict[str, RecordingSession]:
    """Each per-backend session run against a recording stand-in for nox (a GPU is listed)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(noxfile, "cuda_devices", lambda: ["GPU 0: a stand-in"])
    patch.delenv("XPNET_WHEELS", raising=False)
    recorded = {}
    try:
        for name in PER_BACKEND:
            recorded[name] = RecordingSession()
            getattr(noxfile, name)(recorded[name])
    finally:
        patch.undo()
    return recorded


def backends_of_session(session: RecordingSession) -> tuple[str, ...]:
    """The backends a session's ``pytest`` run selects, in order."""
    (suite,) = [args for args in session.runs if args[0] == "pytest"]
    return tuple(suite[at + 1] for at, arg in enumerate(suite) if arg == "--backend")


def backend_of_session(session: RecordingSession) -> str:
    return backends_of_session(session)[0]


def test_the_coverage_script_checks_the_backends_the_sessions_select(sessions):
    """tests/session_coverage.py proves every test runs in some session; it must collect
    with the backends the sessions select, all of them, as each session selects them."""
    spec = importlib.util.spec_from_file_location("coverage", ROOT / "tests/session_coverage.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in script.SESSION_BACKENDS:
        assert backends_of_session(sessions[name]) == script.SESSION_BACKENDS[name], name
    # The sessions left out select a part of what one of these does.
    for name in set(sessions) - set(script.SESSION_BACKENDS):
        chosen = set(backends_of_session(sessions[name]))
        assert any(chosen <= set(all_of) for all_of in script.SESSION_BACKENDS.values()), name


def test_the_read_only_numpy_backend_runs_in_the_numpy_session_only(sessions):
    """Read-only inputs change nothing but writes into them: one session is enough."""
    assert backends_of_session(sessions["numpy"]) == ("numpy", "numpy_readonly")
    for name in set(sessions) - {"numpy"}:
        assert "numpy_readonly" not in backends_of_session(sessions[name]), name


def test_the_sessions_tests_are_sent_to_have_their_libraries(sessions):
    """conftest's needs_session markers send tests needing torch and keras to the torch
    session, keras also to the jax one, dask, distributed and zarr to the dask one; the
    numpy session runs the rest (ONNX Runtime and the importers' libraries among them)."""
    assert backend_of_session(sessions["numpy"]) == "numpy"
    installs = {name: " ".join(session.installed) for name, session in sessions.items()}
    assert "torch==" in installs["torch"] and "keras" in installs["torch"]
    assert sessions["torch"].env["KERAS_BACKEND"] == "torch"
    assert "jax" in installs["jax"] and "keras" in installs["jax"]
    assert sessions["jax"].env["KERAS_BACKEND"] == "jax"
    assert ",dask," in installs["dask"]
    assert all(part in installs["numpy"] for part in ("fast", "sklearn", "onnx", "safetensors"))
    # The graphs the ONNX importer tests read are written where those tests run.
    for name in ("numpy", "array_api_strict", "torch", "dask", "jax"):
        assert "skl2onnx" in installs[name], name
    assert "onnxscript" in installs["torch"]
