"""Task functions for tests/test_grid.py (module-level, so worker processes can unpickle them).

Run as ``python -m tests.gridtask RUN_DIR N [PHASE] [SLEEP]``: runs the grid of N tasks with the
local executor (2 workers); each execution appends ``key phase pid`` to RUN_DIR/../exec.log.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path


def make_tasks(n: int) -> list[dict]:
    return [{"image_id": f"img{i // 4:03d}", "qp": 22 + 5 * (i % 4)} for i in range(n)]


def rows_for(task: dict) -> list[dict]:
    """Deterministic rows: two per task, values derived from the task only."""
    h = int(hashlib.sha1(f"{task['image_id']}/{task['qp']}".encode()).hexdigest()[:8], 16)
    return [{"image_id": task["image_id"], "qp": task["qp"], "part": j, "bpfe": (h % 1000) / 100 + j,
             "fidelity": (h % 7) / 7.0} for j in range(2)]


def logged_task(task: dict) -> list[dict]:
    """Sleeps $GRIDTASK_SLEEP s, appends one line per execution to $GRIDTASK_LOG, returns rows_for(task)."""
    from vcfc.runners.grid.rows import task_key

    time.sleep(float(os.environ.get("GRIDTASK_SLEEP", "0")))
    log = os.environ.get("GRIDTASK_LOG")
    if log:
        with open(log, "a") as f:  # one short write per line: atomic with O_APPEND
            f.write(f"{task_key(task)} {os.environ.get('GRIDTASK_PHASE', '-')} {os.getpid()}\n")
    return rows_for(task)


def flaky_task(task: dict) -> list[dict]:
    """Fails for tasks with ``fail`` set unless the file $GRIDTASK_FIXED exists."""
    if task.get("fail") and not os.path.exists(os.environ.get("GRIDTASK_FIXED", "/nonexistent")):
        raise RuntimeError(f"cannot code {task['image_id']}\nsecond line")
    return rows_for(task)


def main(argv: list[str]) -> int:
    from vcfc.runners.grid.run_grid import run_grid

    run_dir = Path(argv[0])
    n = int(argv[1])
    os.environ["GRIDTASK_PHASE"] = argv[2] if len(argv) > 2 else "-"
    os.environ["GRIDTASK_SLEEP"] = argv[3] if len(argv) > 3 else "0.1"
    os.environ["GRIDTASK_LOG"] = str(run_dir.parent / "exec.log")
    res = run_grid(make_tasks(n), logged_task, run_dir, workers=2, progress=False)
    return 0 if not res.interrupted and not res.errors else 1


def rows_for_none(task: dict) -> list[dict]:
    return [{"x": 1}]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
