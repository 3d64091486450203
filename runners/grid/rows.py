"""Crash-safe, append-only row storage for experiment grids.

Layout of a run directory's rows::

    run_dir/
      rows/<key>.ok.parquet      rows of one finished task (one small file per task)
      rows/<key>.err.parquet     the error row of one failed task
      rows.parquet               compacted parts (optional; readers use table())

Every file is written under a temporary dot-name in the same directory and ``os.replace``d
into place, so a kill -9 at any instant leaves either the old state or the new one: a finished
task is never lost and no reader ever sees half a file. Stray temp files are ignored (and
removed by ``repair()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vcfc.io import atomic_path

OK_SUFFIX = ".ok.parquet"
ERR_SUFFIX = ".err.parquet"
COMPACTED = "rows.parquet"
KEY_FIELD = "task_key"  # a task may carry its own key under this field
_SAFE_KEY = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]{0,199}\Z")


def task_key(task: Mapping[str, Any]) -> str:
    """Stable key of a task: ``task["task_key"]`` if given, else sha1 of its canonical JSON.

    Canonical = sorted keys, no whitespace; non-JSON values fall back to ``str`` (so numpy
    ints work, but prefer plain types: the key must not change between runs).
    """
    given = task.get(KEY_FIELD)
    if given is not None:
        key = str(given)
        if not _SAFE_KEY.match(key):
            raise ValueError(f"task key {key!r}: use letters, digits and ._=+- (at most 200 chars)")
        return key
    text = json.dumps(dict(task), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _scalar(v: Any) -> Any:
    """A task field as a column value: scalars as they are, anything else as JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    try:
        return json.dumps(v, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(v)


def _rows_to_table(rows: list[dict]) -> pa.Table:
    df = pd.DataFrame(rows)
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # a column of mixed Python types: keep the rows, as text, rather than lose the task
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else str(_scalar(v)))
        return pa.Table.from_pandas(df, preserve_index=False)


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t.replace_schema_metadata(None) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # incompatible types across tasks (e.g. int in one, text in another): let pandas mix them
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        return _rows_to_table(df.to_dict("records"))


