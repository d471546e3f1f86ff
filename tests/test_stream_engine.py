"""Streaming end to end: equals the full-batch forward, identical across chunkings, resumable, clear errors."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mlplab
from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.stream import StreamOptions, run_stream, sources
from mlplab.stream.sources import SyntheticSource, open_source
from mlplab.stream.summary import default_edges, summarize_y
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import load_problem


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    X = np.random.default_rng(7).standard_normal((20011, 3)).astype(np.float32) * 2
    path = tmp_path_factory.mktemp("stream") / "X.npy"
    np.save(path, X)
    return path, X


def predictions(out: Path) -> np.ndarray:
    return np.concatenate([np.load(p) for p in sorted((out / "shards").glob("shard-*.npy"))])


@pytest.mark.parametrize(("a1", "a2"), activation_pairs())
def test_streamed_predictions_equal_full_batch_forward(tmp_path: Path, data: tuple[Path, np.ndarray],
                                                       a1: str, a2: str) -> None:
    path, X = data
    t = load_problem().tensors()
    ref = mlplab.forward(torch.from_numpy(X).double(), a1, t["W1"], t["b1"], a2, t["W2"], t["b2"]).y_hat.reshape(-1)
    scale = 1 + (torch.from_numpy(X).double().abs() @ t["W1"].abs() + t["b1"].abs()) @ t["W2"].abs() + t["b2"].abs()
    first = None
    for chunk in (997, 4096, 50000):
        out = tmp_path / f"c{chunk}"
        r = run_stream(str(path), StreamOptions(activations=(a1, a2), chunk_rows=chunk, shard_rows=6000, out=out,
                                                write_predictions=True, progress=False))
        y = predictions(out)
        err = (torch.from_numpy(y).double() - ref) / scale.reshape(-1)
        torch.testing.assert_close(err, torch.zeros_like(err), atol=1e-6, rtol=0)
        assert r.summary == summarize_y(y, default_edges(a2))  # the summary describes exactly these y_hat
        if first is None:
            first = (y, r.summary)
        np.testing.assert_array_equal(y, first[0])
        assert r.summary == first[1]


def test_summary_identical_across_chunkings_shards_and_sources(tmp_path: Path, data: tuple[Path, np.ndarray]) -> None:
    path, X = data
    raw = tmp_path / "X.f32"
    X.tofile(raw)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, s in enumerate(range(0, len(X), 7000)):
        np.save(parts / f"p{i}.npy", X[s:s + 7000])
    runs = [run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=c, shard_rows=s, progress=False))
            for c, s in ((1 << 20, 1 << 24), (333, 5000), (4096, 4096))]
    runs.append(run_stream(str(raw), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, progress=False)))
    runs.append(run_stream(str(parts / "*.npy"), StreamOptions(activations="relu,sigmoid", chunk_rows=2500,
                                                               shard_rows=9000, progress=False)))
    runs.append(run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=5000, prefetch=1,
                                                    progress=False)))
    wide = tmp_path / "X64.npy"  # float64 rows are read (not mapped) and rounded to the same float32
    np.save(wide, X.astype(np.float64))
    runs.append(run_stream(str(wide), StreamOptions(activations="relu,sigmoid", chunk_rows=3000, progress=False)))
    runs.append(run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=999, threads=3,
                                                    progress=False)))
    assert all(r.summary == runs[0].summary for r in runs)
    assert runs[0].summary.rows == len(X)


def test_synthetic_chunks_depend_only_on_seed_and_row() -> None:
    s = SyntheticSource(200_000, 3, seed=4)
    whole = s.read(0, 200_000, np.empty((200_000, 3), np.float32))
    piece = s.read(65_000, 140_001, np.empty((80_000, 3), np.float32))
    np.testing.assert_array_equal(piece, whole[65_000:140_001])
    other = SyntheticSource(200_000, 3, seed=5).read(0, 10, np.empty((10, 3), np.float32))
    assert not np.array_equal(other, whole[:10])
    for b in range(4):  # the definition, block by block (the last one partial), drawn the plain way
        block = np.random.default_rng([4, b]).standard_normal((min(65_536, 200_000 - b * 65_536), 3),
                                                             dtype=np.float32) * np.float32(2.0)
        np.testing.assert_array_equal(whole[b * 65_536:(b + 1) * 65_536], block)
    a = run_stream("synthetic:200000:4", StreamOptions(activations="sigmoid,sigmoid", chunk_rows=30_000,
                                                       progress=False)).summary
    b = run_stream("synthetic:200000:4", StreamOptions(activations="sigmoid,sigmoid", chunk_rows=65_536,
                                                       shard_rows=100_000, progress=False)).summary
    assert a == b


class Crash(Exception):
    pass


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, data: tuple[Path, np.ndarray]) -> None:
    path, _ = data
    full = run_stream(str(path), StreamOptions(activations="sigmoid,relu", chunk_rows=1500, shard_rows=4000,
                                               out=tmp_path / "full", write_predictions=True, progress=False))
    out = tmp_path / "crashed"

    def crash_after_two(index: int, _summary: object) -> None:
        if index == 1:
            raise Crash

    with pytest.raises(Crash):
        run_stream(str(path), StreamOptions(activations="sigmoid,relu", chunk_rows=1500, shard_rows=4000, out=out,
                                            write_predictions=True, progress=False), on_shard=crash_after_two)
    assert json.loads((out / "manifest.json").read_text())["finished"] == [[0, 2]]  # shards 0 and 1
    assert not (out / "summary.json").exists()
    with pytest.raises(MlplabError, match="previous run"):
        run_stream(str(path), StreamOptions(activations="sigmoid,relu", chunk_rows=1500, shard_rows=4000, out=out,
                                            progress=False))
    with pytest.raises(MlplabError, match="another configuration"):
        run_stream(str(path), StreamOptions(activations="relu,relu", chunk_rows=1500, shard_rows=4000, out=out,
                                            resume=True, progress=False))
    seen: list[int] = []
    resumed = run_stream(str(path), StreamOptions(activations="sigmoid,relu", chunk_rows=700, shard_rows=4000, out=out,
                                                  resume=True, write_predictions=True, progress=False),
                         on_shard=lambda i, _s: seen.append(i))
    assert seen == [2, 3, 4, 5] and resumed.shards_skipped == 2
    assert resumed.summary == full.summary
    np.testing.assert_array_equal(predictions(out), predictions(tmp_path / "full"))
    assert json.loads((out / "summary.json").read_text())["rows"] == full.summary.rows


def test_nonfinite_policies(tmp_path: Path) -> None:
    X = np.random.default_rng(9).standard_normal((3000, 3)).astype(np.float32)
    X[[10, 2500], [1, 0]] = [np.nan, -np.inf]
    path = tmp_path / "bad.npy"
    np.save(path, X)
    with pytest.raises(MlplabError, match="row 10 "):
        run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, progress=False))
    skip = run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, nonfinite="skip",
                                               progress=False)).summary
    keep = run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, nonfinite="keep",
                                               progress=False)).summary
    clean = run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, nonfinite="skip",
                                                kernel="torch", progress=False)).summary
    for s in (skip, keep):
        assert s.rows == 3000 and s.nonfinite_rows == 2 and s.first_nonfinite_row == 10
    assert skip.counted == 2998 and skip.nonfinite_y_hat == 2
    assert keep.counted + keep.nonfinite_y_hat == 3000
    good = np.isfinite(X).all(axis=1)
    t = load_problem().tensors()
    ref = mlplab.forward(torch.from_numpy(X[good]), "relu", t["W1"].float(), t["b1"].float(), "sigmoid",
                         t["W2"].float(), t["b2"].float()).y_hat
    assert skip.positives == int((ref >= 0.5).sum())
    assert clean.counted == skip.counted and clean.nonfinite_rows == 2


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["stream", "synthetic:5000", "--activations", "relu,sigmoid", "--chunk-rows", "1024",
                        "--format", "json", "--no-progress"], capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["rows"] == 5000
    ref = run_stream("synthetic:5000", StreamOptions(activations="relu,sigmoid", progress=False)).summary
    assert summary["positives"] == ref.positives and summary["mean_y_hat"] == ref.mean_y_hat


def test_shards_finished_but_not_yet_listed_count_on_resume(tmp_path: Path, data: tuple[Path, np.ndarray],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between a shard's files and the manifest's update (the Dask driver lagging behind its workers)
    loses nothing: the shard's summary file carries the run's stamp and the resume counts it."""
    from mlplab.stream.manifest import RunDir

    path, _ = data
    common = {"chunk_rows": 1500, "shard_rows": 4000, "write_predictions": True, "progress": False}
    full = run_stream(str(path), StreamOptions(out=tmp_path / "full", **common))

    def crash_after_three(index: int, _summary: object) -> None:
        if index == 2:
            raise Crash

    monkeypatch.setattr(RunDir, "mark_finished", lambda self, finished: None)  # the driver never gets to it
    with pytest.raises(Crash):
        run_stream(str(path), StreamOptions(out=tmp_path / "out", **common), on_shard=crash_after_three)
    monkeypatch.undo()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["finished"] == []
    seen: list[int] = []
    resumed = run_stream(str(path), StreamOptions(out=tmp_path / "out", resume=True, **common),
                         on_shard=lambda i, _s: seen.append(i))
    assert resumed.shards_skipped == 3 and seen == [3, 4, 5] and resumed.summary == full.summary
    np.testing.assert_array_equal(predictions(tmp_path / "out"), predictions(tmp_path / "full"))


