"""The run folder: shards, their atomic outputs, and the manifest that is the record of finished work.

    OUT/config.json                 resolved configuration (written once; --resume must match it)
    OUT/manifest.json               {"config_hash", "shards", "finished": [[start, stop), ...]} (shard index
                                    ranges, so it stays small for 10^5 shards), rewritten atomically
    OUT/shards/shard-000007.json    partial summary of shard 7 (atomic)
    OUT/shards/shard-000007.npy     its predictions, float32 (N_shard,) (atomic, with --write-predictions)
    OUT/summary.json                merged summary, written when every shard is finished

A shard counts as finished when its summary file is in place and either the manifest lists it or the file
carries the run's config hash (the summary is written last, after the predictions, by whichever process ran
the shard: the Dask engine's workers record their own shards this way). A run killed at any instant loses at
most the shards in flight and never counts one twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_open, atomic_write_json, ensure_dir
from mlplab.stream.summary import Summary


def plan_shards(rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the shards.

    >>> plan_shards(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    if shard_rows <= 0:
        raise MlplabError(f"shard size must be positive, got {shard_rows}", hint="pass --shard-rows 16777216")
    return [(s, min(rows, s + shard_rows)) for s in range(0, rows, shard_rows)]


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


class RunDir:
    """Files of one streaming run under `root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.shards_dir = self.root / "shards"
        self._digest, self._n_shards = "", 0

    def shard_summary_path(self, i: int) -> Path:
        return self.shards_dir / f"shard-{i:06d}.json"

    def shard_predictions_path(self, i: int) -> Path:
        return self.shards_dir / f"shard-{i:06d}.npy"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def start(self, config: dict[str, Any], n_shards: int, resume: bool) -> set[int]:
        """Create or reopen the folder; return the shards already finished (empty unless resuming)."""
        ensure_dir(self.shards_dir)
        digest = config_hash(config)
        if self.manifest_path.exists():
            manifest = self._read_manifest()
            if not resume:
                raise MlplabError(f"{self.root} holds a previous run",
                                  hint="pass --resume to continue it, or choose another --out")
            if manifest.get("config_hash") != digest or manifest.get("shards") != n_shards:
                self._check_same_source(config)
                raise MlplabError(f"{self.root} holds a run with another configuration (source, problem, "
                                  "activations, shard size, policy or histogram differ)",
                                  hint="resume with the same arguments, or choose another --out")
            self._digest, self._n_shards = digest, n_shards
            listed = {i for i in finished_shards(manifest) if self.shard_summary_path(i).exists()}
            return listed | self._finished_unlisted(listed, n_shards)
        atomic_write_json(self.root / "config.json", config)
        self._digest, self._n_shards = digest, n_shards
        self._write_manifest(set())
        return set()

    def _check_same_source(self, config: dict[str, Any]) -> None:
        """A clear error naming the input file that changed since the run began (its shards would be stale)."""
        try:
            saved = json.loads((self.root / "config.json").read_text()).get("source", {})
        except (OSError, ValueError, AttributeError):
            return
        before = {f.get("path"): f for f in saved.get("files", []) if isinstance(f, dict)}
        for now in config.get("source", {}).get("files", []):
            old = before.get(now["path"])
            if old is not None and old != now:
                labels = {"bytes": "size", "mtime_ns": "modification time", "sample_sha256": "content"}
                what = [label for key, label in labels.items() if old.get(key) != now.get(key)]
                raise MlplabError(f"the source file {now['path']} changed since the run in {self.root} began "
                                  f"({', '.join(what) or 'identity'} differ); its finished "
                                  "shards were computed from the old numbers",
                                  hint="stream it into a new --out folder (or delete this one) to start over")

    def write_shard(self, i: int, summary: Summary) -> None:
        """Partial summary of shard i (its predictions, if any, were written by `PredictionWriter`), stamped with
        the run's config hash: written last, it is the worker's own record that the shard is finished, so a
        shard whose task ended just before a kill counts even if the driver had not yet listed it."""
        if not self._digest:  # a Dask worker: the driver's manifest names the run
            self._digest = str(self._read_manifest().get("config_hash", ""))
        atomic_write_json(self.shard_summary_path(i), {**summary.to_json(), "run": self._digest})

    def _finished_unlisted(self, listed: set[int], n_shards: int) -> set[int]:
        """Shards not in the manifest whose summary file carries this run's stamp (finished before a kill)."""
        found = set()
        for path in self.shards_dir.glob("shard-*.json"):
            try:
                i = int(path.stem.removeprefix("shard-"))
                if i in listed or not 0 <= i < n_shards:
                    continue
                if json.loads(path.read_text()).get("run") == self._digest:
                    found.add(i)
            except (OSError, ValueError, AttributeError):
                continue  # unreadable: the shard is simply done again
        return found

    def read_shard(self, i: int) -> Summary:
        try:
            return Summary.from_json(json.loads(self.shard_summary_path(i).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise MlplabError(f"cannot read {self.shard_summary_path(i)}: {exc}",
                              hint="delete that file and run again with --resume (the shard is redone)") from exc

    def mark_finished(self, finished: set[int]) -> None:
        """Record `finished` (every shard finished so far) in the manifest."""
        self._write_manifest(finished)

    def _read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise MlplabError(f"{self.manifest_path} is unreadable: {exc}",
                              hint="choose another --out, or delete the folder to start over") from exc
        if not isinstance(data, dict):
            raise MlplabError(f"{self.manifest_path} is not a manifest", hint="choose another --out")
        return data

    def _write_manifest(self, finished: set[int]) -> None:
        atomic_write_json(self.manifest_path, {"version": 1, "config_hash": self._digest, "shards": self._n_shards,
                                               "finished": to_ranges(finished)})


def to_ranges(indices: set[int]) -> list[list[int]]:
    """Sorted indices as half-open ranges.

    >>> to_ranges({0, 1, 2, 5, 7, 8})
    [[0, 3], [5, 6], [7, 9]]
    """
    ranges: list[list[int]] = []
    for i in sorted(indices):
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def finished_shards(manifest: dict[str, Any]) -> set[int]:
    """The shard indices a manifest lists as finished."""
    try:
        return {i for start, stop in manifest.get("finished", []) for i in range(int(start), int(stop))}
    except (TypeError, ValueError) as exc:
        raise MlplabError("the manifest's list of finished shards is malformed",
                          hint="choose another --out, or delete the folder to start over") from exc


class PredictionWriter:
    """Streams a shard's float32 predictions into `path` chunk by chunk; the file appears only on `close`."""

    def __init__(self, path: Path, rows: int) -> None:
        self._ctx = atomic_open(path, "wb")
        self._fh = self._ctx.__enter__()
        np.lib.format.write_array_header_1_0(self._fh, {"descr": "<f4", "fortran_order": False, "shape": (rows,)})

    def write(self, y_hat: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(y_hat, dtype="<f4").tobytes())

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        with contextlib.suppress(BaseException):  # the original error is the one to report
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
