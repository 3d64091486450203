"""No encoder outlives vcfc: Ctrl-C during a real encode and during `vcfc run` leaves no ffmpeg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import feature_like, write_experiment

psutil = pytest.importorskip("psutil")


def _encoders(pid: int) -> list:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "ffmpeg" in p.name()]
    except psutil.NoSuchProcess:
        return []


def _wait_for_encoders(proc: subprocess.Popen, timeout: float = 120) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = _encoders(proc.pid)
        if kids:
            time.sleep(0.5)  # let the encoders get going (and a few more start)
            return _encoders(proc.pid) or kids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("no ffmpeg child appeared")


def test_ctrl_c_during_a_vvenc_encode_stops_the_encoder(tmp_path):
    # a 64×224×224 mosaic (one 1792×1792 picture) takes VVenC's slow preset well over 10 s
    np.save(tmp_path / "big.npy", feature_like(64, 224, 224, seed=3))
    out = tmp_path / "big.vcfc"
    proc = subprocess.Popen([sys.executable, "-m", "vcfc", "encode", str(tmp_path / "big.npy"), str(out),
                             "--codec", "vvenc", "--qp", "30", "--preset", "slow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids = _wait_for_encoders(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == [], f"ffmpeg still running: {alive}"
    assert not out.exists() and not list(tmp_path.glob(".big.vcfc.*"))  # nothing half-written


def test_ctrl_c_during_vcfc_run_stops_every_workers_encoders(tmp_path):
    exp = write_experiment(tmp_path / "exp.toml", qps=(22, 27, 32), limit=4, batch_size=2, layer="conv1",
                           codec="vvenc", preset="slow", layout="mosaic", workers=2)
    # a new session stands for the terminal: Ctrl-C goes to the whole foreground group
    proc = subprocess.Popen([sys.executable, "-m", "vcfc", "run", str(exp), "--out", str(tmp_path / "run"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    kids = _wait_for_encoders(proc, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == [], f"ffmpeg still running: {alive}"
    deadline = time.time() + 5  # the workers are gone too (the forkserver exits when vcfc has)
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
