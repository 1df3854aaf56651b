"""Backend selection for the test suite, after the ``xp`` fixtures of scipy
(``scipy/conftest.py``) and array-api-extra (``tests/main/conftest.py``).

Choose backends with ``pytest --backend torch --backend array_api_strict`` (repeatable) or
``XPNET_TEST_BACKENDS=torch,array_api_strict``; by default every backend xpnet knows is
tried and those that cannot run here are skipped with their reason. Each backend runs on
its default device; array-api-strict also runs on its non-default ``device1``, which
catches any code that creates arrays on the default device or copies through NumPy.

Two more axes, for what review cannot see:

``numpy_readonly``
    NumPy whose arrays, made by the test through ``backend.asarray`` or ``xp``, are read-only
    (after array-api-extra's ``NUMPY_READONLY``): any test that hands one to xpnet fails
    where xpnet writes into an input. It is NumPy to the markers (``skip_backends("numpy")``
    skips it too) and is selected with ``--backend numpy_readonly``; the ``numpy`` nox
    session selects it beside ``numpy``. ``skip_backends("numpy_readonly", reason=...)``
    leaves out a test whose arrays never reach xpnet (a command run in a subprocess).
``dtype``
    A test that also takes a ``dtype`` argument runs once per floating dtype each backend
    computes, as scikit-learn's ``yield_namespace_device_dtype_combinations`` yields them
    (:func:`backend_device_dtype_combinations`): float32 and float64 everywhere, float16
    where the backend's namespace has it (not array-api-strict nor dask: the standard has no
    float16). Reserved for tests whose result depends on the dtype (the compute functions);
    a test that parametrizes ``dtype`` itself next to ``backend`` is refused.

A test that takes the ``backend`` fixture (or ``xp``, ``device``, ``device_option``, which
take it) runs once per selected backend and device. Every other test is backend-independent
and runs once per nox session at most: where ``numpy`` is among the selected backends (the
``numpy`` sessions, and a plain ``pytest`` that selects them all); elsewhere it is
deselected, so each session's counts say what ran there. Markers, each with a ``reason=``:

``skip_backends(*names, reason=...)``
    On a backend-parametrized test: its cases on these backends are skipped, printing the
    reason (a backend that lacks what the test is about, as ``jax.jit`` is JAX's alone).
``only_backends(*names, reason=...)``
    On a backend-parametrized test: its cases on every other backend are skipped.
``needs_session(*names, reason=...)``
    On a backend-independent test (or a whole module): it runs where one of these backends
    is selected, that is in their nox sessions, which install the library it needs (torch
    for PyTorch's files, keras in the torch and jax sessions, dask, distributed and zarr in
    the dask session), in place of the ``numpy`` session. On a backend-parametrized test it
    changes nothing: those run in every session, on its backend.

Lazy backends, as array-api-extra tests its own functions: the public compute functions in
``LAZY_FUNCTIONS`` are tagged with ``array_api_extra.testing.lazy_xp_function``, and in a
test module that lists ``lazy_xp_modules = [xpnet]``, ``xpnet.predict`` and the others run,
on JAX, through ``jax.jit`` and, on dask, where computing anything fails the test (they
must build a graph and leave computing it to the caller).

Where the condition is not a backend's name but what this machine has (a GPU, an installed
library, data files), tests skip at run time and say why.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from array_api_extra.testing import lazy_xp_function, patch_lazy_xp_functions
from realdata import require_book_weights

import xpnet
from xpnet._backend_records import RECORDS
from xpnet.backends import BACKENDS, Backend, get_backend
from xpnet.errors import BackendUnavailableError

DEVICES: dict[str, tuple[str | None, ...]] = {
    **{name: record.test_devices for name, record in RECORDS.items()},
    "numpy_readonly": (None,),
}

TEST_BACKENDS = (*BACKENDS, "numpy_readonly")
"""The backends the suite knows: xpnet's, and NumPy with read-only inputs."""

VARIANT_OF = {"numpy_readonly": "numpy"}
"""Test backends that are another backend under another name, for the markers."""

FLOAT16_FREE = frozenset({"array_api_strict", "dask"})
"""Backends whose namespace has no float16: the array API standard has none, and
array-api-compat's dask namespace follows it."""


def backend_device_dtype_combinations(
    backends: list[str], devices: list[str]
) -> Iterator[tuple[str, str | None, str]]:
    """``(backend, device, dtype)`` for each selected backend, device and floating dtype.

    After scikit-learn's ``yield_namespace_device_dtype_combinations``: float32 and float64
    on every backend and device, float16 where its namespace has it. ``devices``, when
    not empty, keeps only those devices (``default`` for ``None``).
    """
    for name in backends:
        dtypes = ("float32", "float64") + (() if name in FLOAT16_FREE else ("float16",))
        for device in DEVICES[name]:
            if devices and (device or "default") not in devices:
                continue
            for dtype in dtypes:
                yield name, device, dtype


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        choices=TEST_BACKENDS,
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
    unknown = sorted(set(chosen) - set(TEST_BACKENDS))
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {unknown}; choose from {TEST_BACKENDS}")
    return chosen or list(TEST_BACKENDS)


LAZY_FUNCTIONS = (
    xpnet.identity_function,
    xpnet.step_function,
    xpnet.sigmoid,
    xpnet.relu,
    xpnet.tanh,
    xpnet.softmax,
    xpnet.predict,
    xpnet.predict_labels,
)
for function in LAZY_FUNCTIONS:
    lazy_xp_function(function)

