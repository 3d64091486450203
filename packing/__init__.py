"""vcfc.packing: quantize features to integer codes and lay them out as video frames (pure numpy).

Imports only the stdlib-only base of vcfc (errors, registry); never the codec core, the layers
above it or torch (the core imports packing, not the reverse).
"""

from .errors import PackingError
from .layouts import (
    IMAGE_LAYOUT,
    LAYOUTS,
    FramePlan,
    Placement,
    feature_layouts,
    occupied_fraction,
    pack,
    plan_streams,
    unpack,
)
from .quantizers import BIT_DEPTHS, QUANTIZERS, QuantParams, dequantize, quant_step, quantize
from .reorder import REORDERS, similarity_order

__all__ = [
    "PackingError",
    "QUANTIZERS",
    "BIT_DEPTHS",
    "QuantParams",
    "quantize",
    "dequantize",
    "quant_step",
    "LAYOUTS",
    "IMAGE_LAYOUT",
    "feature_layouts",
    "Placement",
    "FramePlan",
    "plan_streams",
    "pack",
    "unpack",
    "occupied_fraction",
    "similarity_order",
    "REORDERS",
]
