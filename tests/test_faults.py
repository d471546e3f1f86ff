"""Fault injection: SIGKILL at points drawn from a fixed-seed schedule during training, streaming and fetching,
then resume and compare with the uninterrupted result; two writers racing for one folder; SIGINT to a sweep's
parent process alone (issue 15).

Every writer runs in a child process (python -c), so a kill is a real kill -9: no `finally`, no atexit.
Comparisons are bit for bit: the interrupted and the uninterrupted runs use the same kernels and one thread.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import hashlib
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = random.Random(15)  # the kill points; fixed, so a failure can be replayed
pytestmark = pytest.mark.slow


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}
    # A session of its own: whatever the child starts (sweep workers) can be ended with it in any case.
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def _kill(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def _wait_until(condition, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def _litter(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp")
                  or p.name.startswith(".npm-pack-"))


# ---------------------------------------------------------------- training

TRAIN = """
    import json, sys
    from clusters import gaussian_clusters
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run
    config = resolve_config(overrides=["model.input_size=100", "model.hidden_sizes=[128, 64]", "training.num_epochs=60",
                                       "training.batch_size=32", "training.device=cpu", "model.dropout_rate=0.2"])
    data = gaussian_clusters(8000, 100, 1, 99, spread=3.0), gaussian_clusters(500, 100, 2, 99, spread=3.0)
    summary = train_run(config, *data, RunStore(sys.argv[1], figures=False), progress=False, threads=1,
                        resume=sys.argv[2] == "resume")
    print(json.dumps({k: v for k, v in summary.items() if "time" not in k}))
"""


def _epochs_written(folder: Path) -> int:
    try:
        with (folder / "metrics.csv").open() as handle:
            return len(list(csv.DictReader(handle)))
    except OSError:
        return 0


def test_training_killed_at_random_points_resumes_to_the_uninterrupted_metrics(tmp_path):
    reference = json.loads(_finish(_start(TRAIN, str(tmp_path / "reference"), "new")))
    folder = tmp_path / "killed"
    kills = []
    for epochs_before in (0, 10, 25, 40):  # wait for this many finished epochs, then a random time more
        proc = _start(TRAIN, str(folder), "resume" if kills else "new")
        _wait_until(lambda n=epochs_before: _epochs_written(folder) >= n and (folder / "checkpoint.pt").exists(), proc)
        time.sleep(SCHEDULE.uniform(0.0, 0.3))
        kills.append((epochs_before, _kill(proc), _epochs_written(folder)))
    assert any(code == -signal.SIGKILL for _, code, _ in kills), kills  # at least one kill landed mid-run
    print("training kills (epochs waited for, exit code, epochs on disk):", kills)
    resumed = json.loads(_finish(_start(TRAIN, str(folder), "resume")))
    assert resumed == reference, kills
    assert _litter(folder) == []  # the last run removed what the killed ones left


# ---------------------------------------------------------------- streaming

STREAM = """
    import json, sys
    from mlplab.stream.run import StreamOptions, run_stream
    r = run_stream(sys.argv[1], StreamOptions(activations="relu,sigmoid", out=sys.argv[2],
                                              resume=sys.argv[3] == "resume", chunk_rows=4096, shard_rows=20000,
                                              write_predictions=True, progress=False, threads=1))
    print(json.dumps(r.summary.to_json()))
"""


def _finished_shards(folder: Path) -> int:
    try:
        return sum(b - a for a, b in json.loads((folder / "manifest.json").read_text())["finished"])
    except (OSError, ValueError, KeyError):
        return 0


def test_stream_killed_at_random_points_resumes_to_the_uninterrupted_result(tmp_path):
    X = np.random.default_rng(15).standard_normal((1_000_000, 3)).astype(np.float32) * 2
    source = tmp_path / "X.npy"
    np.save(source, X)
    reference = json.loads(_finish(_start(STREAM, str(source), str(tmp_path / "reference"), "new")))
    folder = tmp_path / "killed"
    kills = []
    for shards_before in (0, 10, 25):
        proc = _start(STREAM, str(source), str(folder), "resume" if kills else "new")
        _wait_until(lambda n=shards_before: _finished_shards(folder) >= n, proc)
        time.sleep(SCHEDULE.uniform(0.0, 0.3))
        kills.append((shards_before, _kill(proc), _finished_shards(folder)))
    print("stream kills (shards waited for, exit code, shards listed):", kills)
    resumed = json.loads(_finish(_start(STREAM, str(source), str(folder), "resume")))
    assert resumed == reference, kills
    got = np.concatenate([np.load(p) for p in sorted((folder / "shards").glob("shard-*.npy"))])
    want = np.concatenate([np.load(p) for p in sorted((tmp_path / "reference" / "shards").glob("shard-*.npy"))])
    np.testing.assert_array_equal(got, want)
    assert _litter(folder) == []


def test_two_stream_commands_on_one_folder(tmp_path):
    """Started together: one computes, the other says the folder is in use (or, if it starts late, that the
    folder holds a run): exit 2, one line; the folder then holds exactly the winner's run."""
    code = "import sys; from mlplab.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["stream", "synthetic:3e7", "--activations", "relu,sigmoid", "--no-progress", "--threads", "1",
            "--shard-rows", "500000", "--out", str(tmp_path / "out"), "--format", "json"]
    procs = [_start(code, *args), _start(code, *args)]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert ("is in use by another mlplab process" in loser[2] or "holds a previous run" in loser[2]), loser
    assert len(loser[2].strip().splitlines()) == 1
    winner = json.loads(next(r for r in results if r[0] == 0)[1].strip().splitlines()[-1])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"] == winner["rows"] == 30_000_000


