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
