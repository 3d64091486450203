"""Tests of packing.quantizers: code ranges, reconstruction error, edge cases, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcfc.packing import QUANTIZERS, PackingError, QuantParams, dequantize, quant_step, quantize

BITS = (8, 10)
F32_EPS = float(np.finfo(np.float32).eps)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _features(seed: int = 0, shape=(4, 9, 11), dtype=np.float32) -> np.ndarray:
    r = _rng(seed)
    # per-channel offsets and scales so per-channel methods differ from per-tensor ones
    x = r.standard_normal(shape) * r.uniform(0.1, 10, (shape[0], 1, 1)) + r.uniform(-5, 5, (shape[0], 1, 1))
    return x.astype(dtype)


def _tol(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Half a step, plus the float32 rounding of the output (and of float16 input)."""
    return 0.5 * step * (1 + 1e-6) + 2 * F32_EPS * np.abs(x.astype(np.float64))


@pytest.mark.parametrize("method", QUANTIZERS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_codes_dtype_range_and_params_float32(method, bits, dtype):
    x = _features(1, dtype=dtype)
    q, p = quantize(x, method, bits)
    assert q.dtype == np.uint16 and q.shape == x.shape
    assert q.min() >= 0 and q.max() <= 2**bits - 1
    assert p.method == method and p.bits == bits
    assert all(a.dtype == np.float32 and a.ndim == 1 for a in p.arrays.values())
    per_channel = method in ("minmax-channel", "zscore")
    assert all(a.shape == ((x.shape[0],) if per_channel else (1,)) for a in p.arrays.values())
    y = dequantize(q, p)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()


@pytest.mark.parametrize("method", ["minmax", "minmax-channel"])
@pytest.mark.parametrize("bits", BITS)
def test_uniform_error_within_half_step(method, bits):
    x = _features(2)
    q, p = quantize(x, method, bits)
    y = dequantize(q, p).astype(np.float64)
    step = quant_step(p)
    step = step[:, None, None] if step.size > 1 else step[0]
    assert (np.abs(y - x) <= _tol(x, step)).all()
    # the full code range is used: min and max map to 0 and maxc
    if method == "minmax":
        assert q.min() == 0 and q.max() == 2**bits - 1


def test_minmax_channel_beats_minmax_on_uneven_channels():
    x = _features(3)
    x[0] *= 1000  # one loud channel ruins the per-tensor step for the others
    err = {m: np.abs(dequantize(*quantize(x, m, 8)) - x)[1:].max() for m in ("minmax", "minmax-channel")}
    assert err["minmax-channel"] < err["minmax"] / 10


@pytest.mark.parametrize("bits", BITS)
def test_log_error_and_fine_steps_for_small_values(bits):
    r = _rng(4)
    x = (r.exponential(1.0, (8, 16, 16)) ** 4).astype(np.float32)  # heavy-tailed, ReLU-like
    x[r.random(x.shape) < 0.5] = 0
    q, p = quantize(x, "log", bits)
    y = dequantize(q, p).astype(np.float64)
    assert (np.abs(y - x) <= _tol(x, quant_step(p)[0])).all()  # within half the widest step
    # in the log domain every value is within half a code
    lo, hi, s = (float(p.arrays[k][0]) for k in ("lo", "hi", "scale"))
    t = np.log1p((x - lo) / s) / np.log1p((hi - lo) / s) * (2**bits - 1)
    assert np.abs(t - q).max() <= 0.5 + 1e-6
    # zeros come back exactly (lo is the minimum, code 0), and the bulk is far better than minmax
    assert (y[x == 0] == 0).all()
    bulk = (x > 0) & (x < np.median(x[x > 0]))
    e_log = np.abs(y - x)[bulk].mean()
    e_mm = np.abs(dequantize(*quantize(x, "minmax", bits)) - x)[bulk].mean()
    assert e_log < e_mm / 5


def test_log_handles_negative_values_and_explicit_scale():
    x = _features(5)  # has negatives
    q, p = quantize(x, "log", 10, scale=0.5)
    assert float(p.arrays["scale"][0]) == 0.5
    y = dequantize(q, p)
    assert (np.abs(y - x) <= _tol(x, quant_step(p)[0])).all()
    assert y.min() == pytest.approx(x.min()) and y.max() == pytest.approx(x.max())


@pytest.mark.parametrize("bits", BITS)
def test_zscore_error_clipping_and_statistics(bits):
    x = _features(6, shape=(5, 32, 32))
    k = 3.0
    q, p = quantize(x, "zscore", bits, k=k)
    assert p.scalars == {"k": 3.0}
    mean, std = p.arrays["mean"].astype(np.float64), p.arrays["std"].astype(np.float64)
    np.testing.assert_allclose(mean, x.reshape(5, -1).mean(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, x.reshape(5, -1).std(1), rtol=1e-4)
    y = dequantize(q, p).astype(np.float64)
    m, s = mean[:, None, None], std[:, None, None]
    inside = np.abs(x - m) <= k * s
    step = quant_step(p)[:, None, None]
    assert (np.abs(y - x) <= _tol(x, step))[inside].all()
    # outside the clip range values saturate at mean +- k*std
    assert (y >= m - k * s - step).all() and (y <= m + k * s + step).all()
    # global statistics survive quantization
    np.testing.assert_allclose(y.reshape(5, -1).mean(1), mean, atol=float(std.max()) * 0.05)


def test_zscore_k_option_changes_clip():
    x = _features(7)
    x[0, 0, 0] = 1000.0  # outlier
    y2 = dequantize(*quantize(x, "zscore", 10, k=2.0))
    y6 = dequantize(*quantize(x, "zscore", 10, k=6.0))
    assert y6[0, 0, 0] > y2[0, 0, 0]


@pytest.mark.parametrize("method", ["minmax", "minmax-channel"])
@pytest.mark.parametrize("bits", BITS)
def test_requantizing_reconstruction_gives_identical_codes(method, bits):
    x = _features(8, shape=(3, 20, 20))
    q, p = quantize(x, method, bits)
    if method == "minmax-channel":  # every channel must span its full range for identical lo/hi
        assert (q.reshape(3, -1).min(1) == 0).all() and (q.reshape(3, -1).max(1) == 2**bits - 1).all()
    q2, p2 = quantize(dequantize(q, p), method, bits)
    np.testing.assert_array_equal(q2, q)
    for k in p.arrays:
        np.testing.assert_array_equal(p2.arrays[k], p.arrays[k])


def test_log_requantize_with_same_scale_is_identical():
    x = (_rng(9).exponential(2.0, (3, 20, 20)) ** 3).astype(np.float32)
    q, p = quantize(x, "log", 10)
    q2, _ = quantize(dequantize(q, p), "log", 10, scale=float(p.arrays["scale"][0]))
    np.testing.assert_array_equal(q2, q)


@pytest.mark.parametrize("method", QUANTIZERS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_constant_tensor_and_all_zero_are_exact(method, dtype):
    for value in (0.0, 3.7, -1e-3):
        x = np.full((3, 5, 6), value, dtype=dtype)
        q, p = quantize(x, method, 8)
        y = dequantize(q, p)
        np.testing.assert_array_equal(y, x.astype(np.float32))


@pytest.mark.parametrize("method", ["minmax-channel", "zscore"])
def test_constant_channel_in_varying_tensor_is_exact(method):
    x = _features(10)
    x[1] = np.float32(3.7)
    x[2] = 0
    y = dequantize(*quantize(x, method, 10))
    assert (y[1] == np.float32(3.7)).all()
    assert (y[2] == 0).all()
    if method == "zscore":
        q, p = quantize(x, method, 10)
        assert p.arrays["std"][1] == 0 and p.arrays["std"][2] == 0


@pytest.mark.parametrize("method", QUANTIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_dynamic_range(method, dtype):
    x = _features(11).astype(np.float64)
    x[0, 0, 0], x[0, 0, 1], x[1, 2, 3] = 1e30, -1e30, 3e38
    x = x.astype(dtype)
    q, p = quantize(x, method, 10)
    assert all(np.isfinite(a).all() for a in p.arrays.values())
    y = dequantize(q, p)
    assert np.isfinite(y).all()
    if method in ("minmax", "log"):  # the extremes are reproduced (within float32)
        assert y.max() == pytest.approx(3e38, rel=1e-6) and y.min() == pytest.approx(-1e30, rel=1e-6)
    if method == "minmax-channel":
        step = quant_step(p)[:, None, None]
        assert (np.abs(y.astype(np.float64) - x) <= _tol(x, step)).all()


@pytest.mark.parametrize("method", QUANTIZERS)
def test_tiny_range(method):
    x = (_features(12) * 1e-30).astype(np.float32)
    q, p = quantize(x, method, 10)
    y = dequantize(q, p).astype(np.float64)
    assert np.isfinite(y).all()
    spread = float(x.max() - x.min())
    assert 0 < spread < 1e-28
    # small relative to the data spread: the codes carry information, nothing flushed to zero
    tol = 0.05 if method == "zscore" else 0.01  # zscore clips at 3 std
    assert np.abs(y - x).mean() < tol * spread
    assert q.max() > q.min()


def test_float16_input_within_step():
    x = _features(13, dtype=np.float16)
    q, p = quantize(x, "minmax", 10)
    y = dequantize(q, p)
    assert (np.abs(y.astype(np.float64) - x) <= _tol(x, quant_step(p)[0])).all()


def test_params_rebuilt_from_container_arrays_decode_identically():
    x = _features(14)
    for method in QUANTIZERS:
        q, p = quantize(x, method, 10)
        # the container stores float32 blobs + JSON scalars; lists/float64 must be accepted too
        p2 = QuantParams(p.method, p.bits, {k: list(v.astype(np.float64)) for k, v in p.arrays.items()},
                         dict(p.scalars))
        np.testing.assert_array_equal(dequantize(q, p2), dequantize(q, p))
        assert p2.nbytes == p.nbytes == 4 * (sum(a.size for a in p.arrays.values()) + len(p.scalars))


# ----------------------------------------------------------------------------- errors

def test_nan_inf_rejected_with_counts():
    x = _features(15)
    x[0, 0, 0] = np.nan
    x[1, 1, 1] = np.nan
    x[2, 2, 2] = np.inf
    for method in QUANTIZERS:
        with pytest.raises(PackingError, match=r"2 NaN and 1 Inf"):
            quantize(x, method, 8)


@pytest.mark.parametrize("shape", [(4, 4), (1, 2, 3, 4), (5,)])
def test_bad_ndim(shape):
    with pytest.raises(PackingError, match=r"\(C,H,W\).*ndim"):
        quantize(np.zeros(shape, np.float32), "minmax", 8)


@pytest.mark.parametrize(
    "args,kwargs,msg",
    [
        (("minmax", 12), {}, "bits must be one of"),
        (("minmax", True), {}, "bits must be one of"),
        (("bogus", 8), {}, "unknown quantizer 'bogus'"),
        (("minmax", 8), {"k": 2}, "no option"),
        (("zscore", 8), {"k": 0}, "k must be"),
        (("log", 8), {"scale": -1.0}, "scale must be"),
    ],
)
def test_bad_arguments(args, kwargs, msg):
    with pytest.raises(PackingError, match=msg):
        quantize(_features(16), *args, **kwargs)


def test_bad_dtype_and_float32_overflow():
    with pytest.raises(PackingError, match="dtype int32"):
        quantize(np.zeros((1, 2, 2), np.int32), "minmax", 8)
    with pytest.raises(PackingError, match="float32 range"):
        quantize(np.full((1, 2, 2), 1e300), "minmax", 8)
    with pytest.raises(PackingError, match="empty"):
        quantize(np.zeros((0, 2, 2), np.float32), "minmax", 8)


def test_dequantize_validates_codes_against_params():
    x = _features(17)  # C = 4
    q, p = quantize(x, "minmax-channel", 8)
    with pytest.raises(PackingError, match=r"expected \(3,\)"):
        dequantize(q[:3], p)
    with pytest.raises(PackingError, match="outside"):
        dequantize(q.astype(np.uint16) + 256, p)
    with pytest.raises(PackingError, match="integer"):
        dequantize(q.astype(np.float32), p)
    with pytest.raises(PackingError, match=r"\(C,H,W\)"):
        dequantize(q[0], p)
    with pytest.raises(PackingError, match="lack"):
        dequantize(q, QuantParams("minmax-channel", 8, {"lo": p.arrays["lo"]}))
    with pytest.raises(PackingError, match="need a finite scalar k"):
        qz, pz = quantize(x, "zscore", 8)
        dequantize(qz, QuantParams("zscore", 8, pz.arrays, {}))


# ----------------------------------------------------------------------------- property

@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6),
    scale=st.sampled_from([1e-20, 1e-3, 1.0, 1e4, 1e25]),
    seed=st.integers(0, 2**16), bits=st.sampled_from(BITS),
)
def test_property_minmax_channel_within_half_step(c, h, w, scale, seed, bits):
    x = (_rng(seed).standard_normal((c, h, w)) * scale).astype(np.float32)
    q, p = quantize(x, "minmax-channel", bits)
    y = dequantize(q, p).astype(np.float64)
    assert (np.abs(y - x) <= _tol(x, quant_step(p)[:, None, None])).all()
