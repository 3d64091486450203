"""Run a grid of tasks (vcfc.runners.grid.executors: serial, local process pool or dask), skipping
finished ones, storing rows as they come.

A *task* is a JSON-able dict; a *task function* ``fn(task) -> list[dict]`` turns it into rows
and must be picklable (a module-level function, or a functools.partial of one). Rows are written
by the parent/client process only (one writer, no locking), one atomic part file per task, so a
run can be killed at any moment and restarted with the same call: finished tasks are skipped.
See docs/experiments.md.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..rundir import update_manifest, utc_now
from .executors import DEFAULT_GPU_RESOURCES, EXECUTORS, needs_gpu
from .rows import RowStore, iter_keys, task_key
from .worker import TaskFn, worker_cache

__all__ = ["EXECUTORS", "GridResult", "run_grid", "needs_gpu", "task_key", "worker_cache", "RowStore"]



@dataclass
class GridResult:
    run_dir: Path
    total: int  # tasks in the grid
    skipped: int  # already finished before this call
    done: int  # finished by this call (ok or error)
    errors: int  # of those, failed
    interrupted: bool
    elapsed_s: float
    worker_crashes: int = 0
    error_keys: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done


class _Recorder:
    """Writes results as they arrive and keeps the counts and the progress bar."""

    def __init__(self, store: RowStore, bar: tqdm) -> None:
        self.store, self.bar = store, bar
        self.done = self.errors = 0
        self.error_keys: list[str] = []

    def __call__(self, key: str, task: dict, res: dict) -> None:
        if res.get("error") is not None:
            self.store.write_error(key, task, res["error"], task_s=res.get("task_s"))
            self.errors += 1
            self.error_keys.append(key)
            self.bar.set_postfix(errors=self.errors, refresh=False)
        else:
            self.store.write(key, res["rows"], task_s=res.get("task_s"))
        self.done += 1
        self.bar.update(1)


class _SigtermAsInterrupt:
    """Treat SIGTERM (batch schedulers, ``kill``) like Ctrl-C while the grid runs (main thread only)."""

    def __enter__(self) -> None:
        self.old = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                raise KeyboardInterrupt
            self.old = signal.signal(signal.SIGTERM, handler)

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def run_grid(tasks: Iterable[Mapping[str, Any]], fn: TaskFn, store: RowStore | str | os.PathLike[str], *,
             executor: str = "local", workers: int | None = None, scheduler: Any = None,
             progress: bool = True, setup: Callable[[], Any] | None = None, retry_errors: bool = False,
             gpu_resources: Mapping[str, float] | None = DEFAULT_GPU_RESOURCES, mp_context: str = "spawn",
             max_in_flight: int | None = None, preload: Sequence[str] = ()) -> GridResult:
    """Run every task not yet finished in ``store``; write each task's rows as it completes.

    - ``executor``: "local" (ProcessPoolExecutor, ``workers`` processes, default os.cpu_count(),
      ``mp_context`` "spawn" or "forkserver": never fork a process that may hold torch threads;
      with forkserver, ``preload`` modules are imported once by the server the workers fork from),
      "dask" (``scheduler``: address string, cluster object, ``distributed.Client``, or None for
      a local cluster), or "serial" (in this process: for debugging and pdb).
    - ``setup``: called once in each worker process before its first task (e.g. limit torch
      threads, warm a model); must be picklable.
    - ``retry_errors``: rerun tasks recorded as errors (their error row is replaced on success).
    - ``gpu_resources``: with dask, tasks that ``needs_gpu(task)`` are submitted with
      ``resources=gpu_resources`` so only workers started with ``--resources GPU=1`` take them.
    - Ctrl-C / SIGTERM: stops submitting, cancels what is queued, keeps every finished row and
      returns with ``interrupted=True`` after printing how to resume (rerun the same command).
    """
    runner = EXECUTORS.get(executor)
    if mp_context not in ("spawn", "forkserver"):
        raise ValueError("mp_context: use 'spawn' or 'forkserver' (fork is unsafe with torch/ffmpeg threads)")
    if executor != "serial":
        for what, obj in (("task function", fn), ("setup", setup)):
            try:
                pickle.dumps(obj)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{what} must be picklable (a module-level function or a functools.partial "
                                 f"of one): {exc}") from None
    store = store if isinstance(store, RowStore) else RowStore(store)
    keyed = iter_keys(tasks)
    done = store.done_keys(include_errors=not retry_errors)
    todo = [(k, t) for k, t in keyed if k not in done]
    skipped = len(keyed) - len(todo)
    workers = max(1, workers or os.cpu_count() or 1)

    t0 = time.monotonic()
    bar = tqdm(total=len(todo), desc=f"grid ({skipped} done before)" if skipped else "grid", unit="task",
               file=sys.stderr, disable=not progress, dynamic_ncols=True, smoothing=0.05)
    rec = _Recorder(store, bar)
    interrupted = False
    crashes = 0
    try:
        with _SigtermAsInterrupt():
            if todo:
                crashes = runner(todo, fn, rec, setup, workers=workers, mp_context=mp_context, preload=preload,
                                             scheduler=scheduler, max_in_flight=max_in_flight,
                                             gpu_resources=gpu_resources)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()

    result = GridResult(run_dir=store.run_dir, total=len(keyed), skipped=skipped, done=rec.done,
                        errors=rec.errors, interrupted=interrupted, elapsed_s=time.monotonic() - t0,
                        worker_crashes=crashes, error_keys=rec.error_keys)
    if interrupted:
        print(f"interrupted: {skipped + rec.done}/{len(keyed)} tasks are saved in {store.run_dir}; "
              f"run the same command again to resume (finished tasks are skipped)", file=sys.stderr)
    summary = {k: v for k, v in asdict(result).items() if k != "error_keys"}
    update_manifest(store.run_dir, **({} if interrupted else {"ended": utc_now()}), last_run=summary)
    return result
