"""Grid execution and the row store: resume after kill -9, dask == local, errors, corrupt files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tests import gridtask
from tests.conftest import write_experiment
from vcfc.runners.grid.rows import RowStore, iter_keys, task_key
from vcfc.runners.grid.run_grid import run_grid
from vcfc.runners.grid.worker import LRUCache, call_task, worker_cache
from vcfc.runners.rundir import update_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
N = 40


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without the timing column, in a canonical order."""
    out = df.drop(columns=["task_s"]).sort_values(["task_key", "part"]).reset_index(drop=True)
    return out[sorted(out.columns)]


def _ok_keys(run_dir: Path) -> set[str]:
    return {p.name[: -len(".ok.parquet")] for p in (run_dir / "rows").glob("*.ok.parquet")}


def _spawn(run_dir: Path, phase: str, sleep: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # own session: the kill below reaches the runner and its pool workers, like a crash would
    return subprocess.Popen([sys.executable, "-m", "tests.gridtask", str(run_dir), str(N), phase, str(sleep)],
                            cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_parts(run_dir: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "rows").is_dir() and len(_ok_keys(run_dir)) >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"grid process ended early: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail("grid process wrote no rows in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted run with the local executor."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    res = run_grid(gridtask.make_tasks(N), gridtask.logged_task, run_dir, workers=2, progress=False)
    assert (res.total, res.done, res.errors, res.interrupted) == (N, N, 0, False)
    df = RowStore(run_dir).table()
    assert len(df) == 2 * N and set(df["status"]) == {"ok"}
    return df


def test_resume_after_kill9(tmp_path, reference):
    run_dir = tmp_path / "run"
    log = tmp_path / "exec.log"
    proc = _spawn(run_dir, "first", 0.15)
    try:
        _wait_for_parts(run_dir, proc, at_least=8)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    time.sleep(0.2)  # let the killed workers' last log writes land, if any
    on_disk = _ok_keys(run_dir)
    assert 8 <= len(on_disk) < N, "the kill should land mid-run"
    assert RowStore(run_dir).done_keys() == on_disk

    proc = _spawn(run_dir, "resume", 0.0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    lines = [ln.split() for ln in log.read_text().splitlines()]
    resumed = [k for k, phase, _ in lines if phase == "resume"]
    assert not set(resumed) & on_disk, "a task finished before the kill was computed again"
    assert len(resumed) == len(set(resumed)) == N - len(on_disk)
    assert {k for k, _, _ in lines} == {task_key(t) for t in gridtask.make_tasks(N)}

    final = RowStore(run_dir).table()
    pd.testing.assert_frame_equal(_comparable(final), _comparable(reference))


def test_ctrl_c_keeps_rows_and_says_how_to_resume(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = _spawn(run_dir, "first", 0.15)
    _wait_for_parts(run_dir, proc, at_least=4)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "run the same command again to resume" in err and "Traceback" not in err
    store = RowStore(run_dir)
    n_saved = len(store.done_keys())
    assert 4 <= n_saved < N
    res = run_grid(gridtask.make_tasks(N), gridtask.logged_task, store, executor="serial", progress=False)
    assert res.skipped == n_saved and res.done == N - n_saved
    pd.testing.assert_frame_equal(_comparable(store.table()), _comparable(reference))


def test_dask_matches_local(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            res = run_grid(gridtask.make_tasks(N), gridtask.logged_task, tmp_path / "run",
                           executor="dask", scheduler=cluster, progress=False)
    assert (res.done, res.errors, res.interrupted) == (N, 0, False)
    pd.testing.assert_frame_equal(_comparable(RowStore(tmp_path / "run").table()), _comparable(reference))


def test_failing_task_is_recorded_and_can_be_retried(tmp_path, monkeypatch):
    tasks = gridtask.make_tasks(8)
    tasks[2]["fail"] = True
    tasks[5]["fail"] = True
    monkeypatch.setenv("GRIDTASK_FIXED", str(tmp_path / "fixed"))
    store = RowStore(tmp_path / "run")
    res = run_grid(tasks, gridtask.flaky_task, store, workers=2, progress=False)
    assert (res.done, res.errors) == (8, 2)
    df = store.table()
    err = df[df["status"] == "error"]
    assert len(err) == 2 and len(df) == 2 * 6 + 2
    assert set(err["image_id"]) == {tasks[2]["image_id"], tasks[5]["image_id"]}  # task fields kept
    msg = err["error"].iloc[0]
    assert msg.startswith("RuntimeError: cannot code") and "\n" not in msg and "gridtask.py" in msg
    assert store.error_keys() == {task_key(tasks[2]), task_key(tasks[5])}

    # a plain restart skips the failures; retry_errors reruns only them
    assert run_grid(tasks, gridtask.flaky_task, store, workers=2, progress=False).done == 0
    (tmp_path / "fixed").touch()
    res = run_grid(tasks, gridtask.flaky_task, store, executor="serial", progress=False, retry_errors=True)
    assert (res.skipped, res.done, res.errors) == (6, 2, 0)
    df = store.table()
    assert len(df) == 16 and set(df["status"]) == {"ok"} and store.error_keys() == set()


def _fill(store: RowStore, keys: list[str]) -> None:
    for i, k in enumerate(keys):
        store.write(k, [{"image_id": k, "v": float(i)}, {"image_id": k, "v": i + 0.5}])


def test_truncated_and_temp_files_never_corrupt_the_table(tmp_path):
    store = RowStore(tmp_path)
    _fill(store, ["a", "b", "c"])
    good = store.table()
    data = (tmp_path / "rows" / "a.ok.parquet").read_bytes()
    (tmp_path / "rows" / ".x.ok.parquet.123.tmp").write_bytes(data[: len(data) // 2])  # killed mid-write
    (tmp_path / "rows" / "broken.ok.parquet").write_bytes(data[: len(data) // 2])  # e.g. a bad copy
    (tmp_path / "rows" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="broken.ok.parquet"):
        df = store.table()
    pd.testing.assert_frame_equal(df, good)
    assert "x" not in store.done_keys()
    removed = {p.name for p in store.repair()}
    assert removed == {".x.ok.parquet.123.tmp", "broken.ok.parquet"}
    assert store.done_keys() == {"a", "b", "c"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(store.table(), good)


def test_compaction_is_idempotent_and_crash_safe(tmp_path):
    store = RowStore(tmp_path)
    _fill(store, ["a", "b", "c"])
    store.write_error("d", {"image_id": "d", "qps": [22, 27]}, "ValueError: boom")
    before = store.table()
    assert store.compact() == tmp_path / "rows.parquet"
    assert list((tmp_path / "rows").iterdir()) == []
    pd.testing.assert_frame_equal(store.table(), before)
    assert store.done_keys() == {"a", "b", "c", "d"} and store.error_keys() == {"d"}
    assert before.loc[before["task_key"] == "d", "qps"].item() == "[22, 27]"  # non-scalars as JSON

    # a crash between replacing rows.parquet and deleting the parts leaves duplicates: no double rows
    _fill(store, ["a", "b"])
    pd.testing.assert_frame_equal(store.table(), before)
    # a retried task's new part supersedes its compacted error row
    store.write("d", [{"image_id": "d", "v": 9.0}])
    df = store.table()
    assert len(df) == 7 and df.loc[df["task_key"] == "d", "status"].tolist() == ["ok"]
    store.compact()
    pd.testing.assert_frame_equal(store.table(), df)
    assert store.error_keys() == set()


def test_empty_result_marks_task_done(tmp_path):
    store = RowStore(tmp_path)
    store.write("e", [])
    assert store.done_keys() == {"e"}
    store.compact()
    assert store.done_keys() == {"e"}
    assert store.table()["status"].tolist() == ["empty"]


def test_task_keys():
    t = {"image_id": "x", "qp": 22, "cfg": {"b": 1, "a": [1, 2]}}
    assert task_key(t) == task_key(dict(reversed(list(t.items()))))  # order-free
    assert len(task_key(t)) == 40 and task_key({**t, "qp": 27}) != task_key(t)
    assert task_key({"task_key": "img1-qp22"}) == "img1-qp22"
    with pytest.raises(ValueError):
        task_key({"task_key": "../evil"})
    with pytest.raises(ValueError, match="same key"):
        iter_keys([{"a": 1}, {"a": 1}])


def test_call_task_and_worker_cache():
    res = call_task(gridtask.flaky_task, {"image_id": "i", "qp": 1, "fail": True}, "k")
    assert res["rows"] is None and res["error"].startswith("RuntimeError")
    c = LRUCache(2)
    calls = []
    for k in ["a", "b", "a", "c", "b"]:
        c.get_or_compute(k, lambda k=k: calls.append(k) or k.upper())
    assert calls == ["a", "b", "c", "b"] and len(c) == 2  # "b" was evicted by "c"
    assert worker_cache() is worker_cache()


def test_local_rejects_unpicklable_fn(tmp_path):
    with pytest.raises(ValueError, match="picklable"):
        run_grid([{"a": 1}], lambda t: [], tmp_path, progress=False)


def test_manifest(tmp_path):
    exp = {"model": "resnet50", "qps": [22, 27]}
    path = write_manifest(tmp_path, exp, {"note": "x"})
    m = json.loads(path.read_text())
    assert m["experiment"] == exp and m["extra"] == {"note": "x"} and m["ended"] is None
    sw = m["software"]
    assert sw["vcfc"] and {"torch", "torchvision", "ffmpeg", "x265", "vvenc"} <= set(sw)
    assert m["machine"]["cpu_count"] == os.cpu_count()
    assert m["git"]["commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parents[1],
                                                capture_output=True, text=True).stdout.strip()  # vcfc's, wherever we run
    run_grid([{"a": 1}], gridtask.rows_for_none, tmp_path, executor="serial", progress=False)
    m2 = json.loads(path.read_text())
    assert m2["ended"] and m2["last_run"]["done"] == 1
    write_manifest(tmp_path, exp)  # a resume keeps the start
    m3 = json.loads(path.read_text())
    assert m3["started"] == m["started"] and len(m3["resumed"]) == 1
    with pytest.raises(ValueError, match="different experiment"):
        write_manifest(tmp_path, {**exp, "model": "vgg16"})
    assert update_manifest(tmp_path / "nowhere") is None


def test_an_unreachable_dask_scheduler_is_one_line_within_seconds_and_leaves_nothing(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exp = write_experiment(tmp_path / "exp.toml", limit=2)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "vcfc", "run", str(exp), "--out", str(tmp_path / "run"),
                        "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    assert r.returncode == 2 and "no Dask scheduler answers there" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and took < 10, (took, r.stderr)
    assert not (tmp_path / "run").exists()
