"""`CodingSpec`: how features are coded, the one description shared by every layer.

The API (`vcfc.encode`), the sensitivity sweep, per-image allocation, evaluation and experiment
grids all take a CodingSpec; its choices come from the registries (codecs in `vcfc.codecs`,
quantizers, layouts and channel orders in `vcfc.packing`), so a new codec, quantizer or layout is
accepted everywhere once registered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from vcfc.packing.layouts import IMAGE_LAYOUT, LAYOUTS
from vcfc.packing.quantizers import BIT_DEPTHS, QUANTIZERS
from vcfc.packing.reorder import REORDERS

from .codecs import CODECS, Codec, get_codec
from .errors import InputError


@dataclass(frozen=True)
class CodingSpec:
    """Codec and its settings, quantizer and layout: everything but the QPs."""

    codec: str = "x265"
    quant: str = "minmax"
    bits: int = 8
    layout: str = "mosaic"
    preset: str | None = None  # None: the codec's default preset
    reorder: str = "none"

    def checked(self) -> CodingSpec:
        """This spec after validation against the registries, with the preset resolved."""
        cls = CODECS.get(self.codec)
        QUANTIZERS.get(self.quant)
        LAYOUTS.get(self.layout)
        REORDERS.get(self.reorder)
        cls.check_bits(self.bits)
        if self.layout == IMAGE_LAYOUT and self.bits != 8:
            raise InputError(f"layout image codes 8-bit RGB pictures, not {self.bits}-bit")
        if self.bits not in BIT_DEPTHS:  # a codec could claim a depth the quantizers lack
            raise InputError(f"the quantizers code {'/'.join(map(str, BIT_DEPTHS))}-bit, not {self.bits!r}")
        return replace(self, preset=cls.check_preset(self.preset))

    def backend(self, ffmpeg: str | None = None, threads: int | None = None) -> Codec:
        return get_codec(self.codec, ffmpeg=ffmpeg, threads=threads)

    @property
    def qp_limits(self) -> tuple[int, int]:
        lo, hi = CODECS.get(self.codec).qp_range
        return int(lo), int(hi)

    @property
    def uses_qp(self) -> bool:
        return bool(CODECS[self.codec].uses_qp)

    def check_qp(self, qp: int, what: str = "QP") -> int:
        """``qp`` as an int inside the codec's range, else InputError naming the range."""
        lo, hi = self.qp_limits
        if isinstance(qp, bool) or not isinstance(qp, int) or not lo <= qp <= hi:
            raise InputError(f"{what} {qp!r} is outside {self.codec}'s QP range {lo}..{hi}")
        return qp

    def label(self) -> str:
        """Short id of the spec, e.g. ``x265/fast/minmax/8b/frames`` (a picture: ``x265/fast/image``)."""
        if self.layout == IMAGE_LAYOUT:  # no quantizer: the pixels are the codes
            return "/".join([self.codec, self.preset or "default", self.layout])
        parts = [self.codec, self.preset or "default", self.quant, f"{self.bits}b", self.layout]
        if self.reorder != "none":
            parts.append(self.reorder)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
