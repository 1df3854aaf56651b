"""Backend selection for the test suite, after scipy's and array-api-extra's ``xp`` fixture.

Choose backends with ``pytest --backend torch --backend array_api_strict`` (repeatable) or
``XPNET_TEST_BACKENDS=torch,array_api_strict``; by default every backend xpnet knows is
tried and those that cannot run here are skipped with their reason. Each backend runs on
its default device; array-api-strict also runs on its non-default ``device1``, which
catches any code that creates arrays on the default device or copies through NumPy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from realdata import require_book_weights

from xpnet._array_api import device_name
from xpnet.backends import BACKENDS, Backend, get_backend
from xpnet.errors import BackendUnavailableError

DEVICES: dict[str, tuple[str | None, ...]] = {
    "numpy": (None,),
    "cupy": ("cuda:0",),
    "torch": ("cpu", "cuda:0"),
    "jax": (None,),
    "dask": (None,),
    "array_api_strict": (None, "device1"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        choices=BACKENDS,
        help="array backend to test (repeatable); default: $XPNET_TEST_BACKENDS or all",
    )
    parser.addoption(
        "--device",
        action="append",
        default=[],
        help="test only these devices of the chosen backends (repeatable), as DEVICES names "
        "them, e.g. --backend torch --device cuda:0; default: every device in DEVICES",
    )


def selected_backends(config: pytest.Config) -> list[str]:
    """The backends chosen on the command line, in the environment, or all of them."""
    chosen = config.getoption("--backend") or [
        name for name in os.environ.get("XPNET_TEST_BACKENDS", "").split(",") if name.strip()
    ]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {unknown}; choose from {BACKENDS}")
    return chosen or list(BACKENDS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    params = []
    only = metafunc.config.getoption("--device")
    for name in selected_backends(metafunc.config):
        for device in DEVICES[name]:
            if only and (device or "default") not in only:
                continue
            params.append(pytest.param((name, device), id=f"{name}-{device or 'default'}"))
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test, bound to its device; skipped with the reason if unavailable."""
    name, device = request.param
    try:
        return get_backend(name, device)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def xp(backend: Backend):  # type: ignore[no-untyped-def]
    """The array namespace under test."""
    return backend.xp


@pytest.fixture
def device(backend: Backend) -> object:
    """The device under test (``device1`` for one of the array-api-strict cases)."""
    return backend.device


@pytest.fixture
def device_option(backend: Backend) -> list[str]:
    """The command-line options that pick the device under test (none for NumPy and dask)."""
    return [] if backend.name in ("numpy", "dask") else ["--device", device_name(backend.device)]


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Keep every test's parsed-data and download cache out of the user's real cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XPNET_CACHE_DIR", str(tmp_path_factory.mktemp("xpnet-cache")))
    yield
    patch.undo()


@pytest.fixture
def book_weights() -> Path:
    """The textbook's ``sample_weight.pkl``; the test skips, saying why, where it is absent."""
    return require_book_weights()
