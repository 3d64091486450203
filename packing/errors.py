"""Errors raised by packing (kept free of vcfc imports: vcfc imports packing, not the reverse)."""


class PackingError(ValueError):
    """Unusable input to a quantizer or layout (NaN/Inf, wrong shape, bad option)."""
