"""Sensitivity profiles on disk: Parquet (metadata in the schema), CSV, a JSON sidecar and a PNG.

Columns: channel, level, sensitivity, normalized_sensitivity (min-max over the rows), and when
rate/distortion tables were measured rate_qp<Q> (bytes per image) and dist_qp<Q> (feature MSE)
for each QP of the grid, so `vcfc allocate` needs nothing but the profile.
Per-level profiles (pyramids) have one row per level with channel = -1 and the level's channel
count in meta["level_channels"].
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcfc.errors import InputError
from vcfc.io import atomic_path, atomic_write, jsonable

from .allocation import normalize

META_KEY = b"vcfc.sensitivity"
_RATE = re.compile(r"rate_qp(\d+)$")


@dataclass
class Profile:
    table: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, sensitivity: np.ndarray, meta: dict[str, Any], *, levels: list[str] | None = None,
                    channels: list[int] | None = None, rd: tuple[list[int], np.ndarray, np.ndarray] | None = None
                    ) -> Profile:
        s = np.asarray(sensitivity, float)
        n = len(s)
        t = pd.DataFrame({
            "channel": np.asarray(channels if channels is not None else np.arange(n), np.int64),
            "level": levels if levels is not None else ["x"] * n,
            "sensitivity": s,
            "normalized_sensitivity": normalize(s),
        })
        if rd is not None:
            qps, rate, dist = rd
            for k, q in enumerate(qps):
                t[f"rate_qp{int(q)}"] = rate[:, k]
            for k, q in enumerate(qps):
                t[f"dist_qp{int(q)}"] = dist[:, k]
        return cls(t, dict(meta))

    @property
    def sensitivity(self) -> np.ndarray:
        return self.table["sensitivity"].to_numpy(float)

    def rd(self) -> tuple[list[int], np.ndarray, np.ndarray] | None:
        """(qps, rate (C,K) bytes, distortion (C,K)) if the profile holds R/D tables."""
        qps = sorted(int(m.group(1)) for c in self.table.columns if (m := _RATE.match(str(c))))
        if not qps:
            return None
        rate = np.stack([self.table[f"rate_qp{q}"].to_numpy(float) for q in qps], 1)
        dist = np.stack([self.table[f"dist_qp{q}"].to_numpy(float) for q in qps], 1)
        return qps, rate, dist


PROFILE_SUFFIXES = (".parquet", ".csv", ".json", ".png")  # the files write_profile writes


def profile_prefix(path: str | Path) -> Path:
    """PREFIX of a profile given as PREFIX or any of its files."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in PROFILE_SUFFIXES else p


def write_profile(profile: Profile, path: str | Path, plot: bool = True) -> dict[str, Path]:
    """Write PREFIX.parquet, PREFIX.csv, PREFIX.json (metadata) and PREFIX.png; return the paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = profile_prefix(path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps(jsonable(profile.meta), sort_keys=True)
    table = pa.Table.from_pandas(profile.table, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: meta_json.encode()})
    out = {k: prefix.with_suffix("." + k) for k in ("parquet", "csv", "json")}
    with atomic_path(out["parquet"]) as tmp:  # an interrupted write never leaves a half profile
        pq.write_table(table, tmp)
    with atomic_path(out["csv"]) as tmp:
        profile.table.to_csv(tmp, index=False)
    atomic_write(out["json"], json.dumps(jsonable(profile.meta), indent=2, sort_keys=True) + "\n")
    if plot:
        out["png"] = prefix.with_suffix(".png")
        with atomic_path(out["png"]) as tmp:
            plot_profile(profile, tmp)
    return out


def read_profile(path: str | Path) -> Profile:
    """Read a profile from PREFIX(.parquet) or PREFIX.csv (+ PREFIX.json for the metadata)."""
    p = Path(path)
    candidates = [p] if p.suffix.lower() in (".parquet", ".csv") else [p.with_suffix(".parquet"), Path(str(p) + ".parquet")]
    src = next((c for c in candidates if c.is_file()), None)
    if src is None:
        raise InputError(f"{path}: no sensitivity profile there (.parquet or .csv)")
    try:
        if src.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            t = pq.read_table(src)
            raw = (t.schema.metadata or {}).get(META_KEY)
            meta = json.loads(raw) if raw else {}
            df = t.to_pandas()
        else:
            df = pd.read_csv(src)
            side = src.with_suffix(".json")
            meta = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{src}: not a readable profile ({' '.join(str(exc).split())[:200]})") from None
    missing = {"channel", "level", "sensitivity"} - set(df.columns)
    if missing:
        raise InputError(f"{src}: not a sensitivity profile (missing columns {sorted(missing)})")
    if "normalized_sensitivity" not in df:
        df["normalized_sensitivity"] = normalize(df["sensitivity"].to_numpy(float))
    return Profile(df, meta)


def plot_profile(profile: Profile, path: str | Path) -> None:
    """Sorted bar chart of the sensitivities and a heat strip in channel order (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    s = profile.table["normalized_sensitivity"].to_numpy(float)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.5), gridspec_kw={"height_ratios": [4, 1]})
    order = np.argsort(-s)
    ax1.bar(np.arange(len(s)), s[order], width=1.0, color="tab:blue")
    ax1.set_xlim(-0.5, len(s) - 0.5)
    ax1.set_ylabel("normalized sensitivity")
    ax1.set_xlabel("rank")
    m = profile.meta
    ax1.set_title(f"{m.get('model', '?')} @ {m.get('layer', '?')}: {m.get('distance', '?')}, "
                  f"{m.get('codec', '?')} QP {m.get('qp_base', '?')}, {m.get('method', '?')}, "
                  f"{m.get('images', '?')} images", fontsize=9)
    ax2.imshow(s[None, :], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax2.set_yticks([])
    ax2.set_xlabel("channel" if m.get("mode", "channel") == "channel" else "level")
    if m.get("mode") == "level":
        ax2.set_xticks(range(len(s)), list(profile.table["level"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)

