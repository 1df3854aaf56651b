"""One nox session per backend, each installing only what it needs, plus lint, typecheck and build.

``nox`` runs every session (``docs`` builds the documentation); the cupy session skips
itself where no CUDA device exists.
Pass pytest arguments after ``--``: ``nox -s torch -- -k softmax``. The cupy session
reuses an installed CuPy (any CUDA version); where there is none it installs the ``cuda12``
extra, or ``cuda13`` with ``nox -s cupy -- cuda13``. ``XPNET_WHEELS=DIR`` installs offline
from a folder of wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False

# The CPU wheel this project's machines carry; an unpinned torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"


def run_suite(session: nox.Session, backend: str, *extra_args: str) -> None:
    """Run the whole test suite with ``backend`` selected (more with ``--backend`` in
    ``extra_args``)."""
    session.run("pytest", "--backend", backend, *extra_args, *session.posargs)


# The importers' extras: each session that can, tests bringing models in on its backend.
IMPORTERS = "sklearn,onnx,safetensors"
# For the tests only: the writers of the ONNX graphs the importer tests read (skl2onnx for
# scikit-learn models, in every session with the importers; onnxscript, which
# torch.onnx.export needs, where torch is).
SKLEARN_GRAPHS = "skl2onnx>=1.17"
TORCH_GRAPHS = "onnxscript>=0.2"


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy with ONNX Runtime (the ``fast`` extra) and the importers, in random test order
    (pytest-randomly prints the seed that reproduces an order). The tests' ``numpy_readonly``
    backend runs here too: NumPy with read-only inputs, which fails any write into one."""
    session.install("-e", f".[test,fast,{IMPORTERS}]", SKLEARN_GRAPHS, "pytest-randomly")
    run_suite(session, "numpy", "--backend", "numpy_readonly")


WIDEST_SIMD = (
    "from numpy._core._multiarray_umath import __cpu_dispatch__ as d, __cpu_features__ as f; "
    "found = [t for t in d if f.get(t)]; print(' '.join(found[1:] if len(found) > 1 else found))"
)
"""Prints the SIMD targets to switch off: every one NumPy dispatches to here but the narrowest
(with only one, that one), so NumPy runs the kernels of a CPU one level down."""


@nox.session
def numpy_narrower_simd(session: nox.Session) -> None:
    """NumPy's generic path (no ``fast`` extra) with its widest SIMD kernels switched off
    (``NPY_DISABLE_CPU_FEATURES``): a second CPU profile for every test that compares
    results."""
    session.install("-e", ".[test]")
    widest = str(session.run("python", "-c", WIDEST_SIMD, silent=True) or "").strip()
    # Added to what the caller switched off already, which stays off.
    disabled = " ".join(filter(None, [os.environ.get("NPY_DISABLE_CPU_FEATURES", ""), widest]))
    session.log(f"NPY_DISABLE_CPU_FEATURES={disabled!r}")
    session.env["NPY_DISABLE_CPU_FEATURES"] = disabled
    run_suite(session, "numpy", "-p", "no:randomly")


@nox.session
def array_api_strict(session: nox.Session) -> None:
    session.install("-e", f".[test,{IMPORTERS}]", SKLEARN_GRAPHS)
    run_suite(session, "array_api_strict")


@nox.session
def torch(session: nox.Session) -> None:
    session.install("-e", f".[test,{IMPORTERS},keras]", TORCH, SKLEARN_GRAPHS, TORCH_GRAPHS)
    session.env["KERAS_BACKEND"] = "torch"
    run_suite(session, "torch")


@nox.session
def dask(session: nox.Session) -> None:
    # fast: dask's NumPy chunks run in ONNX Runtime, each worker process its own session.
    session.install("-e", f".[test,dask,fast,{IMPORTERS}]", SKLEARN_GRAPHS)
    run_suite(session, "dask")