MARKERS = {
    "skip_backends": "skip_backends(*names, reason): skip a backend-parametrized test's cases "
    "on these backends",
    "only_backends": "only_backends(*names, reason): skip a backend-parametrized test's cases "
    "on every other backend",
    "needs_session": "needs_session(*names, reason): run a backend-independent test where one "
    "of these backends is selected (their nox sessions have its library), not with numpy",
}
"""The markers this file applies at collection; each needs backend names and a ``reason``."""

INDEPENDENT_HOME = "numpy"
"""The backend whose selection runs the backend-independent tests (the ``numpy`` sessions)."""


def pytest_configure(config: pytest.Config) -> None:
    for description in MARKERS.values():
        config.addinivalue_line("markers", description)


def marker_backends(mark: pytest.Mark, where: str) -> tuple[tuple[str, ...], str]:
    """The backend names and the reason a marker of :data:`MARKERS` gives, checked."""
    names, reason = tuple(mark.args), mark.kwargs.get("reason")
    unknown = sorted(set(names) - set(TEST_BACKENDS))
    if not names or unknown or not isinstance(reason, str) or not reason or len(mark.kwargs) > 1:
        raise pytest.UsageError(
            f"{where}: @pytest.mark.{mark.name} takes backend names from {TEST_BACKENDS} and a "
            f"reason=...: got {mark.args!r}, {mark.kwargs!r}"
        )
    return names, reason


def backend_of_item(item: pytest.Item) -> str | None:
    """The backend a collected test case runs on, or ``None`` for a backend-independent test."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "backend" not in callspec.params:
        return None
    name: str = callspec.params["backend"][0]
    return name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Apply the markers of :data:`MARKERS` and run each backend-independent test once."""
    selected = set(selected_backends(config))
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        name = backend_of_item(item)
        marks = {key: list(item.iter_markers(key)) for key in MARKERS}
        if name is None:
            for key in ("skip_backends", "only_backends"):
                if marks[key]:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{key} is for tests that take the "
                        "backend fixture; a backend-independent test takes needs_session"
                    )
            sessions = [marker_backends(mark, item.nodeid)[0] for mark in marks["needs_session"]]
            runs = all(selected & set(names) for names in sessions) and (
                bool(sessions) or INDEPENDENT_HOME in selected
            )
            (kept if runs else deselected).append(item)
            continue
        for mark in marks["needs_session"]:
            marker_backends(mark, item.nodeid)
        also = VARIANT_OF.get(name, name)  # numpy_readonly is numpy to a marker naming numpy
        for mark in marks["skip_backends"]:
            names, reason = marker_backends(mark, item.nodeid)
            if name in names or also in names:
                item.add_marker(pytest.mark.skip(reason=f"skipped on {name}: {reason}"))
        for mark in marks["only_backends"]:
            names, reason = marker_backends(mark, item.nodeid)
            if name not in names and also not in names:
                only = ", ".join(names)
                item.add_marker(pytest.mark.skip(reason=f"only on {only}, not {name}: {reason}"))
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config: pytest.Config) -> str:
    selected = selected_backends(config)
    here = "run here" if INDEPENDENT_HOME in selected else "left to the numpy session"
    return f"xpnet backends: {', '.join(selected)}; backend-independent tests: {here}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    backends = selected_backends(metafunc.config)
    only = metafunc.config.getoption("--device")
    if "dtype" not in metafunc.fixturenames:
        params = [
            pytest.param((name, device), id=f"{name}-{device or 'default'}")
            for name in backends
            for device in DEVICES[name]
            if not only or (device or "default") in only
        ]
        metafunc.parametrize("backend", params, indirect=True)
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "dtype" in ([*names.replace(",", " ").split()] if isinstance(names, str) else names):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: takes the backend fixture and parametrizes "
                "'dtype' itself; the suite's dtype axis gives each backend's floating dtypes "
                "(name another parameter otherwise)"
            )
    combinations = [
        pytest.param((name, device), dtype, id=f"{name}-{device or 'default'}-{dtype}")
        for name, device, dtype in backend_device_dtype_combinations(backends, only)
    ]
    metafunc.parametrize(("backend", "dtype"), combinations, indirect=["backend"])


class ReadOnlyNumPy:
    """``array_api_compat.numpy`` whose functions return read-only arrays.

    After array-api-extra's ``NumPyReadOnly`` (its ``tests/main/conftest.py``), with one
    change: an array handed back unchanged (``asarray`` of a NumPy array) comes back as a
    read-only view, so the test's own arrays stay writeable. ``array_namespace`` of these
    arrays is still ``array_api_compat.numpy``, so what xpnet creates from them is writeable;
    a write into one of them raises ``ValueError: assignment destination is read-only``.
    """

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._xp, name)
        if not callable(value) or isinstance(value, type):
            return value
        return self._read_only(value)

    @staticmethod
    def _read_only(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return read_only(function(*args, **kwargs))

        return wrapper


def read_only(value: Any) -> Any:
    """``value`` with each NumPy array in it (or in a tuple or list of them) read-only."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, tuple | list):
        items = [read_only(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def make_backend(name: str, device: str | None) -> Backend:
    """The :class:`Backend` for a test backend's name (``numpy_readonly`` included)."""
    if name == "numpy_readonly":
        numpy = get_backend("numpy", device)
        return Backend(numpy.name, ReadOnlyNumPy(numpy.xp), numpy.device)
    return get_backend(name, device)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backend under test, bound to its device; skipped with the reason if unavailable."""
    name, device = request.param
    try:
        chosen = make_backend(name, device)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    with patch_lazy_xp_functions(request, xp=chosen.xp):
        yield chosen


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
    return [] if backend.name in ("numpy", "dask") else ["--device", backend.device_name]


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
