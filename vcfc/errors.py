"""Exception types of vcfc. Every user-facing failure is one of these, with a one-line message."""


class VcfcError(Exception):
    """Base class of every error vcfc raises on purpose."""


class InputError(VcfcError, ValueError):
    """The features (or arguments) given to vcfc are unusable: wrong shape, NaN/Inf, bad option."""


class FormatError(VcfcError):
    """A .vcfc file is truncated, corrupted, foreign or of an unsupported version."""


class CodecError(VcfcError):
    """ffmpeg or an encoder/decoder failed."""


class EncoderMissingError(CodecError):
    """The ffmpeg build in use lacks a needed encoder or decoder."""
