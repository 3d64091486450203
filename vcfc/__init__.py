"""vcfc: compress intermediate deep-network features with classic video codecs.

    import vcfc
    data = vcfc.encode(features, codec="x265", qp=32)      # bytes of a .vcfc file
    features2 = vcfc.decode(data)                          # same kind, dtype and shape
    vcfc.inspect(data)["bpfe"]                             # honest rate

One import package, in layers (docs/design.md): vcfc.packing → vcfc (the codec core) →
vcfc.results / vcfc.sensitivity → vcfc.runners (splits, datasets, experiments, the CLI).
The names below load on first use (PEP 562), so `import vcfc.packing` or the CLI's start-up
does not pull in PyAV, ffmpeg-python or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CodecError, EncoderMissingError, FormatError, InputError, VcfcError
from .version import __version__

_LAZY = {
    "encode": "api", "decode": "api", "decode_codes": "api", "decode_frames": "api", "inspect": "api",
    "CodingSpec": "spec",
}

if TYPE_CHECKING:
    from .api import decode, decode_codes, decode_frames, encode, inspect
    from .spec import CodingSpec

__all__ = [
    "encode",
    "decode",
    "decode_codes",
    "decode_frames",
    "CodingSpec",
    "inspect",
    "VcfcError",
    "InputError",
    "FormatError",
    "CodecError",
    "EncoderMissingError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
