"""One nox session per backend, each installing only what it needs, plus lint and typecheck.

``nox`` runs every session; the cupy session skips itself where no CUDA device exists.
Pass pytest arguments after ``--``: ``nox -s torch -- -k softmax``. The cupy session
installs the ``cuda12`` extra; ``nox -s cupy -- cuda13`` picks ``cuda13`` instead.
"""

from __future__ import annotations

import shutil
import subprocess

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False

# The CPU wheel this project's machines carry; an unpinned torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"


def run_suite(session: nox.Session, backend: str, *extra_args: str) -> None:
    """Run the whole test suite with ``backend`` selected."""
    session.run("pytest", "--backend", backend, *extra_args, *session.posargs)


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy with ONNX Runtime (extra ``fast``), so its engine and the exporter are tested
    here (the other sessions run NumPy's generic path)."""
    session.install("-e", ".[test,fast]")
    run_suite(session, "numpy")


@nox.session
def array_api_strict(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    run_suite(session, "array_api_strict")


@nox.session
def torch(session: nox.Session) -> None:
    session.install("-e", ".[test]", TORCH)
    run_suite(session, "torch")


@nox.session
def dask(session: nox.Session) -> None:
    session.install("-e", ".[test,dask]")
    run_suite(session, "dask")


@nox.session
def jax(session: nox.Session) -> None:
    session.install("-e", ".[test,jax]")
    session.env["JAX_ENABLE_X64"] = "1"  # so float64 is tested too, as on the other backends
    run_suite(session, "jax")


def cuda_devices() -> list[str]:
    """The NVIDIA GPUs that ``nvidia-smi -L`` lists (none where it is missing)."""
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


@nox.session(venv_params=["--system-site-packages"])
def cupy(session: nox.Session) -> None:
    """CuPy on the first GPU; a preinstalled CuPy (offline GPU hosts) is reused."""
    if not cuda_devices():
        session.skip("no CUDA device here (nvidia-smi lists no GPU): CuPy needs an NVIDIA GPU")
    extra, *pytest_args = session.posargs or ["cuda12"]
    if extra not in ("cuda12", "cuda13"):
        extra, pytest_args = "cuda12", list(session.posargs)
    session.install("-e", f".[test,{extra}]")
    session.run("pytest", "--backend", "cupy", *pytest_args)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: a new release may format or lint differently
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,plot]", "mypy")
    session.run("mypy")
