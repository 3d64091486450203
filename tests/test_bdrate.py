"""BD-rate / BD-quality: the bjontegaard package's example data, exact hand cases, task-curve cleaning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from results.bdrate import bd_quality, bd_quality_detail, bd_rate, bd_rate_detail, clean_curve

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
