"""Sensitivity measurement: codec noise, batched vs naive sweep, Taylor, levels, profiles, CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import vcfc
import vcfc.sensitivity as S
from tests.conftest import feature_like
from vcfc import container
from vcfc.codecs import get_codec
from vcfc.errors import InputError
from vcfc.sensitivity.noise import naive_channel_roundtrip
from vcfc.spec import CodingSpec


def test_one_encode_gives_each_channel_as_if_coded_alone():
    x = torch.from_numpy(feature_like(6, 24, 40, seed=1))
    spec = CodingSpec("x265", "minmax", 8, layout="frames")
    noisy = torch.as_tensor(S.roundtrip(x, 37, spec))
    assert not torch.equal(noisy, x)
    for i in (0, 3, 5):
        assert torch.equal(naive_channel_roundtrip(x, i, 37, spec), noisy[i])


def test_penultimate_graph_equals_split_penultimate(squeeze):
    sp, feats = squeeze
    pen = S.penultimate_graph(sp.tail_module)
    assert torch.allclose(pen(feats[0]), sp.penultimate(feats[0]), rtol=0, atol=1e-6)
    lin = S.linear_head(pen)
    assert lin is not None and isinstance(lin.conv, nn.Conv2d)


@pytest.mark.parametrize("linear", ["on", "off"])
def test_batched_sweep_equals_naive_loop(squeeze, linear):
    sp, feats = squeeze
    pen = S.penultimate_graph(sp.tail_module)
    kw = dict(tail=sp.tail, penultimate=pen, qp_base=32, dtype=torch.float64)
    fast = S.measure(feats, **kw, method="exact", linear=linear, max_batch=24)   # chunks of 24
    assert fast.meta["linear_trick"] is (linear == "on") and 1 <= fast.meta["chunk"] <= 24  # tuned sizes, several chunk boundaries
    chans = [0, 9, 23, 24, 47, 63]
    naive = S.measure(feats, **kw, method="naive", naive_channels=chans)
    a, b = fast.sensitivity[chans], naive.sensitivity[chans]
    assert np.all(b > 0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=0)
    assert np.isnan(np.delete(naive.sensitivity, chans)).all()


def test_output_distances_and_taylor(squeeze):
    sp, feats = squeeze
    pen = S.penultimate_graph(sp.tail_module)
    kw = dict(tail=sp.tail_module, penultimate=pen, qp_base=32, linear="off")
    exact = S.measure(feats, **kw)
    taylor = S.measure(feats, **kw, method="taylor", taylor_probes=16)
    assert spearmanr(exact.sensitivity, taylor.sensitivity).statistic > 0.5
    for d in ("output", "kl", "top1"):
        p = S.measure(feats[:1], **kw, distance=d)
        assert p.sensitivity.shape == (64,) and np.all(p.sensitivity >= 0)
    with pytest.raises(InputError, match="differentiable"):
        S.measure(feats, **kw, method="taylor", distance="top1")


def test_grouped_conv_delta_matches_full_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1)
    x, xn = torch.randn(1, 5, 12, 12), torch.randn(1, 5, 12, 12)
    from vcfc.sensitivity.tail_graphs import LinearHead

    lin = LinearHead(conv, nn.Identity())
    idx = torch.tensor([4, 0, 2])
    d = lin.delta((xn - x)[0, idx], idx) + conv(x)
    v = x.expand(3, -1, -1, -1).clone()
    v[torch.arange(3), idx] = xn[0, idx]
    torch.testing.assert_close(d, conv(v), rtol=1e-5, atol=1e-5)


def test_frame_sizes_sum_to_the_payload():
    x = feature_like(5, 32, 32, seed=2)
    data = vcfc.encode(x, codec="x265", qp=30, layout="frames")
    (payload,) = container.read(data).payloads
    sizes = get_codec("x265").frame_sizes(payload, 5)
    assert sizes.sum() == pytest.approx(len(payload), abs=4 * 12) and np.all(sizes > 0)
    rate, dist = S.rd_tables(torch.from_numpy(x), [26, 38], CodingSpec(layout="frames"))
    assert np.all(rate[:, 0] > rate[:, 1]) and np.all(dist[:, 0] < dist[:, 1])


def test_measure_levels_and_detection_distance():
    def tail(f):
        return {k: v.mean() * (i + 1) for i, (k, v) in enumerate(f.items())}

    def dist(a, b):
        return sum(float((a[k] - b[k]) ** 2) for k in a)

    g = torch.Generator().manual_seed(0)
    feats = [{"p2": torch.rand(4, 32, 32, generator=g) * 3, "p3": torch.rand(4, 16, 16, generator=g)}]
    prof = S.measure_levels(feats, tail=tail, distance=dist, qp_base=45)
    assert list(prof.table["level"]) == ["p2", "p3"] and prof.meta["level_channels"] == {"p2": 4, "p3": 4}
    box = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    ref = [{"boxes": box, "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}]
    assert S.detection_distance(ref, ref) == 0.0
    moved = [{"boxes": box + torch.tensor([0.0, 0, 0, 0]), "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.8])}]
    assert S.detection_distance(ref, moved) == pytest.approx(0.5)


def test_profile_roundtrip(tmp_path: Path):
    rate, dist = np.ones((3, 2)), np.full((3, 2), 0.5)
    prof = S.Profile.from_arrays(np.array([1.0, 3.0, 2.0]), {"model": "m", "qp_base": 37}, rd=([30, 40], rate, dist))
    paths = S.write_profile(prof, tmp_path / "sub" / "prof.parquet")
    assert all(p.is_file() for p in paths.values()) and paths["png"].stat().st_size > 1000
    for src in (paths["parquet"], paths["csv"], tmp_path / "sub" / "prof"):
        back = S.read_profile(src)
        assert back.meta["model"] == "m" and back.sensitivity.tolist() == [1.0, 3.0, 2.0]
        assert back.table["normalized_sensitivity"].tolist() == [0.0, 1.0, 0.5]
        qps, r, d = back.rd()
        assert qps == [30, 40] and r.shape == (3, 2)
    with pytest.raises(InputError):
        S.read_profile(tmp_path / "nothing.parquet")


def _run_cli(*argv: str) -> int:
    from vcfc.runners.cli.cmd_sensitivity import register

    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(list(argv))
    return a.func(a)


def test_measure_rejects_bad_input(squeeze):
    sp, feats = squeeze
    with pytest.raises(InputError, match="method"):
        S.measure(feats, tail=sp.tail, penultimate=sp.penultimate, qp_base=32, method="fast")
    with pytest.raises(InputError, match="QP range"):
        S.measure(feats, tail=sp.tail, penultimate=sp.penultimate, qp_base=70)
    with pytest.raises(InputError, match="no images"):
        S.measure([], tail=sp.tail, penultimate=sp.penultimate, qp_base=30)


@pytest.mark.shared
def test_cli_real_weights_squeezenet(shared, torch_home, tmp_path: Path):
    out = tmp_path / "sq"
    assert _run_cli("sensitivity", "--model", "squeezenet1_1", "--layer", "fire9", "--data",
                    str(shared / "data" / "imagenet-sample"), "--images", "2", "--qp-base", "37",
                    "--rd-qps", "33:41:4", "--device", "cpu", "--out", str(out)) == 0
    prof = S.read_profile(out.with_suffix(".parquet"))
    assert prof.meta["model"] == "squeezenet1_1" and prof.meta["images"] == 2 and len(prof.table) == 512
    assert prof.rd()[0] == [33, 37, 41] and np.all(prof.sensitivity >= 0)
    assert _run_cli("allocate", str(out), "--qp-range", "8", "--method", "lagrangian",
                    "--target-qp", "37", "--out", str(tmp_path / "q.txt")) == 0
    assert len((tmp_path / "q.txt").read_text().split()) == 512
