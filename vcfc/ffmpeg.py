"""Locate ffmpeg, report what it can code, and run it over pipes (never through a shell)."""

from __future__ import annotations

import functools
import os
import re
import contextlib
import subprocess
import threading
from typing import Any

from .errors import CodecError, EncoderMissingError

ENV_VAR = "VCFC_FFMPEG"
BASE_ARGS = ("-hide_banner", "-loglevel", "error", "-nostdin")
# What vcfc cares about; capabilities() reports these names (True/False) and nothing else.
ENCODERS = ("libx265", "libvvenc", "mjpeg", "ffv1")
DECODERS = ("hevc", "vvc", "mjpeg")
HOW_TO_FIX = "install an ffmpeg built with it and point vcfc at it with --ffmpeg PATH or VCFC_FFMPEG"


def find_ffmpeg(override: str | None = None) -> str:
    """The ffmpeg to use: ``override``, else ``$VCFC_FFMPEG``, else imageio-ffmpeg's bundled binary."""
    if override:
        return _check_exe(override, "--ffmpeg")
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_exe(env, ENV_VAR)
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError when it has no binary
        raise CodecError(f"no ffmpeg found ({exc}); pass --ffmpeg PATH or set {ENV_VAR}") from None
    return _check_exe(exe, "imageio-ffmpeg")


def _check_exe(path: str, source: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise CodecError(f"ffmpeg {path!r} (from {source}) does not exist or is not executable")
    return path


def run_ffmpeg(path: str, args: list[str], data: bytes | None = None, *, timeout: float | None = None) -> bytes:
    """Run ``path`` with ``BASE_ARGS + args``, feeding ``data`` on stdin; return stdout.

    Raises CodecError naming the last meaningful stderr line on a non-zero exit.
    """
    cmd = [path, *BASE_ARGS, *args]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CodecError(f"cannot run ffmpeg {path!r}: {exc.strerror or exc}") from None
    # Frames are tens of MB: feed them from a thread in large writes through a widened pipe
    # (communicate() would write 4 KiB per poll, ~6000 round trips for an FPN mosaic).
    _widen_pipe(proc.stdin)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for t in readers:
        t.start()
    try:
        if data:
            proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:  # ffmpeg exited early; its stderr says why
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CodecError(f"ffmpeg {path!r} did not finish within {timeout:g} s") from None
    for t in readers:
        t.join()
    if proc.returncode != 0:
        raise CodecError(f"ffmpeg failed (exit {proc.returncode}): {last_error_line(out.get('stderr', b''))}")
    return out.get("stdout", b"")


def _widen_pipe(f) -> None:
    try:
        import fcntl

        fcntl.fcntl(f.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError, ValueError):
        pass  # not Linux, or the system limit is lower: the default pipe still works


# ffmpeg follows the real cause with a cascade of generic lines; skip those.
_GENERIC = (
    "conversion failed", "exiting with exit code", "error while opening encoder", "terminating thread",
    "task finished with error code", "could not open encoder before eof", "nothing was written into output",
    "error sending frames to consumers", "error flushing encoder", "error while filtering",
)
_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")


def last_error_line(stderr: bytes) -> str:
    """The last stderr line that says something, without ffmpeg's '[ctx @ 0x..]' prefixes."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not any(g in ln.lower() for g in _GENERIC):
            return _PREFIX.sub("", ln)[:300] or ln[:300]
    return _PREFIX.sub("", lines[-1])[:300] if lines else "no error message"


def _query(path: str, flag: str) -> str:
    cmd = [path, "-hide_banner", "-nostdin", flag]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodecError(f"cannot run ffmpeg {path!r} {flag}: {exc}") from None
    if proc.returncode != 0:
        raise CodecError(f"ffmpeg {path!r} {flag} failed: {last_error_line(proc.stderr)}")
    return proc.stdout.decode("utf-8", "replace")


def _codec_names(listing: str) -> set[str]:
    """Names from an ``-encoders`` / ``-decoders`` table (rows after the ' ------' rule)."""
    names, body = set(), False
    for line in listing.splitlines():
        if line.strip().startswith("------"):
            body = True
            continue
        parts = line.split()
        if body and len(parts) >= 2:
            names.add(parts[1])
    return names


@functools.lru_cache(maxsize=16)
def capabilities(path: str) -> dict[str, Any]:
    """What the ffmpeg at ``path`` offers: version, and which vcfc-relevant encoders/decoders exist."""
    version_text = _query(path, "-version")
    m = re.search(r"ffmpeg version (\S+)", version_text)
    enc = _codec_names(_query(path, "-encoders"))
    dec = _codec_names(_query(path, "-decoders"))
    caps: dict[str, Any] = {
        "path": path,
        "version": m.group(1) if m else "unknown",
        "encoders": {n: n in enc for n in ENCODERS},
        "decoders": {n: n in dec for n in DECODERS},
    }
    if caps["encoders"]["libx265"]:
        caps["x265_version"] = _lib_version(path, "libx265")
    if caps["encoders"]["libvvenc"]:
        caps["vvenc_version"] = _lib_version(path, "libvvenc")
    return caps


def _lib_version(path: str, encoder: str) -> str | None:
    """Library version as the encoder logs it when opened on one tiny frame (None if it won't say)."""
    args = ["-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.04", "-frames:v", "1", "-c:v", encoder, "-f", "null", "-"]
    pix = ["-pix_fmt", "yuv420p10le"] if encoder == "libvvenc" else []
    try:
        proc = subprocess.run([path, "-hide_banner", "-nostdin", "-loglevel", "info", *args[:6], *pix, *args[6:]],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = proc.stderr.decode("utf-8", "replace")
    pattern = r"HEVC encoder version (\S+)" if encoder == "libx265" else r"libvvenc version: (\S+)"
    m = re.search(pattern, text)
    return m.group(1) if m else None


def require_encoder(path: str, name: str) -> None:
    """Raise EncoderMissingError unless the ffmpeg at ``path`` has encoder ``name``."""
    enc = capabilities(path)["encoders"]
    have = enc[name] if name in enc else name in _codec_names(_query(path, "-encoders"))
    if not have:
        raise EncoderMissingError(f"ffmpeg at {path} has no {name} encoder; {HOW_TO_FIX}")
