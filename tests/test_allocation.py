"""QP allocation: the linear rule, the Lagrangian allocator (vs brute force), λ bisection, the CLI."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pytest

import vcfc.sensitivity as S
from vcfc.errors import InputError
from vcfc.io import load_qps


def test_linear_rule_known_profile():
    s = [0.0, 0.5, 1.0, 0.25, 0.05]
    # S̃ = S; QP = 37 − round(10·S̃), half up: 2.5 → 3
    assert S.allocate_linear(s, 37, 10).tolist() == [37, 32, 27, 34, 36]
    # min-max normalisation: an affine change of S gives the same QPs
    assert S.allocate_linear(np.array(s) * 7 + 3, 37, 10).tolist() == [37, 32, 27, 34, 36]
    # clipped to the codec range
    assert S.allocate_linear(s, 5, 10).tolist() == [5, 0, 0, 2, 4]
    assert S.allocate_linear(s, 60, 4, (0, 51)).tolist() == [51, 51, 51, 51, 51]
    assert S.allocate_linear([3.0, 3.0], 30, 8).tolist() == [30, 30]   # constant profile
    with pytest.raises(InputError):
        S.allocate_linear([1.0, float("nan")], 30, 8)


def test_levels():
    # a level profile's rows (p2..p5) go through the same linear rule, one QP per level
    assert S.allocate_linear([0.1, 0.4, 1.0, 0.0], 40, 6).tolist() == [39, 38, 34, 40]


def _convex_tables(c: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    qps = np.arange(22, 22 + 3 * k, 3)
    x = np.arange(k, dtype=float)
    rate = np.stack([rng.uniform(200, 2000) * np.exp(-rng.uniform(0.2, 0.5) * x) for _ in range(c)])
    dist = np.stack([rng.uniform(0.1, 2) * np.exp(rng.uniform(0.2, 0.5) * x) for _ in range(c)])
    w = rng.uniform(0.1, 5, c)
    return w, rate, dist, qps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lagrangian_matches_brute_force(seed):
    w, rate, dist, qps = _convex_tables(3, 5, seed)
    for lam in [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 0.1, 10.0]:
        a = S.allocate_lagrangian(w, rate, dist, qps, lam)
        best = min(itertools.product(range(5), repeat=3),
                   key=lambda ks: sum(w[i] * dist[i, k] + lam * rate[i, k] for i, k in enumerate(ks)))
        cost = lambda qs: sum(w[i] * dist[i, list(qps).index(q)] + lam * rate[i, list(qps).index(q)]
                              for i, q in enumerate(qs))
        assert cost(a.qps) == pytest.approx(cost([qps[k] for k in best]), rel=1e-12)
        assert a.rate == pytest.approx(sum(rate[i, list(qps).index(q)] for i, q in enumerate(a.qps)))


def test_lambda_bisection_hits_target():
    w, rate, dist, qps = _convex_tables(40, 8, 3)
    curve = [S.allocate_lagrangian(w, rate, dist, qps, lam) for lam in np.geomspace(1e-7, 1e2, 3000)]
    lo, hi = rate[:, -1].sum(), rate[:, 0].sum()
    for target in [lo * 1.5, 0.5 * (lo + hi), rate[:, 2].sum(), hi * 2]:
        a = S.lagrangian_for_target(w, rate, dist, qps, target_bytes=target)
        assert a.rate <= target
        # nothing on the Lagrangian curve lies between our rate and the target
        assert not any(a.rate < c.rate <= target for c in curve)
    a = S.lagrangian_for_target(w, rate, dist, qps, target_qp=30.0)
    assert a.qps.mean() >= 30.0
    assert not any(30.0 <= c.qps.mean() < a.qps.mean() for c in curve)
    with pytest.raises(InputError, match="cannot be reached"):
        S.lagrangian_for_target(w, rate, dist, qps, target_bytes=rate[:, -1].sum() * 0.5)


def test_task_weights():
    w = S.task_weights(np.array([1.0, 2.0, 3.0]), np.array([[1, 2], [4, 8], [0, 0]], float), [30, 36], 31)
    assert w.tolist() == [1.0, 0.5, 0.0]


def _run_cli(*argv: str) -> int:
    from vcfc.runners.cli.cmd_sensitivity import register

    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(list(argv))
    return a.func(a)


def test_allocate_cli(tmp_path: Path):
    w, rate, dist, qps = _convex_tables(6, 5, 4)
    s = np.array([0.0, 1.0, 0.5, 0.2, 0.9, 0.1])
    prof = S.Profile.from_arrays(s, {"qp_base": 34, "codec": "x265", "model": "m"}, rd=(list(qps), rate, dist))
    S.write_profile(prof, tmp_path / "p", plot=False)
    out = tmp_path / "q.txt"
    assert _run_cli("allocate", str(tmp_path / "p.parquet"), "--qp-range", "10", "--out", str(out)) == 0
    assert load_qps(out) == S.allocate_linear(s, 34, 10).tolist()
    with pytest.raises(InputError, match="exists; --force"):  # q.txt is there now
        _run_cli("allocate", str(tmp_path / "p.csv"), "--qp-range", "12", "--out", str(out))
    assert _run_cli("allocate", str(tmp_path / "p.csv"), "--qp-range", "12", "--method", "lagrangian",
                    "--target-qp", "30", "--out", str(out), "--force") == 0
    got = load_qps(out)
    assert len(got) == 6 and np.mean(got) >= 30 and set(got) <= set(qps.tolist())
    with pytest.raises(InputError, match="lagrangian needs"):
        _run_cli("allocate", str(tmp_path / "p"), "--qp-range", "12", "--method", "lagrangian", "--out", str(out),
                 "--force")
    # per-level profile: one QP per level, repeated for the level's channels
    lv = S.Profile.from_arrays(np.array([0.2, 1.0]), {"qp_base": 40, "codec": "x265", "mode": "level",
                                                      "level_channels": {"p2": 3, "p3": 2}},
                               levels=["p2", "p3"], channels=[-1, -1])
    S.write_profile(lv, tmp_path / "lv", plot=False)
    assert _run_cli("allocate", str(tmp_path / "lv"), "--qp-range", "5", "--out", str(out), "--force") == 0
    assert load_qps(out) == [40, 40, 40, 35, 35]
