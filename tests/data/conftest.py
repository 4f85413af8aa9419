"""Fixtures writing small files in the official dataset formats, and a local HTTP server.

Nothing here touches the network: downloads are served from 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from archlab.data.idx import write_idx

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path_factory, monkeypatch):
    """No test sees the real ~/.cache or a user's ARCHLAB_DATA."""
    monkeypatch.delenv("ARCHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def make_idx_dataset():
    """``make(dir, n_train=12, n_test=5, size=(28, 28), seed=0) -> arrays`` in the MNIST layout."""

    def make(directory: Path, n_train: int = 12, n_test: int = 5, size=(28, 28), seed: int = 0,
             num_classes: int = 10) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = {
            "train_images": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
            "train_labels": rng.integers(0, num_classes, n_train, dtype=np.uint8),
            "test_images": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
            "test_labels": rng.integers(0, num_classes, n_test, dtype=np.uint8),
        }
        directory.mkdir(parents=True, exist_ok=True)
        for key, name in IDX_NAMES.items():
            write_idx(directory / name, arrays[key])
        return arrays

    return make


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), the way the official CIFAR batches were
    written by cPickle, and names numpy's globals as numpy 1.x did (``numpy.core.multiarray``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _batch(rng, n: int, label_keys: dict[str, int], tag: bytes) -> tuple[dict, dict]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = {k: rng.integers(0, c, n).tolist() for k, c in label_keys.items()}
    batch = {b"batch_label": tag, b"data": data,
             b"filenames": [b"img_%d.png" % i for i in range(n)]}
    batch.update({k.encode(): v for k, v in labels.items()})
    return batch, {"data": data, **labels}


def _tar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@pytest.fixture
def make_cifar10():
    """``make(dir) -> expected`` writes cifar-10-batches-py/ and cifar-10-python.tar.gz in dir.

    Official layout: data_batch_1..5 + test_batch (dicts with data uint8 (N, 3072), labels,
    filenames, batch_label) and batches.meta (label_names, num_cases_per_batch, num_vis).
    """

    def make(directory: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0,
             batch_bytes: dict[str, bytes] | None = None) -> dict:
        rng = np.random.default_rng(seed)
        folder = directory / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                 b"horse", b"ship", b"truck"]
        (folder / "batches.meta").write_bytes(py2_pickle(
            {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}))
        expected = {"train": [], "test": []}
        for member, split, n in [*((f"data_batch_{i}", "train", per_batch) for i in range(1, 6)),
                                 ("test_batch", "test", n_test)]:
            batch, arrays = _batch(rng, n, {"labels": 10}, member.encode())
            (folder / member).write_bytes(py2_pickle(batch))
            expected[split].append(arrays)
        for member, content in (batch_bytes or {}).items():
            (folder / member).write_bytes(content)
        _tar(folder, directory / "cifar-10-python.tar.gz")
        out = {"classes": [n.decode() for n in names], "folder": folder,
               "archive": directory / "cifar-10-python.tar.gz"}
        for split, parts in expected.items():
            out[f"{split}_data"] = np.concatenate([p["data"] for p in parts])
            out[f"{split}_labels"] = np.concatenate([p["labels"] for p in parts])
        return out

    return make


@pytest.fixture
def make_cifar100():
    """``make(dir) -> expected``: cifar-100-python.tar.gz with train, test and meta."""

    def make(directory: Path, n_train: int = 6, n_test: int = 4, seed: int = 1) -> dict:
        rng = np.random.default_rng(seed)
        folder = directory / "cifar-100-python"
        folder.mkdir(parents=True)
        fine = [b"fine%02d" % i for i in range(100)]
        coarse = [b"coarse%02d" % i for i in range(20)]
        (folder / "meta").write_bytes(py2_pickle({b"fine_label_names": fine,
                                                 b"coarse_label_names": coarse}))
        out = {"classes": [n.decode() for n in fine], "coarse_classes": [n.decode() for n in coarse]}
        for split, n in (("train", n_train), ("test", n_test)):
            batch, arrays = _batch(rng, n, {"fine_labels": 100, "coarse_labels": 20}, split.encode())
            (folder / split).write_bytes(py2_pickle(batch))
            out.update({f"{split}_{k}": np.asarray(v) for k, v in arrays.items()})
        out["archive"] = _tar(folder, directory / "cifar-100-python.tar.gz")
        return out

    return make


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serves ``server.root`` (a fresh directory) at ``server.url`` on 127.0.0.1; counts requests."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    server.root = root
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    server.requests = requests
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
