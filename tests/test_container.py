"""The .vcfc parser: truncated, corrupted, foreign and hostile files raise FormatError, nothing else."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vcfc
from tests.conftest import feature_like
from vcfc import container

X = feature_like(4, 8, 8, seed=2)
VALID = vcfc.encode(X, codec="lossless", quant="minmax-channel", bits=10, input_size=(32, 32))
FPN_VALID = vcfc.encode({"p2": feature_like(2, 8, 8), "p3": feature_like(2, 4, 4)}, codec="lossless", reorder="similarity")


def _decode_or_format_error(data: bytes) -> None:
    """Either a FormatError, or a decode whose shapes match what inspect promises."""
    try:
        info = vcfc.inspect(data)
        out = vcfc.decode(data)
    except vcfc.FormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    shapes = info["shapes"]
    arrays = out if isinstance(out, dict) else {"x": out}
    assert {k: list(v.shape) for k, v in arrays.items()} == shapes


def test_valid_file_parses():
    c = container.read(VALID)
    assert c.header["codec"]["name"] == "lossless" and len(c.payloads) == 1


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 5, 9, 20, len(VALID) // 2, len(VALID) - 5, len(VALID) - 1])
def test_truncated_file_is_format_error(cut):
    with pytest.raises(vcfc.FormatError):
        vcfc.decode(VALID[:cut])


@pytest.mark.parametrize("data,match", [
    (b"", "bad magic"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "bad magic"),
    (b"VCFC", "truncated"),
    (b"VCFC\x07" + bytes(20), "unsupported .vcfc version 7"),
    (VALID + b"extra", "CRC"),
])
def test_foreign_or_damaged_files(data, match):
    with pytest.raises(vcfc.FormatError, match=match):
        vcfc.decode(data)


def test_non_bytes_is_format_error():
    with pytest.raises(vcfc.FormatError):
        vcfc.inspect("VCFC")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(0, len(VALID) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_caught(pos, bit):
    data = bytearray(VALID)
    data[pos] ^= 1 << bit
    with pytest.raises(vcfc.FormatError):
        vcfc.decode(bytes(data))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(blob):
    _decode_or_format_error(blob)
    _decode_or_format_error(b"VCFC\x01" + blob)


def _resign(header: dict, base: bytes = VALID) -> bytes:
    """A file whose CRC is valid but whose header was edited: tests the header validation itself."""
    c = container.read(base)
    h = dict(header)
    for k in ("arrays", "payload_lengths"):
        h.pop(k, None)
    return container.write(container.Container(header=h, arrays=c.arrays, payloads=c.payloads))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([VALID, FPN_VALID]), data=st.data())
def test_hostile_headers_with_valid_crc(base, data):
    header = json.loads(json.dumps(container.read(base).header))
    # Replace one field somewhere in the header tree by arbitrary JSON.
    node = header
    path = []
    while True:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        path.append(key)
        child = node[key]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(JSONISH)
        break
    _decode_or_format_error(_resign(header, base))


@pytest.mark.parametrize("edit,match", [
    (lambda h: h["tensors"][0].update(chw=[4, 8, 9]), "does not match"),
    (lambda h: h["tensors"][0].update(chw=[4, 1 << 19, 1 << 19], shape=[4, 1 << 19, 1 << 19]), "implausibly large"),
    (lambda h: h["qps"].update(x=[30, 30]), "QP list"),
    (lambda h: h["codec"].update(name="h264"), "unknown codec"),
    (lambda h: h.update(layout="spiral"), "unknown layout"),
    (lambda h: h["streams"][0].update(width=10**6), "stream table"),
    (lambda h: h.update(order={"x": [0, 0, 1, 2]}), "permutation"),
    (lambda h: h["tensors"][0]["quant"].update(arrays=["lo", "nope"]), "missing side array"),
])
def test_inconsistent_headers_are_named(edit, match):
    header = json.loads(json.dumps(container.read(VALID).header))
    edit(header)
    with pytest.raises(vcfc.FormatError, match=match):
        vcfc.decode(_resign(header))


def test_side_array_out_of_blob():
    c = container.read(VALID)
    h = dict(c.header)
    h.pop("payload_lengths")
    head = zlib.compress(json.dumps(dict(h, arrays={"x/lo": [0, 10**6]}, payload_lengths=[len(c.payloads[0])])).encode())
    blob = b"".join(np.asarray(a, "<f4").tobytes() for a in c.arrays.values())
    body = b"VCFC\x01" + len(head).to_bytes(4, "little") + head + len(blob).to_bytes(4, "little") + blob + c.payloads[0]
    with pytest.raises(vcfc.FormatError, match="outside the blob"):
        vcfc.decode(body + zlib.crc32(body).to_bytes(4, "little"))