class RowStore:
    """Append-only rows of a grid run, one atomic Parquet part per finished task."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / "rows"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.compacted_path = self.run_dir / COMPACTED

    # -- writing -------------------------------------------------------------------------

    def write(self, key: str, rows: list[dict], *, task_s: float | None = None) -> Path:
        """Store the rows of finished task ``key`` (atomically; replaces an earlier error)."""
        if not _SAFE_KEY.match(key):
            raise ValueError(f"task key {key!r}: use letters, digits and ._=+-")
        out = []
        for r in rows or [{"status": "empty"}]:  # an empty result still marks the task done
            r = dict(r)
            r[KEY_FIELD] = key
            r.setdefault("status", "ok")
            r.setdefault("error", None)
            r.setdefault("task_s", task_s)
            out.append(r)
        path = self.parts_dir / f"{key}{OK_SUFFIX}"
        _atomic_write_table(path, _rows_to_table(out))
        (self.parts_dir / f"{key}{ERR_SUFFIX}").unlink(missing_ok=True)
        return path

    def write_error(self, key: str, task: Mapping[str, Any], error: str, *, task_s: float | None = None) -> Path:
        """Store the error row of task ``key``: its fields, ``status="error"`` and ``error``."""
        row = {k: _scalar(v) for k, v in task.items() if k != KEY_FIELD}
        row.update({KEY_FIELD: key, "status": "error", "error": " ".join(str(error).split()), "task_s": task_s})
        path = self.parts_dir / f"{key}{ERR_SUFFIX}"
        _atomic_write_table(path, _rows_to_table([row]))
        return path

    # -- reading -------------------------------------------------------------------------

    def _parts(self) -> tuple[dict[str, Path], dict[str, Path]]:
        ok: dict[str, Path] = {}
        err: dict[str, Path] = {}
        with os.scandir(self.parts_dir) as it:
            for e in it:
                name = e.name
                if name.startswith("."):  # temp files, never complete by construction
                    continue
                if name.endswith(OK_SUFFIX):
                    ok[name[: -len(OK_SUFFIX)]] = Path(e.path)
                elif name.endswith(ERR_SUFFIX):
                    err[name[: -len(ERR_SUFFIX)]] = Path(e.path)
        return ok, err

    def _compacted_status(self) -> dict[str, bool]:
        """task key -> whether it succeeded, for the compacted file (only two columns read)."""
        if not self.compacted_path.exists():
            return {}
        t = pq.read_table(self.compacted_path, columns=[KEY_FIELD, "status"])
        out: dict[str, bool] = {}
        for k, s in zip(t.column(KEY_FIELD).to_pylist(), t.column("status").to_pylist()):
            out[k] = out.get(k, True) and s != "error"
        return out

    def done_keys(self, include_errors: bool = True) -> set[str]:
        """Keys of finished tasks; with ``include_errors=False`` failed tasks are not 'done'."""
        ok, err = self._parts()
        done = set(ok)
        if include_errors:
            done |= set(err)
        for k, good in self._compacted_status().items():
            if k in ok or k in err:  # a newer part decides
                continue
            if good or include_errors:
                done.add(k)
        return done

    def error_keys(self) -> set[str]:
        return self.done_keys(include_errors=True) - self.done_keys(include_errors=False)

    @staticmethod
    def _read(path: Path) -> pa.Table | None:
        try:
            return pq.read_table(path)
        except FileNotFoundError:  # compacted away meanwhile
            return None
        except (OSError, pa.ArrowException) as exc:
            warnings.warn(f"skipping unreadable rows file {path.name}: {exc} (run RowStore.repair())", stacklevel=3)
            return None

    def _merged(self) -> tuple[pa.Table | None, list[Path]]:
        """Everything, newest source winning per task key; also the part files read."""
        ok, err = self._parts()
        tables: list[pa.Table] = []
        read: list[Path] = []
        seen: set[str] = set()
        for key, path in sorted(ok.items()):
            t = self._read(path)
            if t is not None:
                tables.append(t)
                read.append(path)
                seen.add(key)
        for key, path in sorted(err.items()):
            if key in seen:
                read.append(path)  # superseded by a later success: merged away too
                continue
            t = self._read(path)
            if t is not None:
                tables.append(t)
                read.append(path)
                seen.add(key)
        if self.compacted_path.exists():
            c = self._read(self.compacted_path)
            if c is not None and c.num_rows:
                keep = pa.array([k not in seen for k in c.column(KEY_FIELD).to_pylist()])
                tables.append(c.filter(keep))
        tables = [t for t in tables if t.num_columns]
        if not tables:
            return None, read
        merged = _concat(tables)
        idx = pa.array(range(merged.num_rows))
        # stable order: by key, rows of one task in their original order
        merged = merged.append_column("__i", idx).sort_by([(KEY_FIELD, "ascending"), ("__i", "ascending")])
        return merged.drop_columns(["__i"]), read

    def table(self) -> pd.DataFrame:
        """All rows (parts + compacted), one set of rows per task key, sorted by key."""
        merged, _ = self._merged()
        if merged is None:
            return pd.DataFrame(columns=[KEY_FIELD, "status", "error"])
        return merged.to_pandas().reset_index(drop=True)

    # -- maintenance ---------------------------------------------------------------------

    def compact(self) -> Path | None:
        """Merge all parts into ``rows.parquet`` (atomically), then delete the merged parts.

        Safe to run while a grid is writing: parts written after the listing stay. A crash
        between the replace and the deletes only leaves parts that duplicate the compacted
        file, which readers de-duplicate.
        """
        merged, read = self._merged()
        if merged is None:
            return None
        _atomic_write_table(self.compacted_path, merged)
        for p in read:
            p.unlink(missing_ok=True)
        return self.compacted_path

    def repair(self) -> list[Path]:
        """Remove temp files and unreadable parts (their tasks then count as not done)."""
        removed = []
        for p in self.parts_dir.iterdir():
            bad = p.name.startswith(".")
            if not bad and p.name.endswith(".parquet"):
                try:
                    pq.read_metadata(p)
                except (OSError, pa.ArrowException):
                    bad = True
            if bad:
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed


def iter_keys(tasks: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict]]:
    """(key, task) pairs; duplicate keys are an error (two tasks would share one part file)."""
    out: list[tuple[str, dict]] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(tasks):
        k = task_key(t)
        if k in seen:
            raise ValueError(f"tasks {seen[k]} and {i} have the same key {k}")
        seen[k] = i
        out.append((k, dict(t)))
    return out
