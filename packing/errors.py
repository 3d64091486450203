"""Errors raised by packing: an InputError (vcfc.errors is the stdlib-only base every layer may
import), so a bad quantizer or layout option reaches the user as the same one-line error."""

from vcfc.errors import InputError


class PackingError(InputError):
    """Unusable input to a quantizer or layout (NaN/Inf, wrong shape, bad option)."""
