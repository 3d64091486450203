"""The .vcfc container: a self-describing file that decodes with nothing but itself.

Layout (all integers little-endian):

    b"VCFC"            magic
    u8                 format version
    u32 + bytes        zlib-compressed JSON header
    u32 + bytes        blob: float32 side arrays (quantizer parameters), referenced from the header
    bytes              codec payloads, one per stream, lengths in the header
    u32                CRC32 of every byte before it

Everything that is not payload is side information and is reported as such.
Parsing never trusts a length before checking it against the bytes that are really there,
so truncated, corrupted or foreign input raises FormatError, never a crash or a huge allocation.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatError

MAGIC = b"VCFC"
VERSION = 1
_U32 = struct.Struct("<I")
# Guards against hostile headers: nothing vcfc writes comes near these.
MAX_HEADER_BYTES = 64 << 20
MAX_ELEMENTS = 1 << 34


@dataclass
class Container:
    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # float32 side arrays by key
    payloads: list[bytes] = field(default_factory=list)


def write(container: Container) -> bytes:
    """Serialise a container; array references and payload lengths are filled in here."""
    header = dict(container.header)
    blob_parts: list[bytes] = []
    refs: dict[str, list[int]] = {}
    offset = 0
    for key, arr in container.arrays.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        refs[key] = [offset, int(np.asarray(arr).size)]
        blob_parts.append(data)
        offset += len(data)
    header["arrays"] = refs
    header["payload_lengths"] = [len(p) for p in container.payloads]
    head = zlib.compress(json.dumps(header, separators=(",", ":"), sort_keys=True).encode(), 9)
    blob = b"".join(blob_parts)
    body = b"".join(
        [MAGIC, bytes([VERSION]), _U32.pack(len(head)), head, _U32.pack(len(blob)), blob, *container.payloads]
    )
    return body + _U32.pack(zlib.crc32(body))


def side_info_bytes(data: bytes, header: dict[str, Any]) -> int:
    """Every byte of the file that is not codec payload."""
    return len(data) - sum(header["payload_lengths"])


def read(data: bytes) -> Container:
    """Parse and validate a .vcfc file; raise FormatError with a one-line reason on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .vcfc file (bad magic)")
    if len(data) < len(MAGIC) + 1 + 4 + 4 + 4:
        raise FormatError(f"truncated .vcfc file ({len(data)} bytes)")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise FormatError(f"unsupported .vcfc version {version} (this vcfc reads version {VERSION})")
    (crc,) = _U32.unpack_from(data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise FormatError("CRC mismatch: the file is truncated or corrupted")

    pos = len(MAGIC) + 1
    head, pos = _take(data, pos, "header")
    if len(head) > MAX_HEADER_BYTES:
        raise FormatError("header too large")
    try:
        header = json.loads(zlib.decompress(head, bufsize=1 << 16))
    except (zlib.error, ValueError, RecursionError) as exc:
        raise FormatError(f"unreadable header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise FormatError("header is not an object")
    blob, pos = _take(data, pos, "side-info blob")

    arrays = _read_arrays(header.get("arrays"), blob)
    lengths = header.get("payload_lengths")
    if not isinstance(lengths, list) or not all(_is_nonneg_int(n) for n in lengths):
        raise FormatError("bad payload length table")
    end = len(data) - 4
    if pos + sum(lengths) != end:
        raise FormatError(f"payload lengths ({sum(lengths)} bytes) do not match the file ({end - pos} bytes)")
    payloads = []
    for n in lengths:
        payloads.append(data[pos : pos + n])
        pos += n
    return Container(header=header, arrays=arrays, payloads=payloads)


def _take(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if pos + 4 > len(data) - 4:
        raise FormatError(f"truncated before the {what}")
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    if pos + n > len(data) - 4:
        raise FormatError(f"{what} length {n} runs past the end of the file")
    return data[pos : pos + n], pos + n


def _read_arrays(refs: Any, blob: bytes) -> dict[str, np.ndarray]:
    if not isinstance(refs, dict):
        raise FormatError("bad side-array table")
    arrays = {}
    for key, ref in refs.items():
        if not (isinstance(ref, list) and len(ref) == 2 and all(_is_nonneg_int(v) for v in ref)):
            raise FormatError(f"bad side-array reference for {key!r}")
        offset, count = ref
        if offset % 4 or offset + 4 * count > len(blob):
            raise FormatError(f"side array {key!r} lies outside the blob")
        arrays[key] = np.frombuffer(blob, dtype="<f4", count=count, offset=offset).astype(np.float32)
    return arrays


def _is_nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << 40)
