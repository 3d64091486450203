"""Locate ffmpeg, report what it can code, and run it over pipes (never through a shell).

Every ffmpeg this process starts is tracked until it exits: `terminate_children` stops the
ones still running (SIGTERM, then SIGKILL after a grace: VVenC ignores SIGTERM and x265 keeps
coding after ffmpeg's SIGINT), on Ctrl-C, SIGTERM and at interpreter exit, so no encoder
outlives vcfc.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from .errors import CodecError, EncoderMissingError

ENV_VAR = "VCFC_FFMPEG"
BASE_ARGS = ("-hide_banner", "-loglevel", "error", "-nostdin")
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
    except Exception as exc:  # noqa: BLE001 - imageio-ffmpeg raises RuntimeError (no binary), or anything else
        raise CodecError(f"no ffmpeg found ({exc}); pass --ffmpeg PATH or set {ENV_VAR}") from None
    return _check_exe(exe, "imageio-ffmpeg")


def _check_exe(path: str, source: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise CodecError(f"ffmpeg {path!r} (from {source}) does not exist or is not executable")
    return path


_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def terminate_children(grace: float = 1.0) -> int:
    """Stop every ffmpeg this process started that still runs: SIGTERM, SIGKILL after ``grace``
    seconds. Returns how many were running."""
    with _LIVE_LOCK:
        procs = [p for p in _LIVE if p.poll() is None]
    for p in procs:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()
    return len(procs)


atexit.register(terminate_children)


@contextlib.contextmanager
def children_stopped_on_interrupt() -> Iterator[None]:
    """On Ctrl-C / SystemExit inside the block, stop every running ffmpeg at once. Put it INSIDE a
    thread pool's `with` (``with ThreadPoolExecutor() as pool, children_stopped_on_interrupt():``),
    so the pool's threads are unblocked before the pool waits for them."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        terminate_children()
        raise


def run_ffmpeg(path: str, args: list[str], data: bytes | None = None, *, timeout: float | None = None) -> bytes:
    """Run ``path`` with ``BASE_ARGS + args``, feeding ``data`` on stdin; return stdout.

    Raises CodecError naming the last meaningful stderr line on a non-zero exit. The process is
    killed if this call ends any other way (an exception, Ctrl-C in this thread).
    """
    cmd = [path, *BASE_ARGS, *args]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CodecError(f"cannot run ffmpeg {path!r}: {exc.strerror or exc}") from None
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        return _communicate(proc, path, data, timeout)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def _communicate(proc: subprocess.Popen, path: str, data: bytes | None, timeout: float | None) -> bytes:
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
    """What the ffmpeg at ``path`` offers (cached per path; treat as read-only).

    ``version``; ``encoders`` / ``decoders``: frozensets of every name ffmpeg lists.
    (Each codec backend asks for its own library's version: ``Codec.library_version``.)
    """
    version_text = _query(path, "-version")
    m = re.search(r"ffmpeg version (\S+)", version_text)
    caps: dict[str, Any] = {
        "path": path,
        "version": m.group(1) if m else "unknown",
        "encoders": frozenset(_codec_names(_query(path, "-encoders"))),
        "decoders": frozenset(_codec_names(_query(path, "-decoders"))),
    }
    return caps


@functools.lru_cache(maxsize=32)
def library_version(path: str, encoder: str, pattern: str, pix_fmt: str | None = None) -> str | None:
    """The library version ``encoder`` logs (matched by ``pattern``) when opened on one tiny frame;
    None when ffmpeg lacks the encoder or it would not say."""
    if encoder not in capabilities(path)["encoders"]:
        return None
    pix = ["-pix_fmt", pix_fmt] if pix_fmt else []
    cmd = [path, "-hide_banner", "-nostdin", "-loglevel", "verbose", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.04",
           *pix, "-frames:v", "1", "-c:v", encoder, "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, proc.stderr.decode("utf-8", "replace"))
    return m.group(1) if m else None


def require_encoder(path: str, name: str) -> None:
    """Raise EncoderMissingError unless the ffmpeg at ``path`` has encoder ``name``."""
    if name not in capabilities(path)["encoders"]:
        raise EncoderMissingError(f"ffmpeg at {path} has no {name} encoder; {HOW_TO_FIX}")
