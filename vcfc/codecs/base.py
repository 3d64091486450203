"""The Codec interface, the input checks every backend shares, and the ffmpeg-encoder template.

A codec codes two kinds of picture: gray frames of feature codes (``encode``/``decode``, what
every layout but ``image`` produces) and one RGB picture (``encode_image``/``decode_image``, the
``image`` layout: the network input coded the way image anchors are, in ``image_format``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vcfc.packing.color import COLOR_FORMATS, check_rgb, pad_to, rgb_to_yuv420, yuv420_to_rgb

from ..errors import CodecError, InputError
from ..ffmpeg import find_ffmpeg, library_version, require_encoder, run_ffmpeg
from .pyav import decode_planes, decode_video


class Codec:
    """One codec backend. Frames are (N, H, W) uint16 codes < 2**bits; payloads are opaque bytes.

    Class attributes describe the backend to the other layers (CLI choices, header validation,
    ``vcfc doctor``); instances carry the ffmpeg override and the thread budget.
    """

    name: str = ""
    description: str = ""
    encoder: str | None = None  # ffmpeg encoder name (None: coded in-process)
    decoder: str | None = None  # PyAV decoder name (None: decoded without libav)
    bit_depths: tuple[int, ...] = (8, 10)
    align: int = 8  # H and W must be multiples of this (packing pads to it)
    presets: tuple[str, ...] = ()
    default_preset: str = ""
    qp_range: tuple[int, int] = (0, 51)
    uses_qp: bool = True
    min_size: int = 1  # smaller frames are edge-padded to this before coding, cropped after
    frames_separable: bool = True  # split_frames/join_frames can re-assemble any subset of pictures
    version_pattern: str | None = None  # how the encoder logs its library version when opened
    probe_pix_fmt: str | None = None    # a pixel format it accepts, for that probe
    image_format: str = "yuv420p"  # how an RGB picture is coded (vcfc.packing.color.COLOR_FORMATS)
    image_align: int = 8  # picture sides are edge-padded to a multiple of this, cropped after decoding

    @classmethod
    def library_version(cls, ffmpeg_path: str) -> str | None:
        """The encoder library's version as this ffmpeg reports it (None if unknown)."""
        if cls.encoder is None or cls.version_pattern is None:
            return None
        return library_version(ffmpeg_path, cls.encoder, cls.version_pattern, cls.probe_pix_fmt)

    def __init__(self, ffmpeg: str | None = None, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
            raise InputError(f"codec {self.name}: threads must be a positive integer or None, got {threads!r}")
        self._ffmpeg_override = ffmpeg
        self.threads = None if threads is None else int(threads)

    @property
    def ffmpeg(self) -> str:
        # Resolved lazily: decoding runs in-process (PyAV / Pillow) and needs no ffmpeg binary.
        return find_ffmpeg(self._ffmpeg_override)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, threads={self.threads!r})"

    def coded_size(self, height: int, width: int) -> tuple[int, int]:
        return max(height, self.min_size), max(width, self.min_size)

    def pad_to_min(self, frames: np.ndarray) -> np.ndarray:
        _, h, w = frames.shape
        ch, cw = self.coded_size(h, w)
        if (ch, cw) == (h, w):
            return frames
        return np.pad(frames, ((0, 0), (0, ch - h), (0, cw - w)), mode="edge")

    # -- coding ---------------------------------------------------------------------------
    def encode(self, frames: np.ndarray, bits: int, qp: int, preset: str | None = None) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes, n: int, height: int, width: int, bits: int) -> np.ndarray:
        raise NotImplementedError

    # -- one RGB picture (layout image) ----------------------------------------------------
    def encode_image(self, rgb: np.ndarray, qp: int, preset: str | None = None) -> bytes:
        """The payload of one (H, W, 3) uint8 RGB picture coded at ``qp`` in ``image_format``."""
        raise CodecError(f"codec {self.name} cannot code pictures")

    def decode_image(self, payload: bytes, height: int, width: int) -> np.ndarray:
        """The (height, width, 3) uint8 RGB picture of an ``encode_image`` payload."""
        raise CodecError(f"codec {self.name} cannot decode pictures")

    @classmethod
    def image_size(cls, height: int, width: int) -> tuple[int, int]:
        """The coded size of a height × width picture (padded to ``image_align``)."""
        a = cls.image_align
        return -(-height // a) * a, -(-width // a) * a

    @classmethod
    def color(cls) -> dict[str, str]:
        """What the header says about how pictures are coded: format, matrix, range, chroma."""
        return {"format": cls.image_format, **COLOR_FORMATS.get(cls.image_format)}

    def check_qp(self, qp: int) -> None:
        if self.uses_qp:
            lo, hi = self.qp_range
            if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not lo <= qp <= hi:
                raise InputError(f"codec {self.name}: qp must be an integer in [{lo}, {hi}], got {qp!r}")

    # -- per-picture structure ------------------------------------------------------------
    def split_frames(self, payload: bytes, n: int) -> tuple[bytes, list[bytes]]:
        """(shared prefix, one bytes object per picture) of an ``n``-picture all-intra payload.

        ``join_frames(prefix, frames) == payload``, and any subset of ``frames`` in any order
        joined with ``prefix`` decodes to exactly those pictures of the full decode.
        """
        raise CodecError(f"codec {self.name}: payloads cannot be split into pictures")

    def join_frames(self, prefix: bytes, frames: list[bytes]) -> bytes:
        """The payload made of ``prefix`` and these pictures (inverse of split_frames)."""
        return bytes(prefix) + b"".join(frames)

    def frame_sizes(self, payload: bytes, n: int) -> np.ndarray:
        """Bytes per picture (float64, summing to len(payload)): its own bytes + an even share of the prefix."""
        prefix, frames = self.split_frames(payload, n)
        return np.array([len(f) for f in frames], np.float64) + len(prefix) / n

    def _check_count(self, frames: list[bytes], n: int) -> list[bytes]:
        if len(frames) != n:
            raise CodecError(f"{self.name} payload holds {len(frames)} pictures, expected {n}")
        return frames

    # -- checks ---------------------------------------------------------------------------
    @classmethod
    def check_preset(cls, preset: str | None) -> str:
        """``preset`` (None: the default) if this codec has it, else InputError naming its presets."""
        preset = cls.default_preset if preset is None else preset
        if preset not in cls.presets:
            raise InputError(f"codec {cls.name} has no preset {preset!r}; choose from {', '.join(cls.presets)}")
        return preset

    @classmethod
    def check_bits(cls, bits: int) -> None:
        if isinstance(bits, bool) or bits not in cls.bit_depths:
            raise InputError(f"codec {cls.name} supports {'/'.join(map(str, cls.bit_depths))}-bit, not {bits!r}")

    def check_encode_args(self, frames: np.ndarray, bits: int, qp: int, preset: str | None) -> str:
        """Validate everything encode() gets; return the preset to use."""
        self.check_bits(bits)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint16:
            got = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
            raise InputError(f"codec {self.name}: frames must be a uint16 numpy array, got {got}")
        if frames.ndim != 3 or 0 in frames.shape:
            raise InputError(f"codec {self.name}: frames must be a non-empty (N,H,W) array, got shape {frames.shape}")
        _, h, w = frames.shape
        if h % self.align or w % self.align:
            raise InputError(f"codec {self.name}: frame size {h}x{w} is not a multiple of {self.align}")
        if int(frames.max()) >= 1 << bits:
            raise InputError(f"codec {self.name}: frame values reach {int(frames.max())}, above {bits}-bit")
        self.check_qp(qp)
        return self.check_preset(preset)

    def check_decode_args(self, n: int, height: int, width: int, bits: int) -> None:
        self.check_bits(bits)
        for label, v in (("frame count", n), ("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise InputError(f"codec {self.name}: {label} must be a positive integer, got {v!r}")


class FfmpegCodec(Codec):
    """A video codec encoded by one ffmpeg process (raw frames on stdin, elementary stream on
    stdout) and decoded in-process by PyAV. Subclasses fill in the hooks below."""

    muxer: str = ""  # ffmpeg output format of the elementary stream

    def pix_fmt(self, bits: int) -> str:
        """The rawvideo pixel format fed to the encoder (and the one the decoder returns)."""
        raise NotImplementedError

    def raw_frames(self, frames: np.ndarray, bits: int) -> bytes:
        """The rawvideo bytes of (N,H,W) codes in ``pix_fmt(bits)``."""
        return frames.astype(np.uint8).tobytes() if bits == 8 else frames.astype("<u2").tobytes()

    def encoder_options(self, bits: int, qp: int, preset: str) -> dict[str, Any]:
        """ffmpeg output options (name without '-': value) that configure the encoder."""
        raise NotImplementedError

    def clean_stream(self, stream: bytes) -> bytes:
        """The payload made of the encoder's output (e.g. without repeated headers)."""
        return stream

    def packets(self, payload: bytes) -> list[bytes] | None:
        """Payload cut into decoder packets; None lets libav's parser cut it."""
        return None

    def from_luma(self, luma: np.ndarray, bits: int) -> np.ndarray:
        """Codes from decoded luma samples."""
        return luma

    def ffmpeg_args(self, n: int, height: int, width: int, bits: int, qp: int, preset: str,
                    pix_fmt: str | None = None, color: dict[str, Any] | None = None) -> list[str]:
        """ffmpeg arguments (after the binary and BASE_ARGS): rawvideo on stdin -> stream on stdout.
        ``pix_fmt``: the raw input's format (default: the gray one of ``bits``); ``color``: the
        samples' range and matrix, declared on the input AND the output: declared on the output
        only, ffmpeg would convert the samples (e.g. stretch "limited" to full range) before coding."""
        import ffmpeg as ffmpeg_python  # ffmpeg-python; imported here: ~35 ms that decoding never needs

        src = ffmpeg_python.input("pipe:", format="rawvideo", pix_fmt=pix_fmt or self.pix_fmt(bits),
                                  s=f"{width}x{height}", framerate=25, **(color or {}))
        out = src.output("pipe:", format=self.muxer, vcodec=self.encoder, **{"frames:v": n},
                         **self.encoder_options(bits, qp, preset), **(color or {}))
        return out.get_args()

    # -- one RGB picture ---------------------------------------------------------------------
    def image_pix_fmt(self) -> str:
        """The rawvideo format an RGB picture is fed in (and decoded to)."""
        return self.image_format

    def image_planes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The planes of an (aligned) RGB picture in ``image_pix_fmt`` order."""
        if self.image_format == "gbrp":
            return [rgb[..., 1], rgb[..., 2], rgb[..., 0]]  # ffmpeg's gbrp: G, B, R
        return list(rgb_to_yuv420(rgb))

    def raw_planes(self, planes: list[np.ndarray]) -> bytes:
        return b"".join(np.ascontiguousarray(p, np.uint8).tobytes() for p in planes)

    def rgb_of_planes(self, planes: list[np.ndarray]) -> np.ndarray:
        if self.image_format == "gbrp":
            g, b, r = (p.astype(np.uint8) for p in planes)
            return np.stack([r, g, b], axis=-1)
        return yuv420_to_rgb(*(p.astype(np.uint8) for p in planes))

    def encode_image(self, rgb: np.ndarray, qp: int, preset: str | None = None) -> bytes:
        preset = self.check_preset(preset)
        self.check_qp(qp)
        try:
            rgb = pad_to(check_rgb(rgb), self.image_align)
        except ValueError as exc:
            raise InputError(f"codec {self.name}: {exc}") from None
        path = self.ffmpeg
        require_encoder(path, self.encoder)
        h, w, _ = rgb.shape
        color = {"color_range": "pc", "colorspace": "rgb" if self.image_format == "gbrp" else "smpte170m"}
        args = self.ffmpeg_args(1, h, w, 8, qp, preset, pix_fmt=self.image_pix_fmt(), color=color)
        payload = self.clean_stream(run_ffmpeg(path, args, self.raw_planes(self.image_planes(rgb))))
        if not payload:
            raise CodecError(f"{self.encoder} returned an empty stream for a {h}x{w} picture")
        return payload

    def decode_image(self, payload: bytes, height: int, width: int) -> np.ndarray:
        ch, cw = self.image_size(height, width)
        planes = decode_planes(payload, self.packets(payload), self.decoder, ch, cw, self.image_pix_fmt(), self.threads)
        return self.rgb_of_planes(planes)[:height, :width]

    def encode(self, frames: np.ndarray, bits: int, qp: int, preset: str | None = None) -> bytes:
        preset = self.check_encode_args(frames, bits, qp, preset)
        path = self.ffmpeg
        require_encoder(path, self.encoder)
        frames = self.pad_to_min(frames)
        n, h, w = frames.shape
        payload = self.clean_stream(run_ffmpeg(path, self.ffmpeg_args(n, h, w, bits, qp, preset), self.raw_frames(frames, bits)))
        if self.frames_separable:  # an encoder can exit 0 having lost pictures: catch it here, not at decode
            try:
                self.split_frames(payload, n)
            except CodecError as exc:
                raise CodecError(f"{self.encoder} returned an incomplete stream: {exc}") from None
        return payload

    def decode(self, payload: bytes, n: int, height: int, width: int, bits: int) -> np.ndarray:
        self.check_decode_args(n, height, width, bits)
        ch, cw = self.coded_size(height, width)
        luma = decode_video(payload, self.packets(payload), self.decoder, n, ch, cw, self.pix_fmt(bits), self.threads)
        return self.from_luma(luma[:, :height, :width], bits)
