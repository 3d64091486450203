"""Annex-B byte streams (HEVC, VVC): split into NAL units and pictures, drop repeated parameter sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CodecError


def nal_chunks(annexb: bytes) -> list[bytes]:
    """The stream cut before every start code; each chunk is start code + NAL unit (+ padding zeros)."""
    starts = []
    i = annexb.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i - 1 if i > 0 and annexb[i - 1] == 0 else i)  # include a 4-byte code's zero
        i = annexb.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return []
    return [annexb[s:e] for s, e in zip(starts, starts[1:] + [len(annexb)])]


def split_nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream, start codes and trailing zero bytes removed."""
    out = []
    for chunk in nal_chunks(annexb):
        nal = chunk[chunk.find(b"\x00\x00\x01") + 3 :].rstrip(b"\x00")
        if nal:
            out.append(nal)
    return out


def hevc_nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def drop_repeated_hevc_parameter_sets(annexb: bytes) -> bytes:
    """Remove VPS/SPS/PPS NAL units byte-identical to ones sent earlier in the stream.

    ffmpeg's libx265 wrapper forces repeat-headers, so every IDR carries ~70 bytes of identical
    VPS/SPS/PPS; a decoder needs them once (the payload is always decoded from its start).
    """
    seen: set[bytes] = set()
    out = bytearray()
    for chunk in nal_chunks(annexb):
        nal = chunk[chunk.find(b"\x00\x00\x01") + 3 :].rstrip(b"\x00")
        if nal and hevc_nal_type(nal) in (32, 33, 34):
            if nal in seen:
                continue
            seen.add(nal)
        out += chunk
    return bytes(out)


@dataclass(frozen=True)
class NalSyntax:
    """What split_pictures needs to know about a codec's NAL unit headers."""

    type_of: Callable[[bytes], int]
    vcl_below: int  # NAL types under this are coded slices
    parameter_sets: frozenset[int]  # shared by all pictures: they form the prefix
    au_starts: frozenset[int]  # non-VCL types that begin a new picture (AUD, picture header)

    def first_slice(self, nal: bytes) -> bool:
        # HEVC first_slice_segment_in_pic_flag / VVC sh_picture_header_in_slice_header_flag:
        # the first bit after the 2-byte NAL header.
        return len(nal) > 2 and bool(nal[2] & 0x80)


HEVC = NalSyntax(hevc_nal_type, 32, frozenset({32, 33, 34}), frozenset({35}))  # VPS SPS PPS; AUD
VVC = NalSyntax(lambda nal: nal[1] >> 3 if len(nal) > 1 else -1, 12,
                frozenset({12, 13, 14, 15, 16}), frozenset({19, 20}))  # OPI DCI VPS SPS PPS; PH AUD


def split_pictures(annexb: bytes, syntax: NalSyntax) -> tuple[bytes, list[bytes]]:
    """(parameter sets before the first picture, one chunk per picture) of an Annex-B stream.

    Other non-VCL units (APS, SEI, picture headers) travel with the picture that follows them;
    trailing ones with the last picture. Concatenating prefix and chunks gives ``annexb`` back.
    A parameter set after the first picture that differs from the prefix's raises CodecError:
    pictures would then depend on their position.
    """
    chunks = nal_chunks(annexb)
    prefix = bytearray(annexb[: len(annexb) - sum(map(len, chunks))])  # bytes before the first start code
    shared: set[bytes] = set()
    frames: list[bytearray] = []
    pending, new_au = bytearray(), False
    for chunk in chunks:
        nal = chunk[chunk.find(b"\x00\x00\x01") + 3 :].rstrip(b"\x00")
        t = syntax.type_of(nal) if nal else -1
        if t in syntax.parameter_sets:
            if not frames:
                if pending:  # prefix + pictures must give the stream back byte for byte
                    raise CodecError("parameter set after other NAL units before the first picture")
                prefix += chunk
                shared.add(nal)
                continue
            if nal not in shared:
                raise CodecError("parameter set changes after the first picture; pictures are not separable")
            pending += chunk  # an identical repeat: harmless wherever it travels
        elif 0 <= t < syntax.vcl_below:
            if not frames or new_au or syntax.first_slice(nal):
                frames.append(bytearray())
            frames[-1] += pending + chunk
            pending, new_au = bytearray(), False
        else:
            pending += chunk
            new_au |= t in syntax.au_starts
    if pending:
        if not frames:
            raise CodecError("stream holds no coded picture")
        frames[-1] += pending
    return bytes(prefix), [bytes(f) for f in frames]
