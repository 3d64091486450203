"""How a grid's tasks are run: in this process (serial), in a local process pool, or on a Dask
cluster. Registry: EXECUTORS (name → runner). A runner gets the unfinished (key, task) pairs and
a recorder to hand each result to (it writes the rows); it returns the number of pool crashes.
Light on purpose (no pandas, no torch): the CLI offers these choices at start-up.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from vcfc.errors import InputError
from vcfc.registry import Registry

from .worker import TaskFn, call_task, ignore_sigint

DEFAULT_GPU_RESOURCES: dict[str, float] = {"GPU": 1}
Recorder = Callable[[str, dict, dict], None]  # (key, task, result) -> None


def needs_gpu(task: Mapping[str, Any]) -> bool:
    """A task declares a GPU with ``"gpu": True`` or ``"device": "cuda..."``."""
    return bool(task.get("gpu")) or str(task.get("device", "")).startswith("cuda")


def _crash_result(key: str, what: str) -> dict:
    return {"key": key, "rows": None, "error": what, "task_s": None, "pid": None}


def _run_serial(todo: list[tuple[str, dict]], fn: TaskFn, rec: Recorder, setup: Callable | None, **_: Any) -> int:
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


def _run_local(todo: list[tuple[str, dict]], fn: TaskFn, rec: Recorder, setup: Callable | None, *,
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
                for key, task in list(in_flight.values()):  # all fail with the pool
                    queue.appendleft((key, task))
                in_flight.clear()
                _kill_pool(pool)
                pool = new_pool()
    except BaseException:
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    return n_crashes


def check_scheduler(address: str, timeout_s: float = 5.0) -> None:
    """Reach a Dask scheduler once, before any work: an address nobody answers is one line
    within seconds, not a 30 s wait and a traceback after the run folder exists. A TCP address
    is tried with a plain connect first (a refused port fails at once, where Dask would retry
    until its timeout), then the Dask handshake."""
    import socket
    from urllib.parse import urlsplit

    def refuse(exc: BaseException) -> InputError:
        return InputError(f"--scheduler {address}: no Dask scheduler answers there "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")

    url = urlsplit(address if "://" in address else f"tcp://{address}")
    if url.scheme == "tcp":
        try:
            socket.create_connection((url.hostname or "localhost", url.port or 8786), timeout=timeout_s).close()
        except (OSError, ValueError) as exc:  # ValueError: a port that is not a number
            raise refuse(exc) from None
    from distributed import Client

    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except Exception as exc:  # noqa: BLE001 - whatever answers there (a proxy sent garbage: MemoryError), it is no scheduler
        raise refuse(exc) from None
    client.close()


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


def _run_dask(todo: list[tuple[str, dict]], fn: TaskFn, rec: Recorder, setup: Callable | None, *,
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


# how tasks are run: name -> runner (the experiment file's [run] executor, `vcfc run --executor`)
EXECUTORS: Registry[Callable[..., int]] = Registry(
    "executor", [("local", _run_local), ("dask", _run_dask), ("serial", _run_serial)], error=ValueError)
