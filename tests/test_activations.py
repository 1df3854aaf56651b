"""Activations and softmax: values against float64 NumPy, dtype and device kept, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference
from array_api_extra.testing import assert_close, assert_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xpnet
from xpnet.backends import to_host

lazy_xp_modules = [xpnet]

FUNCTIONS = {
    "identity": xpnet.identity_function,
    "step": xpnet.step_function,
    "sigmoid": xpnet.sigmoid,
    "relu": xpnet.relu,
    "softmax": xpnet.softmax,
}
RTOL = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-13}
ATOL = {"float16": 2.0**-14, "float32": 1e-30, "float64": 1e-30}
"""float16's smallest normal number: below it XLA flushes results to zero, and elsewhere the
spacing, 2**-24, is all the precision there is (float32's values here stay normal)."""
property_settings = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def sample(shape: tuple[int, ...], scale: float = 5.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 5)])
def test_values_dtype_and_device(backend, name, dtype, shape):
    if name == "softmax" and not shape:
        pytest.skip("softmax is defined along an axis; 0-d input is tested to raise")
    host = sample(shape).astype(dtype)
    x = backend.asarray(host)
    result = FUNCTIONS[name](x)
    expected = reference.ACTIVATIONS[name](host.astype(np.float64)).astype(dtype)
    # assert_close checks namespace, shape, dtype and device as well as values.
    assert_close(result, backend.asarray(expected), rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_input_left_untouched(backend, name):
    host = sample((4, 6))
    x = backend.asarray(host)
    FUNCTIONS[name](x)
    np.testing.assert_array_equal(to_host(x), host)


def test_softmax_textbook_example_is_overflow_safe(backend):
    x = backend.asarray(np.array([1010, 1000, 990]), dtype="float64")
    expected = np.array([9.99954600e-01, 4.53978686e-05, 2.06106005e-09])
    assert_close(xpnet.softmax(x), backend.asarray(expected), rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_any_axis_sums_to_one(backend, axis, dtype):
    host = sample((3, 4, 5), scale=30.0).astype(dtype)
    result = xpnet.softmax(backend.asarray(host), axis=axis)
    assert_close(
        result,
        backend.asarray(reference.softmax(host.astype(np.float64), axis=axis), dtype=dtype),
        rtol=max(1e-5, 5 * RTOL[dtype]),
        atol=ATOL[dtype],
    )
    sums = to_host(backend.xp.sum(result, axis=axis))
    np.testing.assert_allclose(sums, 1.0, rtol=max(1e-6, 5 * RTOL[dtype]))


def test_softmax_special_values(backend, dtype):
    inf, nan = np.inf, np.nan
    host = np.array(
        [
            [inf, 1.0, inf, -inf],
            [-inf, -inf, -inf, -inf],
            [nan, 1.0, 2.0, 3.0],
            [-inf, 0.0, 0.0, 1.0],
        ]
    )
    expected = np.array(
        [[0.5, 0.0, 0.5, 0.0], [0.25] * 4, [nan] * 4, [0.0, *reference.softmax([0.0, 0.0, 1.0])]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value" warnings from inf - inf
        result = xpnet.softmax(backend.asarray(host, dtype=dtype))
    assert_close(result, backend.asarray(expected, dtype=dtype), rtol=RTOL[dtype], atol=1e-30)


def test_sigmoid_stable_for_large_magnitudes(backend, dtype):
    host = np.array([-1e30, -1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0, np.inf, -np.inf])
    with np.errstate(over="ignore"):  # -1e30 is -inf in float16
        x = backend.asarray(host, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would warn
        result = xpnet.sigmoid(x)
    values = to_host(result)
    assert values.dtype == np.dtype(dtype)
    assert np.all((values >= 0) & (values <= 1))
    expected = reference.sigmoid(host).astype(dtype)
    # XLA and GPUs may flush subnormal results (sigmoid(-100) in float32) to zero.
    np.testing.assert_allclose(values, expected, rtol=RTOL[dtype], atol=np.finfo(dtype).tiny)


@pytest.mark.skip_backends(
    "numpy", "dask", "array_api_strict", reason="no sigmoid of its own: the standard formula runs"
)
def test_native_sigmoid_agrees_with_the_standard_formula(backend, xp, dtype):
    from xpnet._backend_records import native_sigmoid
    from xpnet.activations import logistic_formula

    assert native_sigmoid(xp) is not None, backend.name
    special = [-1e30, -1000.0, -100.0, 100.0, 1e30, np.inf, -np.inf, np.nan]
    host = np.concatenate([np.linspace(-40.0, 40.0, 801), special])
    x = backend.asarray(host, dtype=dtype)
    fast = xpnet.sigmoid(x)
    assert fast.dtype == x.dtype and fast.device == x.device
    expected = logistic_formula(x, xp)
    # Some kernels flush subnormal outputs (below ~1e-38 in float32) to zero.
    np.testing.assert_allclose(
        to_host(fast), to_host(expected), rtol=RTOL[dtype], atol=np.finfo(dtype).tiny
    )


def test_nan_propagates_except_through_step(backend):
    x = backend.asarray(np.array([np.nan, 1.0]), dtype="float32")
    for name in ("identity", "sigmoid", "relu"):
        assert np.isnan(to_host(FUNCTIONS[name](x))[0]), name
    np.testing.assert_array_equal(to_host(xpnet.step_function(x)), [0.0, 1.0])


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("host", [np.array([-2, 0, 3]), np.array([True, False, True])])
def test_integer_and_bool_input_become_default_float(backend, name, host):
    xp = backend.xp
    x = backend.asarray(host)
    result = FUNCTIONS[name](x)
    default = xp.__array_namespace_info__().default_dtypes(device=backend.device)["real floating"]
    assert result.dtype == default
    expected = reference.ACTIVATIONS[name](host.astype(np.float64))
    assert_close(result, xp.asarray(expected, dtype=default, device=backend.device), rtol=1e-6)


def test_softmax_of_0d_array_is_refused(backend):
    with pytest.raises(ValueError, match="at least one axis"):
        xpnet.softmax(backend.asarray(np.float32(1.0)))


def test_complex_input_is_refused():
    with pytest.raises(TypeError, match="softmax needs real input"):
        xpnet.softmax(np.array([1 + 1j]))


def test_non_array_input_says_how_to_convert():
    with pytest.raises(TypeError, match=r"got list.*asarray"):
        xpnet.sigmoid([1.0, 2.0])


@property_settings
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    st.floats(-100, 100, width=32),
)
def test_softmax_sums_to_one_and_is_shift_invariant(backend, host, shift):
    x = backend.asarray(host)
    result = xpnet.softmax(x)
    sums = to_host(backend.xp.sum(result, axis=-1))
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    shifted = xpnet.softmax(x + backend.asarray(np.float32(shift)))
    np.testing.assert_allclose(to_host(shifted), to_host(result), atol=1e-5)


@property_settings
@given(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(allow_nan=False, width=32)))
def test_sigmoid_bounded_and_monotone(backend, host):
    ordered = np.sort(host)
    values = to_host(xpnet.sigmoid(backend.asarray(ordered)))
    assert np.all((values >= 0) & (values <= 1))
    assert np.all(np.diff(values) >= 0)


@property_settings
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=3),
        # XLA flushes subnormal numbers to zero; relu is exact for every normal float.
        elements=st.floats(-1e6, 1e6, allow_subnormal=False),
    )
)
def test_relu_nonnegative_and_exact(backend, host):
    values = xpnet.relu(backend.asarray(host))
    assert_equal(values, backend.asarray(np.maximum(host, 0.0)))
