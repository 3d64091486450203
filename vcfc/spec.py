"""`CodingSpec`: how features are coded, the one description shared by every layer.

The API (`vcfc.encode`), the sensitivity sweep, per-image allocation, evaluation and experiment
grids all take a CodingSpec; its choices come from the registries (codecs in `vcfc.codecs`,
quantizers and layouts in `packing`), so a new codec, quantizer or layout is accepted everywhere
once registered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from packing.layouts import LAYOUTS
from packing.quantizers import BIT_DEPTHS, QUANTIZERS
from packing.reorder import REORDERS

from .codecs import CODECS, Codec, get_codec
from .errors import InputError


def choose(kind: str, value: Any, choices: Any) -> None:
    """InputError naming the choices unless ``value`` is one of them."""
    if value not in choices:
        raise InputError(f"unknown {kind} {value!r}; choose from {', '.join(map(str, choices))}")


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
        choose("codec", self.codec, CODECS)
        choose("quantizer", self.quant, QUANTIZERS)
        choose("layout", self.layout, LAYOUTS)
        choose("reorder", self.reorder, REORDERS)
        cls = CODECS[self.codec]
        if isinstance(self.bits, bool) or self.bits not in BIT_DEPTHS or self.bits not in cls.bit_depths:
            raise InputError(f"codec {self.codec} supports {'/'.join(map(str, cls.bit_depths))}-bit, not {self.bits!r}")
        preset = cls.default_preset if self.preset is None else self.preset
        if preset not in cls.presets:
            raise InputError(f"codec {self.codec} has no preset {preset!r}; choose from {', '.join(cls.presets)}")
        return replace(self, preset=preset)

    def backend(self, ffmpeg: str | None = None, threads: int | None = None) -> Codec:
        return get_codec(self.codec, ffmpeg=ffmpeg, threads=threads)

    @property
    def qp_limits(self) -> tuple[int, int]:
        choose("codec", self.codec, CODECS)
        lo, hi = CODECS[self.codec].qp_range
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
        """Short id of the spec, e.g. ``x265/fast/minmax/8b/frames``."""
        parts = [self.codec, self.preset or "default", self.quant, f"{self.bits}b", self.layout]
        if self.reorder != "none":
            parts.append(self.reorder)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
