"""vcfc: compress intermediate deep-network features with classic video codecs.

    import vcfc
    data = vcfc.encode(features, codec="x265", qp=32)      # bytes of a .vcfc file
    features2 = vcfc.decode(data)                          # same kind, dtype and shape
    vcfc.inspect(data)["bpfe"]                             # honest rate
"""

from .api import decode, decode_codes, decode_frames, encode, inspect
from .spec import CodingSpec
from .errors import CodecError, EncoderMissingError, FormatError, InputError, VcfcError
from .version import __version__

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