@pytest.mark.parametrize("finished", [False, True])
def test_a_source_changed_in_place_is_not_mixed_in(tmp_path: Path, data: tuple[Path, np.ndarray],
                                                   finished: bool) -> None:
    """Same path, same size, same modification time, other numbers: --resume names the file and stops, rather
    than answering from the old shards or mixing old and new ones."""
    _, X = data
    path = tmp_path / "X.npy"
    np.save(path, X)

    def crash(index: int, _summary: object) -> None:
        if index == 1 and not finished:
            raise Crash

    out = tmp_path / "out"
    with contextlib.suppress(Crash):
        run_stream(str(path), StreamOptions(chunk_rows=1500, shard_rows=4000, out=out, progress=False), on_shard=crash)
    stamp = os.stat(path).st_mtime_ns
    np.save(path, -X)  # another file's numbers, same shape and size
    os.utime(path, ns=(stamp, stamp))
    with pytest.raises(MlplabError, match=r"the source file .*X\.npy changed since the run .* \(content differ\)"):
        run_stream(str(path), StreamOptions(chunk_rows=1500, shard_rows=4000, out=out, resume=True, progress=False))
    np.save(path, X)  # the same numbers again, a new modification time
    with pytest.raises(MlplabError, match=r"\(modification time differ\)"):
        run_stream(str(path), StreamOptions(chunk_rows=1500, shard_rows=4000, out=out, resume=True, progress=False))


