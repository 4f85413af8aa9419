"""Verified downloads against a real local HTTP server; offline behaviour; prepare / describe."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from archlab.data import download as dl
from archlab.data.cache import DatasetNotFoundError, user_cache_dir
from archlab.data.download import ChecksumError, DownloadError, SourceFile, download
from archlab.data.mnist import mnist

from .conftest import IDX_NAMES, md5_of


def test_download_verified_lands_atomically(http_server, tmp_path):
    payload = bytes(range(256)) * 5000  # > one 1 MiB chunk
    (http_server.root / "f.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "f.bin"
    out = download(http_server.url + "f.bin", dest, md5=hashlib.md5(payload).hexdigest(),
                   sha256=hashlib.sha256(payload).hexdigest())
    assert out == dest and dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # no temp file left


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    (http_server.root / "f.bin").write_bytes(b"abc")
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(ChecksumError) as info:
        download(http_server.url + "f.bin", dest, md5="0" * 32)
    msg = str(info.value)
    assert "f.bin" in msg and "0" * 32 in msg and hashlib.md5(b"abc").hexdigest() in msg
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ChecksumError, match=hashlib.sha256(b"abc").hexdigest()):
        download(http_server.url + "f.bin", dest, sha256="f" * 64)
    assert list(dest.parent.iterdir()) == []


def test_mirrors_tried_in_order(http_server, tmp_path, closed_port_url):
    (http_server.root / "good").mkdir()
    (http_server.root / "bad").mkdir()
    (http_server.root / "good" / "f.bin").write_bytes(b"right")
    (http_server.root / "bad" / "f.bin").write_bytes(b"wrong")
    urls = [closed_port_url + "f.bin", http_server.url + "missing/f.bin",
            http_server.url + "bad/f.bin", http_server.url + "good/f.bin"]
    dest = download(urls, tmp_path / "out" / "f.bin", md5=hashlib.md5(b"right").hexdigest())
    assert dest.read_bytes() == b"right"
    assert http_server.requests == ["/missing/f.bin", "/bad/f.bin", "/good/f.bin"]
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]


def test_network_failure_names_url_and_reason(tmp_path, closed_port_url, http_server):
    with pytest.raises(DownloadError) as info:
        download([closed_port_url + "x.gz", http_server.url + "x.gz"], tmp_path / "out" / "x.gz",
                 md5="0" * 32)
    msg = str(info.value)
    assert closed_port_url + "x.gz" in msg and "refused" in msg.lower()
    assert http_server.url + "x.gz: HTTP 404" in msg
    assert list((tmp_path / "out").iterdir()) == []


def _serve_mnist(monkeypatch, http_server, make_idx_dataset, base_url=None):
    arrays = make_idx_dataset(http_server.root, seed=3)
    files = tuple(dataclasses.replace(f, urls=((base_url or http_server.url) + f.filename,),
                                      md5=md5_of(http_server.root / f.filename))
                  for f in dl.SOURCES["mnist"].files)
    monkeypatch.setitem(dl.SOURCES, "mnist", dataclasses.replace(dl.SOURCES["mnist"], files=files))
    return arrays


def test_builder_downloads_into_user_cache(monkeypatch, http_server, make_idx_dataset):
    arrays = _serve_mnist(monkeypatch, http_server, make_idx_dataset)
    bundle = mnist()
    cache = user_cache_dir("mnist")
    assert bundle.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(IDX_NAMES.values())
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert bundle.test.labels.tolist() == arrays["test_labels"].tolist()
    n = len(http_server.requests)
    assert n == 4
    mnist()  # now found in the cache: no further requests
    assert len(http_server.requests) == n


def test_wrong_published_checksum_gives_not_found(monkeypatch, http_server, make_idx_dataset):
    _serve_mnist(monkeypatch, http_server, make_idx_dataset)
    files = list(dl.SOURCES["mnist"].files)
    files[2] = dataclasses.replace(files[2], md5="0" * 32)
    monkeypatch.setitem(dl.SOURCES, "mnist",
                        dataclasses.replace(dl.SOURCES["mnist"], files=tuple(files)))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)t10k-images-idx3-ubyte.gz.*checksum") as info:
        mnist()
    assert isinstance(info.value.__cause__, ChecksumError)
    assert not (user_cache_dir("mnist") / files[2].filename).exists()


def test_offline_raises_helpful_not_found(monkeypatch, http_server, make_idx_dataset,
                                          closed_port_url, tmp_path):
    _serve_mnist(monkeypatch, http_server, make_idx_dataset, base_url=closed_port_url)
    with pytest.raises(DatasetNotFoundError) as info:
        mnist()
    msg = str(info.value)
    assert str(user_cache_dir("mnist")) in msg  # where it looked
    assert closed_port_url + "train-images-idx3-ubyte.gz" in msg and "refused" in msg.lower()
    assert "ARCHLAB_DATA" in msg and "archlab data prepare mnist" in msg
    assert not any(user_cache_dir("mnist").glob("*"))

    # Fashion-MNIST also suggests the Debian package; the system dir is searched and listed.
    fm = dl.SOURCES["fashion_mnist"]
    files = tuple(dataclasses.replace(f, urls=(closed_port_url + f.filename,)) for f in fm.files)
    missing_system = str(tmp_path / "no-debian-copy")
    monkeypatch.setitem(dl.SOURCES, "fashion_mnist",
                        dataclasses.replace(fm, files=files, system_dirs=(missing_system,)))
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "shared"))
    with pytest.raises(DatasetNotFoundError) as info:
        dl.obtain("fashion_mnist")
    msg = str(info.value)
    assert "dataset-fashion-mnist" in msg and missing_system in msg
    assert str(tmp_path / "shared" / "fashion_mnist") in msg


def test_download_false_makes_no_request(monkeypatch, http_server, make_idx_dataset):
    _serve_mnist(monkeypatch, http_server, make_idx_dataset)
    with pytest.raises(DatasetNotFoundError, match=r"download=False"):
        mnist(download=False)
    assert http_server.requests == []


def test_explicit_root_is_the_only_place_and_download_target(monkeypatch, http_server,
                                                             make_idx_dataset, tmp_path):
    _serve_mnist(monkeypatch, http_server, make_idx_dataset)
    make_idx_dataset(user_cache_dir("mnist"), seed=9)  # must be ignored when root is given
    root = tmp_path / "mine"
    bundle = mnist(root=root)
    assert bundle.source == str(root) and len(http_server.requests) == 4
    assert sorted(p.name for p in root.iterdir()) == sorted(IDX_NAMES.values())


def test_prepare_and_describe(monkeypatch, http_server, make_idx_dataset):
    _serve_mnist(monkeypatch, http_server, make_idx_dataset)
    info = {i.name: i for i in dl.describe_sources()}
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "imagefolder",
            "synthetic"} <= set(info)
    assert info["mnist"].location is None and info["mnist"].downloadable
    assert info["synthetic"].synthetic and not info["synthetic"].downloadable
    assert dl.prepare("mnist") == user_cache_dir("mnist")
    assert dl.describe_sources("mnist")[0].location == str(user_cache_dir("mnist"))
    assert isinstance(dl.prepare("digits"), str)


def test_source_table_is_well_formed():
    for name, source in dl.SOURCES.items():
        for f in source.files:
            assert isinstance(f, SourceFile) and len(f.md5) == 32 and int(f.md5, 16) >= 0, name
            assert f.urls and all(u.endswith("/" + f.filename) for u in f.urls), name
