"""Annex-B byte streams: split into NAL units, drop repeated parameter sets."""

from __future__ import annotations


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