def test_cli_bad_inputs_exit_2(tmp_path: Path, data: tuple[Path, np.ndarray],
                               capsys: pytest.CaptureFixture[str]) -> None:
    path, X = data
    two_cols = tmp_path / "two.npy"
    np.save(two_cols, X[:, :2])
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage that is not a header")
    truncated = tmp_path / "short.npy"
    truncated.write_bytes(path.read_bytes()[:1000])
    odd = tmp_path / "odd.f32"
    odd.write_bytes(b"\0" * 10)
    cases = {
        str(two_cols): "2 columns",
        str(corrupt): "not a readable .npy",
        str(truncated): "truncated",
        str(tmp_path / "missing.npy"): "cannot read",
        str(odd): "whole number",
        str(tmp_path / "none-*.npy"): "no file matches",
        "synthetic:-5": "positive",
        str(tmp_path): "is a folder",  # used to fail with OSError 22, or a misleading "not a whole number of rows"
    }
    for source, message in cases.items():
        code, _, err = cli(["stream", source, "--activations", "relu,sigmoid", "--no-progress"], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (source, err)
    for extra, message in ((["--chunk-rows", "0"], "chunk size"), (["--activations", "relu,tanh"], "unknown"),
                           (["--shard-rows", "0"], "shard size"), (["--write-predictions"], "--out")):
        args = ["stream", str(path), "--activations", "relu,sigmoid", "--no-progress", *extra]
        code, _, err = cli(args, capsys)
        assert code == 2 and message in err, (extra, err)


def test_raw_columns_must_match_d(tmp_path: Path) -> None:
    raw = tmp_path / "x.f32"
    np.zeros((4, 6), np.float32).tofile(raw)
    assert open_source(str(raw), d=3).rows == 8  # d = 3 columns by default
    with pytest.raises(MlplabError, match="6 columns but the network takes d = 3"):
        open_source(str(raw), d=3, columns=6)


def test_rows_not_in_the_page_cache_are_faulted_in_or_read(monkeypatch: pytest.MonkeyPatch,
                                                            data: tuple[Path, np.ndarray]) -> None:
    """A cold chunk is faulted in by the reader (MADV_POPULATE_READ) and then mapped; where the kernel cannot
    do that it is read into a buffer. Either way the run gives the summary of a warm run."""
    path, X = data
    warm = run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=3000, progress=False)).summary
    monkeypatch.setattr(sources, "_resident", lambda addr, size: False)  # every chunk looks cold
    src = open_source(str(path), d=3)
    view = src.mapped(100, 4100)
    if view is not None:  # the kernel could fault the rows in (Linux 5.14 and later)
        np.testing.assert_array_equal(view, X[100:4100])
    assert run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=3000,
                                               progress=False)).summary == warm
    monkeypatch.setattr(sources, "_populate", lambda addr, size: False)  # Linux before 5.14
    assert src.mapped(100, 4100) is None
    assert run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=3000,
                                               progress=False)).summary == warm
    src.close()


