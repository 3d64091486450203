"""Worker-side pieces of grid execution: the task wrapper and the per-worker cache.

Kept to the standard library on purpose: every worker process (local pool or dask) imports this
module to unpickle ``call_task``, and a heavy import here would be paid once per worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

TaskFn = Callable[[dict], "list[dict]"]


class LRUCache:
    """A small thread-safe LRU map; ``maxsize`` counts entries (None = unbounded)."""

    def __init__(self, maxsize: int | None = 8) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return default

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while self.maxsize is not None and len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Cached value for ``key``; on a miss, ``compute()`` it and keep it.

        The compute runs outside the lock (it may take seconds: a network head); two threads
        missing the same key at once both compute, which is harmless.
        """
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


_CACHE: LRUCache | None = None
_CACHE_LOCK = threading.Lock()


def worker_cache(maxsize: int | None = None) -> LRUCache:
    """The LRU cache of this worker process (one per process, created on first use).

    A task function uses it to share work between tasks that land on the same worker, e.g. the
    head features of one image across QPs/configs::

        feats = worker_cache().get_or_compute(("resnet50", "layer2", image_id), lambda: head(x))

    ``maxsize`` (entries; default 8, or $VCFC_WORKER_CACHE) applies when the cache is created.
    Only a hit-rate optimisation: results must not depend on it (another worker recomputes).
    """
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            if maxsize is None:
                maxsize = int(os.environ.get("VCFC_WORKER_CACHE", "8"))
            _CACHE = LRUCache(maxsize)
        return _CACHE


_SETUP_DONE: set[str] = set()
_SETUP_LOCK = threading.Lock()


def ensure_setup(setup: Callable[[], Any] | None) -> None:
    """Run ``setup()`` once per worker process (lazily, before its first task).

    Lazy rather than an executor initializer so it also holds for dask workers that join late.
    Keyed on the callable's name (ids differ between unpickled copies), so each distinct setup
    function runs once.
    """
    if setup is None:
        return
    func = getattr(setup, "func", setup)
    token = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    with _SETUP_LOCK:
        if token in _SETUP_DONE:
            return
        setup()
        _SETUP_DONE.add(token)


def ignore_sigint() -> None:
    """Pool initializer: Ctrl-C goes to the parent only, which then stops the pool cleanly (it
    terminates the workers: SIGTERM, on which a worker stops its ffmpeg children, then exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_children_and_exit)


def stop_children_and_exit(signum: int, frame: Any) -> None:
    """SIGTERM in a worker: stop the encoders this process started, then exit at once."""
    ffmpeg = sys.modules.get("vcfc.ffmpeg")  # no encoder ran if vcfc was never imported here
    if ffmpeg is not None:
        ffmpeg.terminate_children(grace=0.5)
    os._exit(128 + signum)


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, with the innermost frame, for the error column."""
    msg = " ".join(str(exc).split()) or "(no message)"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" [{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}]" if tb else ""
    return f"{type(exc).__name__}: {msg}{where}"[:1000]


def call_task(fn: TaskFn, task: dict, key: str, setup: Callable[[], Any] | None = None) -> dict:
    """Run one task in a worker; never raises for task errors (they become an error result).

    Returns ``{"key", "rows" (list[dict] or None), "error" (str or None), "task_s", "pid"}``.
    """
    t0 = time.perf_counter()
    try:
        ensure_setup(setup)
        rows = fn(task)
        if rows is None:
            rows = []
        elif isinstance(rows, dict):
            rows = [rows]
        else:
            rows = list(rows)
        if not all(isinstance(r, dict) for r in rows):
            raise TypeError("task function must return a list of dicts")
        error = None
    except Exception as exc:  # noqa: BLE001 - recorded as an error row, the grid goes on
        rows, error = None, one_line(exc)
    return {"key": key, "rows": rows, "error": error, "task_s": time.perf_counter() - t0, "pid": os.getpid()}
