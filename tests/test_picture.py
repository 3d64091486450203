"""Layout image: an RGB picture coded as one colour picture, the way image anchors are coded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import vcfc
from tests.conftest import KODAK
from tests.test_cli import vcfc_cli
from vcfc import container
from vcfc.bank import PictureBank, make_bank
from vcfc.errors import FormatError, InputError
from vcfc.packing.color import pad_to, rgb_to_yuv420, yuv420_to_rgb
from vcfc.spec import CodingSpec


@pytest.fixture(scope="module")
def kodim() -> np.ndarray:
    """A real photograph, cropped to odd sides (padding and cropping are exercised)."""
    return np.asarray(Image.open(KODAK / "kodim05.jpg").convert("RGB"))[:117, :203].copy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- colour conversion

def test_colour_conversion_of_gray_is_exact_and_of_a_photograph_close(kodim):
    gray = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16)[:, :, None], 3, axis=2)
    y, cb, cr = rgb_to_yuv420(gray)
    assert np.array_equal(y, gray[..., 0]) and set(np.unique(cb)) == {128} and set(np.unique(cr)) == {128}
    assert np.array_equal(yuv420_to_rgb(y, cb, cr), gray)
    rgb = pad_to(kodim, 2)
    assert rgb.shape == (118, 204, 3) and np.array_equal(rgb[117], rgb[116])  # edge replicated
    back = yuv420_to_rgb(*rgb_to_yuv420(rgb))
    assert 35 < psnr(back, rgb) < 60  # 4:2:0 loses chroma detail only
    # the luma is the JFIF luma Pillow computes (to within rounding)
    pil_y = np.asarray(Image.fromarray(rgb).convert("YCbCr"))[..., 0]
    assert np.abs(pil_y.astype(int) - rgb_to_yuv420(rgb)[0]).max() <= 1


# --------------------------------------------------------------------------- coding pictures

def test_lossless_returns_the_exact_pixels(kodim):
    data = vcfc.encode(kodim, layout="image", codec="lossless")
    back = vcfc.decode(data)
    assert back.dtype == np.uint8 and back.shape == kodim.shape and np.array_equal(back, kodim)
    info = vcfc.inspect(data)
    assert info["color"] == {"format": "gbrp", "matrix": "rgb", "range": "full", "chroma": "444"}
    assert info["input_hw"] == [117, 203] and info["bpp"] == pytest.approx(8 * len(data) / (117 * 203))


@pytest.mark.parametrize("codec", ["x265", "av1", "vvenc", "jpeg"])
def test_each_codec_codes_a_picture_in_420_with_monotonic_rate(codec, kodim):
    fine, coarse = (10, 60) if codec == "jpeg" else (22, 40)
    sizes, quality = [], []
    for qp in (fine, coarse):
        data = vcfc.encode(kodim, layout="image", codec=codec, qp=qp, preset=None)
        back = vcfc.decode(data)
        assert back.shape == kodim.shape and back.dtype == np.uint8
        info = vcfc.inspect(data)
        assert info["layout"] == "image" and info["channel_qps"] == {"x": [qp] * 3}
        assert info["color"]["chroma"] == "420" and info["color"]["matrix"] == "bt601"
        sizes.append(len(data))
        quality.append(psnr(back, kodim))
    assert sizes[0] > sizes[1] and quality[0] > quality[1] > 20  # coarser QP: fewer bytes, lower PSNR


@pytest.mark.parametrize("codec, qp, floor", [("x265", 0, 60), ("av1", 0, 100), ("vvenc", 8, 45), ("jpeg", 0, 45)])
def test_fine_qps_reproduce_the_colour_conversion_and_nothing_else(codec, qp, floor, kodim):
    """At a near-lossless QP the decoded picture is the 4:2:0 round trip of the input: the planes go
    to the encoder as they are (a range or matrix conversion on the way, e.g. ffmpeg stretching
    "limited" to full range, costs 15 dB: measured 29 dB before the input's range was declared)."""
    ref = yuv420_to_rgb(*rgb_to_yuv420(pad_to(kodim, 8)))[: kodim.shape[0], : kodim.shape[1]]
    back = vcfc.decode(vcfc.encode(kodim, layout="image", codec=codec, qp=qp))
    assert psnr(back, ref) > floor


def test_the_picture_comes_back_as_it_was_given(kodim):
    chw = torch.from_numpy(np.ascontiguousarray(np.moveaxis(kodim, -1, 0)))
    for given in (chw, chw[None], kodim, kodim[None]):
        back = vcfc.decode(vcfc.encode(given, layout="image", codec="lossless"))
        assert type(back) is type(given) and back.shape == given.shape and back.dtype == given.dtype
        assert (back == given).all()
    frames = vcfc.decode_frames(vcfc.encode(kodim, layout="image", codec="lossless"))
    assert len(frames) == 1 and np.array_equal(frames[0][0], kodim)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((3, 8, 8), np.float32), "uint8"),
    (np.zeros((4, 8, 8), np.uint8), "one RGB picture"),
    (np.zeros((2, 3, 8, 8), np.uint8), "one RGB picture"),
])
def test_bad_pictures_are_one_line_errors(bad, msg):
    with pytest.raises(InputError, match=msg):
        vcfc.encode(bad, layout="image", codec="x265", qp=30)


