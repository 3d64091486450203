"""FrameBank: one image's features coded at several QPs, picture by picture, so that a file with
ANY per-channel QP vector is assembled from pictures already coded, without the encoder.
(PictureBank: the same for one RGB picture, layout image, whose QP vector is one QP.)

With layout "frames" every channel is its own all-intra picture, independent of the others: the
picture of channel c at QP q is the same whichever other channels share its stream. The bank
codes a channel at a QP once (`ensure`), keeps its coded bytes and its decoded codes, and then:

  assemble(qps)     the bytes of a real .vcfc file for that QP vector (each stream = the
                    codec's shared prefix + the channels' pictures, via the backend's
                    join_frames); vcfc.decode reads it like any other file
  reconstruct(qps)  what decoding that file gives (from the kept codes, no decoder run)
  size(qps)         len(assemble(qps)): the honest rate, every byte counted

Assembling all channels at one QP from one encode gives exactly the bytes `vcfc.encode` gives
(tests/test_bank.py), so a uniform encode and the candidates of a per-image search share work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcfc.packing.layouts import pack, plan_streams, unpack
from vcfc.packing.quantizers import dequantize

from .coding import SKIP, Quantized, build_container, fill_code, quantize_features, resolve_qps, stream_jobs
from .errors import InputError
from .features import from_arrays
from .ffmpeg import children_stopped_on_interrupt
from .picture import IMAGE_LAYOUT, NAME, from_rgb, picture_file, picture_qp, to_rgb
from .spec import CodingSpec

Channel = tuple[str, int]
QPs = Mapping[str, Sequence[int]]


class FrameBank:
    """Pictures of one image's channels, coded at the QPs asked so far (layout frames)."""

    def __init__(self, features: Any, spec: CodingSpec, *, ffmpeg: str | None = None, threads: int | None = None,
                 input_size: tuple[int, int] | None = None, workers: int = 1) -> None:
        spec = spec.checked()
        if spec.layout != "frames":
            raise InputError(f"a frame bank needs layout frames (one picture per channel), not {spec.layout}")
        self.spec = spec
        self.backend = spec.backend(ffmpeg, threads)
        if not self.backend.frames_separable:
            raise InputError(f"codec {spec.codec}: its pictures cannot be re-assembled into new files")
        t0 = time.perf_counter()
        self.q: Quantized = quantize_features(features, spec)
        self.quant_s = time.perf_counter() - t0  # not yet charged to a row: every QP codes the same codes
        self.pack_s = 0.0                        # packing pictures (inside the coding of each QP)
        self.input_size = input_size
        self.workers = max(1, workers)
        self.pictures: dict[tuple[int, str, int], bytes] = {}
        self.prefix: dict[tuple[int, int, int], bytes] = {}  # (qp, height, width) -> shared prefix
        self.codes: dict[int, dict[str, np.ndarray]] = {}     # qp -> decoded codes (filled channels)
        self.encodes = 0          # encoder runs so far
        self.encoded_pictures = 0
        self.encode_s = 0.0       # seconds in the encoder and decoder

    # -- filling -------------------------------------------------------------------------------
    @property
    def channels(self) -> list[Channel]:
        return [(name, int(c)) for name in self.q.shapes for c in self.q.order[name]]

    def has(self, qp: int, channels: Iterable[Channel] | None = None) -> bool:
        return all((qp, n, c) in self.pictures for n, c in (self.channels if channels is None else channels))

    def ensure(self, needs: Mapping[int, Iterable[Channel] | None]) -> None:
        """Code what is missing: for each QP the given channels (None: all); QPs run in parallel."""
        todo = []
        for qp, channels in needs.items():
            self.spec.check_qp(int(qp))
            missing = [ch for ch in (self.channels if channels is None else channels) if (qp, *ch) not in self.pictures]
            if missing:
                todo.extend((int(qp), plan) for plan in plan_streams(self.q.shapes, missing, "frames", self.backend.align))
        if not todo:
            return
        t0 = time.perf_counter()
        if self.workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as pool, children_stopped_on_interrupt():
                done = list(pool.map(lambda job: self._code(*job), todo))
        else:
            done = [self._code(*job) for job in todo]
        for qp, plan, prefix, pictures, decoded in done:
            self.prefix.setdefault((qp, plan.height, plan.width), prefix)
            codes = self.codes.setdefault(qp, {n: np.zeros(s, np.uint16) for n, s in self.q.shapes.items()})
            unpack(decoded, plan, codes)
            for p in plan.placements:
                self.pictures[(qp, p.name, p.c)] = pictures[p.frame]
        self.encodes += len(todo)
        self.encoded_pictures += sum(plan.n_frames for _, plan in todo)
        self.encode_s += time.perf_counter() - t0

    def _code(self, qp: int, plan: Any) -> tuple[int, Any, bytes, list[bytes], np.ndarray]:
        b, s = self.backend, self.spec
        t0 = time.perf_counter()
        frames = pack(self.q.codes, plan)
        self.pack_s += time.perf_counter() - t0  # float += from pool threads: a timing, not an invariant
        payload = b.encode(frames, s.bits, qp, s.preset)
        prefix, pictures = b.split_frames(payload, plan.n_frames)
        return qp, plan, prefix, pictures, b.decode(payload, plan.n_frames, plan.height, plan.width, s.bits)

    # -- using -----------------------------------------------------------------------------------
    def qp_vector(self, qps: int | QPs | Sequence[int]) -> dict[str, np.ndarray]:
        """One QP per channel (a uniform int, a flat sequence, or name -> sequence), checked."""
        if isinstance(qps, (int, np.integer)):
            return resolve_qps(self.q.shapes, int(qps), None, self.spec)
        return resolve_qps(self.q.shapes, None, qps, self.spec)

    def _needs(self, qps: Mapping[str, np.ndarray]) -> dict[int, list[Channel]]:
        needs: dict[int, list[Channel]] = {}
        for name, q in qps.items():
            for c, v in enumerate(q):
                if int(v) != SKIP:  # a skipped channel needs no picture
                    needs.setdefault(int(v), []).append((name, c))
        return needs

    def assemble(self, qps: int | QPs | Sequence[int]) -> bytes:
        """A real .vcfc file with these per-channel QPs, made of banked pictures (coding what is missing)."""
        qv = self.qp_vector(qps)
        self.ensure(self._needs(qv))
        jobs = stream_jobs(self.q.shapes, self.q.order, qv, "frames", self.backend.align)
        payloads = []
        for qp, plan in jobs:
            ordered = sorted(plan.placements, key=lambda p: p.frame)
            payloads.append(self.backend.join_frames(self.prefix[(qp, plan.height, plan.width)],
                                                     [self.pictures[(qp, p.name, p.c)] for p in ordered]))
        return build_container(self.q, self.spec, self.backend.align, qv, jobs, payloads, self.input_size)

    def size(self, qps: int | QPs | Sequence[int]) -> int:
        return len(self.assemble(qps))

    def reconstruct_codes(self, qps: int | QPs | Sequence[int]) -> dict[str, np.ndarray]:
        qv = self.qp_vector(qps)
        self.ensure(self._needs(qv))
        out = {}
        for name, q in qv.items():
            out[name] = np.stack([self.skipped(name, c) if int(v) == SKIP else self.codes[int(v)][name][c]
                                  for c, v in enumerate(q)])
        return out

    def skipped(self, name: str, c: int) -> np.ndarray:
        """Channel c of tensor ``name`` as the decoder restores it when skipped (its fill code)."""
        return np.full(self.q.shapes[name][1:], fill_code(self.q.codes[name][c]), np.uint16)

    def reconstruct(self, qps: int | QPs | Sequence[int]) -> Any:
        """The features decoding assemble(qps) gives: same kind, dtype and shape as the input."""
        codes = self.reconstruct_codes(qps)
        arrays = {name: dequantize(codes[name], self.q.params[name]) for name in codes}
        return from_arrays(arrays, self.q.metas, self.q.single)

    def stats(self) -> dict[str, Any]:
        return {"encodes": self.encodes, "encoded_pictures": self.encoded_pictures, "encode_s": self.encode_s,
                "qps_coded": sorted(self.codes)}