@nox.session
def jax(session: nox.Session) -> None:
    session.install("-e", f".[test,jax,{IMPORTERS},keras]", SKLEARN_GRAPHS)
    session.env["KERAS_BACKEND"] = "jax"
    session.env["JAX_ENABLE_X64"] = "1"  # so float64 is tested too, as on the other backends
    run_suite(session, "jax")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The benchmarks' own tests (``benchmarks/``, outside the package), with every peer they
    time installed: ONNX Runtime, PyTorch, JAX and dask."""
    session.install("-e", ".[test,fast,dask,jax]", TORCH)
    session.run("pytest", "benchmarks", *session.posargs)


def cuda_devices() -> list[str]:
    """The NVIDIA GPUs that ``nvidia-smi -L`` lists (none where it is missing)."""
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


FIND_CUPY = (
    "import importlib.metadata as m; "
    "print(' '.join(sorted({d.metadata['Name'] for d in m.distributions() "
    "if (d.metadata['Name'] or '').lower().startswith('cupy')})))"
)
"""Prints the installed CuPy distributions (``cupy``, ``cupy-cuda12x``, ``cupy-cuda13x``...)."""


def cupy_plan(
    installed: list[str], wheels: str | None, posargs: list[str]
) -> tuple[list[str], list[str]]:
    """``(pip install arguments, pytest arguments)`` for the cupy session.

    An installed CuPy of any CUDA major version is reused, and no second one installed (two
    CuPy packages in one environment break both); where none is, the ``cuda12`` extra, or
    ``cuda13`` as the first session argument. ``wheels`` (``XPNET_WHEELS``) is a folder of
    wheels to install from, offline (``--no-index --find-links``).
    """
    extra, pytest_args = "cuda12", list(posargs)
    if pytest_args and pytest_args[0] in ("cuda12", "cuda13"):
        extra, *pytest_args = pytest_args
    if len(installed) > 1:
        raise ValueError(
            f"two CuPy packages are installed ({', '.join(installed)}): uninstall all but one"
        )
    extras = "test" if installed else f"test,{extra}"
    offline = ["--no-index", "--find-links", wheels] if wheels else []
    return [*offline, "-e", f".[{extras}]"], pytest_args


@nox.session(venv_params=["--system-site-packages"])
def cupy(session: nox.Session) -> None:
    """CuPy on the first GPU. A CuPy already installed (as on offline GPU hosts) is reused,
    whatever its CUDA version; ``XPNET_WHEELS=/path`` installs offline from that folder of
    wheels (``scripts/gpu_prepare.sh`` makes one: ``.whl``). Skips where no GPU is."""
    if not cuda_devices():
        session.skip("no CUDA device here (nvidia-smi lists no GPU): CuPy needs an NVIDIA GPU")
    listed = session.run("python", "-c", FIND_CUPY, silent=True) or ""
    try:
        install, pytest_args = cupy_plan(
            str(listed).split(), os.environ.get("XPNET_WHEELS"), list(session.posargs)
        )
    except ValueError as exc:
        session.error(str(exc))
    session.install(*install)
    # Where JAX is installed too, it stays on the CPU and takes no GPU memory up front.
    session.env.update({"JAX_PLATFORMS": "cpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    session.run("pytest", "--backend", "cupy", *pytest_args)


HOST_LIKE = (
    "numpy",
    "pytest",
    "pytest-xdist",
    "cupy-cuda13x",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "scikit-learn",
    "scipy",
    "safetensors",
    "matplotlib",
    "hypothesis",
    "jax",
    "requests",
    "tqdm",
    "pyyaml",
    "click",
    "toolz",
    "cloudpickle",
    "fsspec",
)
"""What the lent GPU machines' image has (the device tool's KINDS.md), less PyTorch: no CUDA
build of it fits on this project's machines, and the CPU wheel is not what the image has."""

GPU_WINDOW_SECONDS = 360
"""What the GPU check may take on a lent machine, its offline install included."""


