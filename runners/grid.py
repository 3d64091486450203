"""Run a grid of tasks (local process pool or dask), skipping finished ones, storing rows as they come.

A *task* is a JSON-able dict; a *task function* ``fn(task) -> list[dict]`` turns it into rows
and must be picklable (a module-level function, or a functools.partial of one). Rows are written
by the parent/client process only (one writer, no locking), one atomic part file per task, so a
run can be killed at any moment and restarted with the same call: finished tasks are skipped.
See docs/experiments.md.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .executors import TaskFn, call_task, ignore_sigint, worker_cache
from .store import RowStore, _now, iter_keys, task_key, update_manifest

__all__ = ["GridResult", "run_grid", "needs_gpu", "task_key", "worker_cache", "RowStore"]

EXECUTORS = ("local", "dask", "serial")
DEFAULT_GPU_RESOURCES: dict[str, float] = {"GPU": 1}


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


def needs_gpu(task: Mapping[str, Any]) -> bool:
    """A task declares a GPU with ``"gpu": True`` or ``"device": "cuda..."``."""
    return bool(task.get("gpu")) or str(task.get("device", "")).startswith("cuda")


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


def _crash_result(key: str, what: str) -> dict:
    return {"key": key, "rows": None, "error": what, "task_s": None, "pid": None}


def _run_serial(todo: list[tuple[str, dict]], fn: TaskFn, rec: _Recorder, setup: Callable | None, **_: Any) -> int:
    for key, task in todo:
        rec(key, task, call_task(fn, task, key, setup))
    return 0


def _kill_pool(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Stop a pool now: cancel queued work and terminate the workers (their tasks are lost anyway),
    and wait for them (killed after ``grace`` seconds), so none outlives the run."""
    procs = getattr(pool, "_processes", None)  # private attribute, hence guarded
    procs = list(procs.values()) if isinstance(procs, dict) else []
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
        except Exception:  # noqa: BLE001 - already reaped
            pass


def _run_local(todo: list[tuple[str, dict]], fn: TaskFn, rec: _Recorder, setup: Callable | None, *,
               workers: int, mp_context: str, max_in_flight: int | None, preload: Sequence[str] = (),
               **_: Any) -> int:
    """ProcessPoolExecutor with a bounded window of submitted tasks (so Ctrl-C has little to cancel).

    A worker that dies (OOM kill, segfault) breaks the whole pool: its in-flight tasks are
    retried once on a fresh pool, then recorded as errors. Returns the number of pool crashes.
    """
    ctx = mp.get_context(mp_context)
    if mp_context == "forkserver" and preload:
        # workers fork from a server that imported these once: no per-worker import (torch: ~4 s)
        ctx.set_forkserver_preload(list(preload))
    window = max_in_flight or 2 * workers
    queue = deque(todo)
    crashes: dict[str, int] = {}
    n_crashes = 0

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint)

    pool = new_pool()
    in_flight: dict[Any, tuple[str, dict]] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                key, task = queue.popleft()
                in_flight[pool.submit(call_task, fn, task, key, setup)] = (key, task)
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                key, task = in_flight.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    crashes[key] = crashes.get(key, 0) + 1
                    if crashes[key] >= 2:
                        rec(key, task, _crash_result(key, "BrokenProcessPool: worker process died twice "
                                                          "running this task (out of memory?)"))
                    else:
                        queue.appendleft((key, task))
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                    res = _crash_result(key, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
                rec(key, task, res)
            if broken:
                n_crashes += 1
                for fut, (key, task) in list(in_flight.items()):  # all fail with the pool
                    queue.appendleft((key, task))
                in_flight.clear()
                _kill_pool(pool)
                pool = new_pool()
    except BaseException:
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    return n_crashes


def _dask_client(scheduler: Any, workers: int) -> tuple[Any, bool]:
    """(client, whether we own it): an address, a LocalCluster/cluster object, a Client, or None."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, False
    if scheduler is None:
        # a cluster of this machine: `workers` processes of one task thread each; the thread budget
        # of each (its share of the cores) comes with the task's setup, as for the local executor
        return Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)), True
    return Client(scheduler), True  # address string or cluster object


def _run_dask(todo: list[tuple[str, dict]], fn: TaskFn, rec: _Recorder, setup: Callable | None, *,
              scheduler: Any, max_in_flight: int | None, gpu_resources: Mapping[str, float] | None,
              workers: int = 1, **_: Any) -> int:
    from distributed import as_completed

    client, own = _dask_client(scheduler, workers)
    futures: dict[Any, tuple[str, dict]] = {}
    try:
        threads = sum(client.nthreads().values()) or 1
        window = max_in_flight or max(4, 2 * threads)
        queue = deque(todo)

        def submit(key: str, task: dict) -> Any:
            kw: dict[str, Any] = {"pure": False}
            if gpu_resources and needs_gpu(task):
                kw["resources"] = dict(gpu_resources)  # only workers started with --resources GPU=1
            fut = client.submit(call_task, fn, task, key, setup, **kw)
            futures[fut] = (key, task)
            return fut

        ac = as_completed([submit(*queue.popleft()) for _ in range(min(window, len(queue)))])
        for fut in ac:
            key, task = futures.pop(fut)
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost worker, ...
                res = _crash_result(key, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            rec(key, task, res)
            while queue and len(futures) < window:
                ac.add(submit(*queue.popleft()))
    except BaseException:
        if futures:
            try:
                client.cancel(list(futures))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        raise
    finally:
        if own:
            client.close()
    return 0


_RUNNERS = {"serial": _run_serial, "local": _run_local, "dask": _run_dask}


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
    if executor not in _RUNNERS:
        raise ValueError(f"executor {executor!r}: use one of {', '.join(EXECUTORS)}")
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
                crashes = _RUNNERS[executor](todo, fn, rec, setup, workers=workers, mp_context=mp_context, preload=preload,
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
    update_manifest(store.run_dir, **({} if interrupted else {"ended": _now()}), last_run=summary)
    return result
