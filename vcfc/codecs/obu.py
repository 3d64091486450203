"""AV1 low-overhead bitstreams (what ffmpeg's ``-f obu`` writes): OBUs and temporal units.

Every OBU must carry its size field (obu_has_size_field = 1), as libaom/ffmpeg write them; that
is what lets a stream be cut without parsing any header beyond the first one or two bytes.
"""

from __future__ import annotations

from ..errors import CodecError

OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2


def obus(data: bytes) -> list[tuple[int, bytes]]:
    """(obu_type, the whole OBU's bytes) of every OBU in ``data``; CodecError if malformed."""
    out, pos, end = [], 0, len(data)
    while pos < end:
        start, header = pos, data[pos]
        if header & 0x80 or not header & 0x02:  # forbidden bit set, or no size field
            raise CodecError(f"AV1 stream: byte {pos} does not start a sized OBU")
        pos += 2 if header & 0x04 else 1  # optional extension byte
        size = shift = 0
        while True:  # leb128 obu_size
            if pos >= end or shift > 49:
                raise CodecError("AV1 stream truncated inside an OBU header")
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        pos += size
        if pos > end:
            raise CodecError("AV1 stream truncated inside an OBU")
        out.append(((header >> 3) & 0x0F, bytes(data[start:pos])))
    return out


def temporal_units(data: bytes) -> list[bytes]:
    """The stream cut before every temporal delimiter; it must start with one."""
    units: list[bytearray] = []
    for kind, obu in obus(data):
        if kind == OBU_TEMPORAL_DELIMITER:
            units.append(bytearray())
        elif not units:
            raise CodecError("AV1 stream does not start with a temporal delimiter")
        units[-1] += obu
    return [bytes(u) for u in units]


def drop_repeated_sequence_headers(data: bytes) -> bytes:
    """Remove sequence header OBUs byte-identical to the first one.

    libaom repeats the ~12-byte sequence header before every key frame; a decoder reading the
    payload from its start needs it once.
    """
    out, first = bytearray(), None
    for kind, obu in obus(data):
        if kind == OBU_SEQUENCE_HEADER:
            if obu == first:
                continue
            first = first or obu
        out += obu
    return bytes(out)