@nox.session(python="3.12", default=False)
def gpu_rehearsal(session: nox.Session) -> None:
    """``scripts/gpu_check.sh`` with its default settings in a host-like Python 3.12 with
    CuPy installed and no GPU (a stand-in ``nvidia-smi``), timed: it must pass within the
    GPU window's 6 minutes. Needs ``.whl`` and ``.gpu-data`` (``scripts/gpu_prepare.sh``);
    the results go to ``gpu-results/rehearsal``. Not in a plain ``nox``: it needs what
    ``gpu_prepare.sh`` downloads, and it rehearses the GPU machine's window, not this one's
    code (the numpy session's tests/test_gpu_check.py runs the script's steps each time);
    ``nox -s gpu_rehearsal`` runs it."""
    import time

    session.install(*HOST_LIKE)
    stand_in = Path(session.create_tmp()) / "bin"
    stand_in.mkdir(exist_ok=True)
    smi = stand_in / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\n[ "$1" = -L ] && echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-stand-in)"\n'
    )
    smi.chmod(0o755)
    python = str(Path(session.bin) / "python")
    env = {
        "PATH": f"{stand_in}:{os.environ['PATH']}",
        "PYTHON": python,
        "XPNET_GPU_CHECK_REHEARSAL": "1",
        "XPNET_GPU_RESULTS": "gpu-results/rehearsal",
    }
    started = time.monotonic()
    session.run("bash", "scripts/gpu_check.sh", env=env, external=True)
    seconds = time.monotonic() - started
    session.log(f"gpu_check.sh rehearsal: {seconds:.0f} s of the window's {GPU_WINDOW_SECONDS}")
    if seconds > GPU_WINDOW_SECONDS:
        session.error(f"the rehearsal took {seconds:.0f} s, over {GPU_WINDOW_SECONDS}")


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel as a package index gets them, and use them as a user would.

    ``python -m build`` makes the sdist, then the wheel from it (so the sdist must hold
    everything the build needs); ``twine check --strict`` checks both (metadata; twine
    renders no Markdown, so readme_renderer's Markdown renderer is installed here for the
    tests, which render the installed wheel's description as PyPI does). The wheel goes into
    this session's fresh venv with the ``test`` extra, and from a folder outside the source
    tree (so ``import xpnet`` finds the installed package, which the session checks):
    ``xpnet --version``, ``python -m xpnet --version``, and ``xpnet infer`` on local files:
    ``--data-dir $XPNET_DATA_DIR`` and ``--weights $XPNET_BOOK_WEIGHTS`` where set (CI sets
    both), the bundled weights and a download of the test split where not. Last, the test
    suite unpacked from the sdist runs against the installed wheel on the NumPy backend only:
    the per-backend sessions run the same tests on every backend from the source tree, and on
    two cores the whole matrix again here would double CI's time. ``nox -s build -- -k infer``
    passes arguments to it.
    """
    session.install("build", "twine", "readme_renderer[md]")
    work = Path(session.create_tmp()).resolve()
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    (sdist,) = dist.glob("xpnet-*.tar.gz")
    (wheel,) = dist.glob("xpnet-*.whl")
    session.run("twine", "check", "--strict", str(sdist), str(wheel))

    # A reused environment holds the previous build, whose version pip takes as this one's.
    session.run("python", "-m", "pip", "uninstall", "--yes", "xpnet", silent=True)
    session.install(f"{wheel}[test]")
    unpacked = work / "sdist"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()

    outside = work / "outside"
    outside.mkdir(exist_ok=True)
    session.chdir(outside)  # neither the repository nor the sdist is on the path here
    location = session.run("python", "-c", "import xpnet; print(xpnet.__file__)", silent=True)
    if not str(location).strip().startswith(str(Path(session.virtualenv.location).resolve())):
        session.error(f"xpnet was imported from {location!r}, not from the installed wheel")
    session.run("xpnet", "--version")
    session.run("python", "-m", "xpnet", "--version")
    infer = ["xpnet", "infer", "--backend", "numpy"]
    if os.environ.get("XPNET_DATA_DIR"):
        infer += ["--data-dir", os.environ["XPNET_DATA_DIR"], "--no-download"]
    if os.environ.get("XPNET_BOOK_WEIGHTS"):
        infer += ["--weights", os.environ["XPNET_BOOK_WEIGHTS"]]
    session.run(*infer)

    session.chdir(source)
    session.run("pytest", "--backend", "numpy", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: a new release may format or lint differently
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,plot]", "mypy")
    session.run("mypy")


DOCS_HTML = "docs/_build/html"


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, from ``docs/`` and the docstrings, and the docstrings' examples.

    Sphinx builds the HTML (``docs/_build/html``) with myst-parser for the Markdown pages,
    autodoc and numpydoc for the API; ``-n`` reports every reference to something the site
    does not document and ``-W`` turns each warning into a failure. Then pytest runs every
    ``>>>`` example in the package's docstrings as a doctest. Most examples loop over NumPy
    and array-api-strict, so both backends run in this one pass; those that need data files
    or a library this session lacks (scikit-learn, PyTorch, Keras, dask, zarr) are marked to
    skip.
    """
    session.install("-e", ".[test,fast,onnx]", "sphinx", "myst-parser", "numpydoc")
    # -E: every page is read again, so a warning in an unchanged page is not hidden by the cache.
    session.run("sphinx-build", "-W", "-n", "--keep-going", "-E", "-b", "html", "docs", DOCS_HTML)
    session.run("pytest", "--doctest-modules", "xpnet", *session.posargs)