# ---------------------------------------------------------------- fetching

FETCH = """
    import json, sys
    from pathlib import Path
    from mlplab.mnist.fetch import MnistFile, fetch_mnist
    specs = {k: MnistFile(k, v[0], v[1], tuple(v[2])) for k, v in json.loads(sys.argv[3]).items()}
    fetch_mnist(Path(sys.argv[1]), mirrors=[sys.argv[2]], use_npm=False, progress=False, files=specs, timeout=60)
"""


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files in 64 KiB pieces with a pause between them, so a kill can land mid-download."""

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        while piece := source.read(1 << 16):
            outputfile.write(piece)
            time.sleep(0.03)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a killed client resets its connection: expected here
        pass


def _stored(cache: Path, names) -> list[str]:
    return sorted(n for n in names if (cache / n).exists())


def test_fetch_killed_at_random_points_leaves_a_clean_cache(tmp_path):
    from mlplab.mnist.idx import encode_idx

    rng = np.random.default_rng(15)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (3000, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 3000, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 1000, dtype=np.uint8)}
    www = tmp_path / "www"
    www.mkdir()
    specs = {}
    for name, array in arrays.items():
        raw = encode_idx(array)
        packed = gzip.compress(raw, mtime=0)
        (www / f"{name}.gz").write_bytes(packed)
        specs[name] = [hashlib.md5(raw).hexdigest(), hashlib.md5(packed).hexdigest(), list(array.shape)]
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_SlowHandler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    cache = tmp_path / "cache"
    try:
        kills = []
        for stored in (0, 1, 2):  # wait for the fetch to begin and this many files, then a random time more
            proc = _start(FETCH, str(cache), url, json.dumps(specs))
            _wait_until(lambda n=stored: (cache / ".lock").exists() and len(_stored(cache, arrays)) >= n, proc)
            time.sleep(SCHEDULE.uniform(0.05, 0.5))
            kills.append((stored, _kill(proc), _stored(cache, arrays)))
        print("fetch kills (files waited for, exit code, files in the cache):", kills)
        _finish(_start(FETCH, str(cache), url, json.dumps(specs)))
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in cache.iterdir()) == sorted([".lock", *arrays]), kills
    for name in arrays:
        assert hashlib.md5((cache / name).read_bytes()).hexdigest() == specs[name][0]


# ---------------------------------------------------------------- SIGINT to a sweep's parent

SWEEP = """
    import signal, sys, torch
    # A shell that starts a job in the background without job control has it ignore SIGINT, and Python then
    # keeps ignoring it; a process manager's child hears it, as this one must.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from clusters import gaussian_clusters
    from mlplab.mnist.experiments import EXPERIMENTS
    from mlplab.mnist.sweep import SweepOptions, plan_sweep, run_sweep
    data = gaussian_clusters(5000, 784, 1, 99), gaussian_clusters(200, 784, 2, 99)
    # Four runs that neither diverge nor finish within seconds (the two large models start first), so the
    # signal always arrives while two run and two wait.
    names = ["baseline", "lr0.00001", "hidden16", "hidden16_nodropout"]
    plans = plan_sweep([EXPERIMENTS[n] for n in names], sys.argv[1], epochs=50)
    print(len(plans), flush=True)
    run_sweep(plans, SweepOptions(data=data, progress=False), jobs=2)
"""


def test_sigint_to_the_sweep_parent_alone_stops_it(tmp_path):
    """As a process manager stops a job: SIGINT (or SIGTERM) to the parent only. The running workers stop and
    the runs not yet started never start (before, the pool went on starting them)."""
    proc = _start(SWEEP, str(tmp_path))
    try:
        assert proc.stdout is not None and int(proc.stdout.readline()) == 4
        _wait_until(lambda: len(list(tmp_path.glob("*/checkpoint.pt"))) >= 2, proc, timeout=180)
        started = {p.parent.name for p in tmp_path.glob("*/config.json")}
        assert len(started) == 2
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep did not stop within 60 s of SIGINT")
        assert proc.returncode != 0
        time.sleep(1.0)
        stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")}
        time.sleep(2.0)
        assert {p.parent.name for p in tmp_path.glob("*/config.json")} == started  # no new run started
        assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")} == stamps  # and no worker still writes
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too, had they survived their parent
        proc.communicate()
