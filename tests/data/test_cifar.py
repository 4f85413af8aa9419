"""CIFAR python-version parsing: exact arrays from official-layout batches, safe unpickling."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from archlab.data.cifar import CIFAR10, CIFAR100, cifar10, cifar100, load_batch
from archlab.data.download import SOURCES
from archlab.data.idx import CorruptDataError

from .conftest import py2_pickle


def _tarball_only(archive, root):
    """A directory holding just the tarball, so the tarball path is what gets read."""
    root.mkdir()
    return archive.rename(root / archive.name)


def _check_cifar10(bundle, expected):
    for split in ("train", "test"):
        data = expected[f"{split}_data"]
        part = getattr(bundle, split)
        # Official row layout: 1024 R, 1024 G, 1024 B, each 32x32 row-major.
        n, c, r, k = len(data) - 1, 2, 5, 7
        assert part.images[n, c, r, k].item() == data[n, c * 1024 + r * 32 + k]
        assert torch.equal(part.images.reshape(len(data), -1), torch.from_numpy(data))
        assert part.labels.tolist() == expected[f"{split}_labels"].tolist()
    assert bundle.classes == expected["classes"]
    assert (bundle.in_chans, bundle.img_size) == (3, (32, 32))
    x = bundle.train.images.double() / 255
    assert bundle.mean == pytest.approx(x.mean((0, 2, 3)).tolist())
    assert bundle.std == pytest.approx(x.std((0, 2, 3)).tolist())


def test_cifar10_from_tarball(tmp_path, make_cifar10):
    expected = make_cifar10(tmp_path / "src")
    root = tmp_path / "root"
    _tarball_only(expected["archive"], root)
    bundle = cifar10(root=root, download=False)
    assert len(bundle.train) == 15 and len(bundle.test) == 4
    assert bundle.source == str(root / "cifar-10-python.tar.gz")
    _check_cifar10(bundle, expected)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_cifar10_from_extracted_directory(tmp_path, make_cifar10):
    expected = make_cifar10(tmp_path)
    expected["archive"].unlink()
    _check_cifar10(cifar10(root=tmp_path, download=False), expected)  # parent of the folder
    _check_cifar10(cifar10(root=expected["folder"], download=False), expected)  # the folder itself


def test_cifar100_fine_and_coarse(tmp_path, make_cifar100):
    expected = make_cifar100(tmp_path / "src")
    _tarball_only(expected["archive"], tmp_path / "root")
    bundle = cifar100(root=tmp_path / "root", download=False)
    assert bundle.source == str(tmp_path / "root" / "cifar-100-python.tar.gz")
    assert bundle.classes == expected["classes"] and bundle.num_classes == 100
    assert bundle.extra["coarse_classes"] == expected["coarse_classes"]
    for split in ("train", "test"):
        part = getattr(bundle, split)
        data = torch.from_numpy(expected[f"{split}_data"])
        assert torch.equal(part.images.reshape(len(part), -1), data)
        assert part.labels.tolist() == expected[f"{split}_fine_labels"].tolist()
        coarse = bundle.extra["coarse_labels"][split]
        assert coarse.tolist() == expected[f"{split}_coarse_labels"].tolist()


def test_layouts_match_source_table():
    assert SOURCES["cifar10"].files[0].filename == CIFAR10.archive
    assert SOURCES["cifar100"].files[0].filename == CIFAR100.archive


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path, make_cifar10):
    marker = tmp_path / "pwned"
    evil = py2_pickle({b"data": _Exploit(marker), b"labels": []})
    expected = make_cifar10(tmp_path / "d", batch_bytes={"data_batch_3": evil})
    _tarball_only(expected["archive"], tmp_path / "tar")
    for root in (tmp_path / "tar", expected["folder"]):  # tarball and extracted folder
        with pytest.raises(CorruptDataError, match=r"data_batch_3.*refusing.*system"):
            cifar10(root=root, download=False)
    assert not marker.exists()
    # A global smuggled anywhere, even one that looks harmless, is refused too.
    with pytest.raises(CorruptDataError, match="builtins.print"):
        load_batch(pickle.dumps({"data": print}), "batch_x")


def test_python3_pickles_with_str_keys_load():
    data = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    batch = load_batch(pickle.dumps({"data": data, "labels": [3]}, protocol=4), "b")
    assert np.array_equal(batch["data"], data) and batch["labels"] == [3]


def test_label_out_of_range(tmp_path, make_cifar10):
    bad = py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]})
    make_cifar10(tmp_path, batch_bytes={"test_batch": bad})
    with pytest.raises(CorruptDataError, match=r"test_batch.*outside 0\.\.9"):
        cifar10(root=tmp_path, download=False)


def test_count_mismatch_and_missing_key(tmp_path, make_cifar10):
    short = py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]})
    make_cifar10(tmp_path / "a", batch_bytes={"data_batch_1": short})
    with pytest.raises(CorruptDataError, match=r"data_batch_1.*'labels' must be 2"):
        cifar10(root=tmp_path / "a", download=False)
    nokey = py2_pickle({b"data": np.zeros((2, 3072), np.uint8)})
    make_cifar10(tmp_path / "b", batch_bytes={"data_batch_2": nokey})
    with pytest.raises(CorruptDataError, match=r"data_batch_2.*missing key 'labels'"):
        cifar10(root=tmp_path / "b", download=False)
    wrong_shape = py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]})
    make_cifar10(tmp_path / "c", batch_bytes={"data_batch_5": wrong_shape})
    with pytest.raises(CorruptDataError, match=r"data_batch_5.*\(N, 3072\)"):
        cifar10(root=tmp_path / "c", download=False)


def test_truncated_tarball(tmp_path, make_cifar10):
    expected = make_cifar10(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    data = expected["archive"].read_bytes()
    (root / "cifar-10-python.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptDataError, match="cifar-10-python.tar.gz"):
        cifar10(root=root, download=False)
