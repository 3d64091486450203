"""BD-rate / BD-quality: the bjontegaard package's example data, exact hand cases, task-curve cleaning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from vcfc.results.bdrate import (
    bd_quality,
    bd_quality_detail,
    bd_rate,
    bd_rate_bootstrap,
    bd_rate_detail,
    clean_curve,
    resampled_means,
)

# the bjontegaard package's README / example_usage.py "test case 1" (x265 presets, kbps / PSNR)
RA = [9487.76, 4593.60, 2486.44, 1358.24]
PA = [40.037, 38.615, 36.845, 34.851]
RT = [9787.80, 4469.00, 2451.52, 1356.24]
PT = [40.121, 38.651, 36.970, 34.987]


def _pchip_bd_rate(ra, qa, rt, qt) -> float:
    """Independent BD-rate: log-rate as a PCHIP function of quality, averaged over the overlap."""
    def f(r, q):
        o = np.argsort(q)
        return PchipInterpolator(np.asarray(q)[o], np.log10(np.asarray(r))[o])
    lo, hi = max(min(qa), min(qt)), min(max(qa), max(qt))
    fa, ft = f(ra, qa), f(rt, qt)
    avg = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return (10**avg - 1) * 100


def test_package_example_values():
    # values of bjontegaard 1.3 (its PCHIP matches the JVET CTC sheet to 10 decimals, per its README)
    assert bd_rate(RA, PA, RT, PT, "pchip") == pytest.approx(-4.417485350589045, abs=1e-9)
    assert bd_rate(RA, PA, RT, PT, "akima") == pytest.approx(-4.425245156997493, abs=1e-9)
    assert bd_quality(RA, PA, RT, PT, "pchip") == pytest.approx(0.11969278542479489, abs=1e-9)
    # and an implementation that shares no code with the package agrees
    assert bd_rate(RA, PA, RT, PT, "pchip") == pytest.approx(_pchip_bd_rate(RA, PA, RT, PT), abs=1e-9)


def test_example_is_order_free():
    o = [2, 0, 3, 1]
    assert bd_rate([RA[i] for i in o], [PA[i] for i in o], RT, PT) == pytest.approx(bd_rate(RA, PA, RT, PT))


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
def test_scaled_rates_give_exact_bd_rate(method):
    rates = np.array([0.5, 1.1, 2.3, 4.0, 7.5])
    fid = np.array([0.41, 0.63, 0.80, 0.91, 0.97])
    assert bd_rate(rates, fid, rates * 0.9, fid, method) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(rates, fid, rates * 1.25, fid, method) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(rates, fid, rates, fid, method) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(rates, fid, rates, fid + 0.05, method) == pytest.approx(0.05, abs=1e-9)


def test_saturated_fidelity_is_cleaned():
    # fidelity reaches 1.0 at QP 27 and stays there: the tail is dropped, not interpolated flat
    rates = [0.3, 0.6, 1.2, 2.4, 4.8, 9.6]
    fid = [0.20, 0.60, 0.80, 1.00, 1.00, 1.00]
    r, q = clean_curve(rates, fid)
    assert r.tolist() == [0.3, 0.6, 1.2, 2.4] and q.tolist() == [0.2, 0.6, 0.8, 1.0]
    scaled = [x * 0.8 for x in rates]
    assert bd_rate(rates, fid, scaled, fid) == pytest.approx(-20.0, abs=1e-9)
    assert bd_quality(rates, fid, scaled, fid) > 0


def test_clean_curve_drops_dips_nans_and_ties():
    r, q = clean_curve([1, 2, 3, 4, 4, np.nan, 0, 5], [0.5, 0.7, 0.65, 0.8, 0.9, 0.99, 0.3, 0.95])
    assert r.tolist() == [1, 2, 4, 5] and q.tolist() == [0.5, 0.7, 0.9, 0.95]
    with pytest.raises(ValueError):
        clean_curve([1, 2], [1])


def test_nan_with_reason():
    res = bd_rate_detail([1, 2, 4], [0.1, 0.2, 0.3], [1, 2, 4], [0.6, 0.7, 0.8])
    assert math.isnan(res.value) and "overlap 0%" in res.reason
    res = bd_rate_detail([1, 2], [0.9, 0.9], [1, 2], [0.5, 0.9])  # anchor saturated everywhere
    assert math.isnan(res.value) and "fewer than 2" in res.reason
    res = bd_rate_detail(RA, PA, RT, PT, min_overlap=0.99)
    assert math.isnan(res.value) and "< 99%" in res.reason
    ok = bd_quality_detail(RA, PA, RT, PT)
    assert ok.reason is None and ok.n_anchor == ok.n_test == 4 and 0.9 < ok.overlap <= 1
    with pytest.raises(ValueError, match="method"):
        bd_rate(RA, PA, RT, PT, "linear")


# --- bootstrap over images ---------------------------------------------------------------------

def _kl_to_db(m):
    return -10 * np.log10(m)


def _synthetic(n: int, seed: int = 1, factor: float = 0.85) -> tuple[np.ndarray, ...]:
    """[images, QPs] rates and output KL of an anchor and a test config from one model: the test
    needs ``factor`` × the bits for the same distortion, plus independent per-image noise."""
    rng = np.random.default_rng(seed)
    k = np.arange(5)
    base = rng.lognormal(0.0, 0.3, size=(n, 1))  # image complexity: rate and KL both depend on it
    a_rate = base * 4.0 * 2.0 ** (-k / 1.5)
    t_rate = base * 4.0 * 2.0 ** (-k / 1.5) * factor * rng.lognormal(0, 0.05, size=(n, 5))
    a_kl = 0.01 * np.exp(0.8 * k) * base * rng.lognormal(0, 0.6, size=(n, 5))
    t_kl = 0.01 * np.exp(0.8 * k) * base * rng.lognormal(0, 0.6, size=(n, 5))
    return a_rate, a_kl, t_rate, t_kl


def test_bootstrap_exact_factor_gives_degenerate_interval():
    rng = np.random.default_rng(0)
    rates = rng.lognormal(0, 0.3, size=(30, 1)) * np.array([4.0, 2.0, 1.0, 0.5, 0.25])
    fid = (rng.random((30, 5)) < np.array([0.98, 0.9, 0.75, 0.55, 0.3])).astype(float)
    res = bd_rate_bootstrap(rates, fid, rates * 0.9, fid, n_boot=200)
    assert res.value == pytest.approx(-10.0, abs=1e-9)
    assert res.ci_low == pytest.approx(-10.0, abs=1e-9) and res.ci_high == pytest.approx(-10.0, abs=1e-9)
    assert res.n_images == 30 and res.n_boot == 200 and res.reason is None


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    a_r, a_q, t_r, t_q = _synthetic(60)
    res = bd_rate_bootstrap(a_r, a_q, t_r, t_q, quality_of_mean=_kl_to_db, n_boot=300, seed=7)
    assert res.ci_low < res.value < res.ci_high
    assert res.ci_high - res.ci_low > 0.1  # real noise: not degenerate
    assert -25 < res.value < -5  # the test config needs ~15 % fewer bits
    again = bd_rate_bootstrap(a_r, a_q, t_r, t_q, quality_of_mean=_kl_to_db, n_boot=300, seed=7)
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)
    other = bd_rate_bootstrap(a_r, a_q, t_r, t_q, quality_of_mean=_kl_to_db, n_boot=300, seed=8)
    assert other.value == res.value and (other.ci_low, other.ci_high) != (res.ci_low, res.ci_high)


def test_bootstrap_interval_shrinks_with_more_images():
    widths = {}
    for n in (20, 400):
        res = bd_rate_bootstrap(*_synthetic(n, seed=3), quality_of_mean=_kl_to_db, n_boot=200)
        assert res.reason is None and res.nan_resamples == 0
        widths[n] = res.ci_high - res.ci_low
    assert widths[400] < 0.5 * widths[20]  # ~ 1/sqrt(n): 4.5× narrower expected


def test_bootstrap_too_many_nan_resamples_gives_no_interval():
    # image 0 has an increasing curve, image 1 is saturated: a resample of image 1 twice (1 in 4)
    # has a flat curve and no BD-rate
    a_r = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    a_q = np.array([[0.5, 0.6, 0.7], [1.0, 1.0, 1.0]])
    res = bd_rate_bootstrap(a_r, a_q, a_r * 0.8, a_q, n_boot=200)
    assert res.value == pytest.approx(-20.0, abs=1e-9)
    assert math.isnan(res.ci_low) and math.isnan(res.ci_high)
    assert 20 < res.nan_resamples < 90 and "resamples have no BD-rate" in res.reason


def test_bootstrap_pairs_images_and_validates_shapes():
    a_r, a_q, t_r, t_q = _synthetic(10)
    with pytest.raises(ValueError, match="paired"):
        bd_rate_bootstrap(a_r, a_q, t_r[:5], t_q[:5])
    res = bd_rate_bootstrap(a_r, a_q, t_r, t_q, quality_of_mean=_kl_to_db, n_boot=0)
    assert math.isfinite(res.value) and math.isnan(res.ci_low) and "no interval" in res.reason
    # the point estimate is the BD-rate of the mean curves
    mean = bd_rate(a_r.mean(0), _kl_to_db(a_q.mean(0)), t_r.mean(0), _kl_to_db(t_q.mean(0)))
    assert res.value == pytest.approx(mean, abs=1e-12)


def test_resampled_means_skip_missing_cells():
    v = np.array([[1.0, np.nan], [3.0, 5.0]])
    m = resampled_means(v, np.array([[0, 1], [0, 0], [1, 1]]))
    assert m[0].tolist() == [2.0, 5.0] and m[1, 0] == 1.0 and math.isnan(m[1, 1]) and m[2].tolist() == [3.0, 5.0]
