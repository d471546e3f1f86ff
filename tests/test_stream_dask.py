"""The Dask engine gives the local engine's result, also when a worker is killed during the run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplab.stream import StreamOptions, run_stream

pytest.importorskip("dask.distributed")
pytestmark = pytest.mark.slow  # starting a LocalCluster takes seconds on a small machine


def test_dask_equals_local_and_survives_a_killed_worker(tmp_path: Path) -> None:
    X = np.random.default_rng(11).standard_normal((60_000, 3)).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    common: dict[str, Any] = {"chunk_rows": 3000, "shard_rows": 5000, "write_predictions": True, "progress": False}
    local = run_stream(str(path), StreamOptions(activations="relu,sigmoid", out=tmp_path / "local", **common))

    clients: list[Any] = []
    killed: list[int] = []

    def kill_one_worker(index: int, _summary: object) -> None:
        # after the first shard comes back, SIGKILL a worker process; its nanny starts a new one and the
        # scheduler reruns whatever that worker held
        if killed:
            return
        pids = clients[0].run(os.getpid)
        pid = next(iter(pids.values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    out = tmp_path / "dask"
    dask = run_stream(str(path), StreamOptions(activations="relu,sigmoid", out=out, engine="dask", workers=2,
                                               **common), on_client=clients.append, on_shard=kill_one_worker)
    assert killed
    assert dask.summary == local.summary
    assert json.loads((out / "manifest.json").read_text())["finished"] == [[0, 12]]
    got = np.concatenate([np.load(p) for p in sorted((out / "shards").glob("shard-*.npy"))])
    want = np.concatenate([np.load(p) for p in sorted((tmp_path / "local" / "shards").glob("shard-*.npy"))])
    np.testing.assert_array_equal(got, want)


class Crash(Exception):
    pass


def test_shards_finished_on_workers_survive_a_driver_kill(tmp_path: Path) -> None:
    """The driver dies after its first result; every shard a worker finished by then counts on --resume, listed
    in the manifest or not, and the resumed summary equals an uninterrupted run's."""
    import time

    X = np.random.default_rng(5).standard_normal((20_000, 3)).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    common: dict[str, Any] = {"chunk_rows": 1000, "shard_rows": 2000, "progress": False}
    local = run_stream(str(path), StreamOptions(activations="relu,sigmoid", out=tmp_path / "local", **common))
    out = tmp_path / "dask"

    def die_after_workers_finish(index: int, _summary: object) -> None:
        deadline = time.monotonic() + 60
        while len(list((out / "shards").glob("shard-*.json"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        raise Crash

    with pytest.raises(Crash):
        run_stream(str(path), StreamOptions(activations="relu,sigmoid", out=out, engine="dask", workers=2, **common),
                   on_shard=die_after_workers_finish)
    written = len(list((out / "shards").glob("shard-*.json")))
    listed = json.loads((out / "manifest.json").read_text())["finished"]
    assert written >= 4 and sum(b - a for a, b in listed) == 1  # the driver listed its first result only
    resumed = run_stream(str(path), StreamOptions(activations="relu,sigmoid", out=out, resume=True, **common))
    assert resumed.shards_skipped >= 4 and resumed.summary == local.summary