@dataclass(frozen=True)
class PictureCodes:
    """What searches read of a banked picture (the `q` of a FrameBank): one tensor of 3·H·W."""
    shapes: dict[str, tuple[int, int, int]]
    single: bool = True

    @property
    def elements(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes.values())


class PictureBank:
    """One RGB picture (layout image) coded at the QPs asked so far: the frame bank of a picture.

    A picture has one QP, so a "QP vector" is uniform (an int, or three equal values); the
    per-image searches that only move the whole picture's QP (rdo-uniform, λ calibration) use
    it exactly as they use a FrameBank.
    """

    def __init__(self, image: Any, spec: CodingSpec, *, ffmpeg: str | None = None, threads: int | None = None,
                 input_size: tuple[int, int] | None = None, workers: int = 1) -> None:
        self.spec = spec.checked()
        if self.spec.layout != IMAGE_LAYOUT:
            raise InputError(f"a picture bank codes layout image, not {self.spec.layout}")
        self.backend = self.spec.backend(ffmpeg, threads)
        self.rgb, self.meta = to_rgb(image)
        h, w, _ = self.rgb.shape
        self.q = PictureCodes({NAME: (3, h, w)})
        self.workers = max(1, workers)
        self.payloads: dict[int, bytes] = {}
        self.decoded: dict[int, np.ndarray] = {}
        self.encodes = 0
        self.encoded_pictures = 0
        self.encode_s = 0.0
        self.quant_s = self.pack_s = 0.0  # a picture is its own codes: the colour conversion is in encode

    def _qp(self, qps: int | QPs | Sequence[int]) -> int:
        if isinstance(qps, (int, np.integer)):
            return picture_qp(self.spec, int(qps), None)
        return picture_qp(self.spec, None, dict(qps) if isinstance(qps, Mapping) else list(qps))

    def ensure(self, needs: Mapping[int, Iterable[Channel] | None]) -> None:
        """Code the picture at every QP of ``needs`` not coded yet (in parallel)."""
        todo = sorted({q for q in (self._qp(int(q)) for q in needs) if q not in self.payloads})  # lossless: all are 0
        if not todo:
            return
        t0 = time.perf_counter()

        def code(qp: int) -> tuple[int, bytes, np.ndarray]:
            payload = self.backend.encode_image(self.rgb, qp, self.spec.preset)
            return qp, payload, self.backend.decode_image(payload, *self.rgb.shape[:2])

        if self.workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as pool, children_stopped_on_interrupt():
                done = list(pool.map(code, todo))
        else:
            done = [code(q) for q in todo]
        for qp, payload, rgb in done:
            self.payloads[qp], self.decoded[qp] = payload, rgb
        self.encodes += len(todo)
        self.encoded_pictures += len(todo)
        self.encode_s += time.perf_counter() - t0

    def assemble(self, qps: int | QPs | Sequence[int]) -> bytes:
        qp = self._qp(qps)
        self.ensure({qp: None})
        return picture_file(self.rgb.shape[:2], self.meta, self.spec, self.backend, qp, self.payloads[qp])

    def size(self, qps: int | QPs | Sequence[int]) -> int:
        return len(self.assemble(qps))

    def reconstruct(self, qps: int | QPs | Sequence[int]) -> Any:
        """The picture decoding assemble(qps) gives, in the shape and kind of the input."""
        qp = self._qp(qps)
        self.ensure({qp: None})
        return from_rgb(self.decoded[qp], self.meta)

    def stats(self) -> dict[str, Any]:
        return {"encodes": self.encodes, "encoded_pictures": self.encoded_pictures, "encode_s": self.encode_s,
                "qps_coded": sorted(self.payloads)}


def make_bank(features: Any, spec: CodingSpec, **kwargs: Any) -> FrameBank | PictureBank:
    """The bank a spec codes with: a PictureBank for layout image, else a FrameBank (layout frames)."""
    return (PictureBank if spec.layout == IMAGE_LAYOUT else FrameBank)(features, spec, **kwargs)