def test_a_picture_takes_one_qp():
    rgb = np.zeros((16, 16, 3), np.uint8)
    assert vcfc.inspect(vcfc.encode(rgb, layout="image", channel_qps=[33, 33, 33]))["channel_qps"]["x"] == [33] * 3
    with pytest.raises(InputError, match="one QP"):
        vcfc.encode(rgb, layout="image", channel_qps=[30, 31, 32])
    with pytest.raises(InputError, match="8-bit"):
        vcfc.encode(rgb, layout="image", qp=30, bits=10)


@pytest.mark.parametrize("tamper, msg", [
    (lambda h: h["image"]["color"].update(format="gbrp"), "coded other than"),
    (lambda h: h["image"].update(height=0), "picture size"),
    (lambda h: h["image"].update(order="whc"), "shape, order or kind"),
    (lambda h: h.update(qps={"x": [30, 31, 30]}), "QP"),
    (lambda h: h["streams"][0].update(width=8), "one stream"),
])
def test_the_header_of_a_picture_is_validated(tamper, msg):
    c = container.read(vcfc.encode(np.zeros((16, 24, 3), np.uint8), layout="image", codec="x265", qp=30))
    tamper(c.header)
    with pytest.raises(FormatError, match=msg):
        vcfc.decode(container.write(c))


def test_a_picture_bank_gives_the_files_and_pictures_encode_gives(kodim):
    bank = make_bank(kodim, CodingSpec("x265", preset="ultrafast", layout="image"), workers=2)
    assert isinstance(bank, PictureBank)
    bank.ensure({30: None, 36: None})
    assert bank.stats()["qps_coded"] == [30, 36] and bank.q.elements == kodim.size
    direct = vcfc.encode(kodim, layout="image", codec="x265", preset="ultrafast", qp=30)
    assert bank.assemble(30) == direct and bank.assemble([30, 30, 30]) == direct
    assert np.array_equal(bank.reconstruct(36), vcfc.decode(bank.assemble(36)))
    assert bank.size(36) < bank.size(30) and bank.encodes == 2
    with pytest.raises(InputError, match="one QP"):
        bank.assemble([30, 36, 30])


# --------------------------------------------------------------------------- command line

def test_cli_codes_a_png_and_decodes_it_back(tmp_path, shared):
    png = shared / "data" / "kodak" / "kodim01.png"
    assert vcfc_cli("encode", str(png), str(tmp_path / "k.vcfc"), "--layout", "image", "--codec", "x265",
                    "--qp", "32").returncode == 0
    info = vcfc_cli("info", str(tmp_path / "k.vcfc"))
    assert "bits/pixel" in info.stdout and "512×768" in info.stdout
    assert vcfc_cli("decode", str(tmp_path / "k.vcfc"), str(tmp_path / "k.png")).returncode == 0
    original = np.asarray(Image.open(png).convert("RGB"))
    back = np.asarray(Image.open(tmp_path / "k.png"))
    assert back.shape == original.shape and psnr(back, original) > 27
    assert vcfc_cli("encode", str(png), str(tmp_path / "l.vcfc"), "--layout", "image", "--codec", "lossless").returncode == 0
    assert vcfc_cli("decode", str(tmp_path / "l.vcfc"), str(tmp_path / "l.png")).returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "l.png")), original)
    for codec, qp in (("av1", "32"), ("vvenc", "32"), ("jpeg", "20")):
        assert vcfc_cli("encode", str(png), str(tmp_path / f"{codec}.vcfc"), "--layout", "image", "--codec", codec,
                        "--qp", qp).returncode == 0
        assert vcfc_cli("decode", str(tmp_path / f"{codec}.vcfc"), str(tmp_path / f"{codec}.png")).returncode == 0
        assert psnr(np.asarray(Image.open(tmp_path / f"{codec}.png")), original) > 27, codec


def test_cli_pictures_and_features_do_not_mix(tmp_path):
    np.save(tmp_path / "f.npy", np.random.default_rng(0).random((4, 16, 16), dtype=np.float32))
    png = KODAK / "kodim01.jpg"
    r = vcfc_cli("encode", str(png), str(tmp_path / "a.vcfc"), "--layout", "frames", "--qp", "30")
    assert r.returncode == 2 and "--layout image" in r.stderr and not (tmp_path / "a.vcfc").exists()
    assert vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "f.vcfc"), "--qp", "30").returncode == 0
    r = vcfc_cli("decode", str(tmp_path / "f.vcfc"), str(tmp_path / "f.png"))
    assert r.returncode == 2 and "holds features" in r.stderr and not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("command, layer, extra, msg", [
    ("eval", "input", ["--qp", "30", "--allocation", "rdo"], "a picture has one QP"),
    ("eval", "input", ["--qp", "30", "--layout", "frames"], "--layout image"),
    ("eval", "fire3", ["--qp", "30", "--layout", "image"], "--layer input"),
    ("sensitivity", "input", ["--qp-base", "30", "--out", "unused"], "channel sensitivity is for features"),
])
def test_the_input_takes_only_what_a_picture_can_take(command, layer, extra, msg):
    r = vcfc_cli(command, "--model", "squeezenet1_1", "--layer", layer, "--data", str(KODAK), *extra)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