def test_mapped_rows_equal_read_rows(tmp_path: Path, data: tuple[Path, np.ndarray]) -> None:
    path, X = data
    parts = tmp_path / "parts"
    parts.mkdir()
    np.save(parts / "a.npy", X[:5000])
    np.save(parts / "b.npy", X[5000:9000].astype(np.float64))
    src = open_source(str(path), d=3)
    view = src.mapped(100, 4100)
    assert view is not None and not view.flags.writeable
    np.testing.assert_array_equal(view, X[100:4100])
    src.drop(100, 4100)  # the pages go from this process; the rows are still there when read again
    np.testing.assert_array_equal(src.mapped(0, 5000), X[:5000])
    both = open_source(str(parts / "*.npy"), d=3)
    assert both.spans(4000, 6000) == [(4000, 5000), (5000, 6000)]
    assert both.mapped(4000, 6000) is None and both.mapped(5000, 6000) is None  # across files; float64
    np.testing.assert_array_equal(both.mapped(4000, 5000), X[4000:5000])
    np.testing.assert_array_equal(both.read(4000, 6000, np.empty((2000, 3), np.float32)), X[4000:6000])
    src.close()
    both.close()


@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_chunks_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """The native kernel's threads are given up to AHEAD chunks at once, the other kernels one: the bound
    on the chunks held (memory) that the engine's docstring states."""
    from mlplab.stream import engine
    from mlplab.stream.kernel import ChunkKernel

    live, peak = [0], [0]
    start = ChunkKernel.start

    def counting_start(self: ChunkKernel, X: np.ndarray, row0: int):  # type: ignore[no-untyped-def]
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        wait = start(self, X, row0)

        def done():  # type: ignore[no-untyped-def]
            live[0] -= 1
            return wait()

        return done

    monkeypatch.setattr(ChunkKernel, "start", counting_start)
    r = run_stream("synthetic:20000", StreamOptions(activations="relu,sigmoid", chunk_rows=1000, kernel=kernel,
                                                    progress=False))
    assert r.summary.rows == 20000 and live[0] == 0
    assert peak[0] == (engine.AHEAD if r.kernel == "native" else 1)


def test_a_fresh_map_every_so_often_lets_the_old_one_go(monkeypatch: pytest.MonkeyPatch,
                                                        data: tuple[Path, np.ndarray]) -> None:
    """Unmapped pages can leave their page tables behind, so a file is served from a fresh map every
    REMAP_BYTES; the old map is freed once its chunks are dropped. Same rows, same summary."""
    import weakref

    path, X = data
    whole = run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000, progress=False)).summary
    monkeypatch.setattr(sources, "REMAP_BYTES", 5 * 1000 * 12)  # a fresh map every five chunks
    assert run_stream(str(path), StreamOptions(activations="relu,sigmoid", chunk_rows=1000,
                                               progress=False)).summary == whole
    src = open_source(str(path), d=3)
    refs = []  # weak references to the map behind each chunk
    for start in range(0, 20000, 1000):
        view = src.mapped(start, start + 1000)
        assert view is not None
        np.testing.assert_array_equal(view, X[start:start + 1000])
        refs.append(weakref.ref(src._served[start]))
        if start and start % 5000:
            assert refs[-1]() is refs[-2]()  # the same map as the chunk before
        elif start:
            assert refs[-2]() is None  # a fresh map; the old one went with its last chunk
        del view
        src.drop(start, start + 1000)
    src.close()
