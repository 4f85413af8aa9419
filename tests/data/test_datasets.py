"""Builders: look-up order, the real Debian Fashion-MNIST, digits, imagefolder, synthetic."""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.data._registry import DATASETS, channel_stats
from archlab.data.cache import DatasetNotFoundError
from archlab.data.digits import MAX_LEVEL, digits
from archlab.data.download import SOURCES, locate
from archlab.data.idx import CorruptDataError, write_idx
from archlab.data.imagefolder import imagefolder
from archlab.data.mnist import FASHION_MNIST_CLASSES, fashion_mnist, mnist
from archlab.data.synthetic import synthetic

from .conftest import IDX_NAMES

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# --- look-up order ---------------------------------------------------------------------------

def test_lookup_order_env_then_cache_then_system(tmp_path, monkeypatch, make_idx_dataset):
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "archlab" / "datasets" / "fashion_mnist"
    system = tmp_path / "system"
    monkeypatch.setitem(SOURCES, "fashion_mnist",
                        dataclasses.replace(SOURCES["fashion_mnist"], system_dirs=(str(system),)))
    env_arrays = make_idx_dataset(tmp_path / "shared" / "fashion_mnist", seed=1)
    cache_arrays = make_idx_dataset(cache, seed=2)
    sys_arrays = make_idx_dataset(system, seed=3)
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "shared"))
    for expected_dir, arrays in ((tmp_path / "shared" / "fashion_mnist", env_arrays),
                                 (cache, cache_arrays), (system, sys_arrays)):
        bundle = fashion_mnist(download=False)
        assert bundle.source == str(expected_dir)
        assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(arrays["train_images"]))
        assert bundle.classes == FASHION_MNIST_CLASSES
        for f in expected_dir.iterdir():  # remove this copy: the next place must be used
            f.unlink()


def test_incomplete_directory_is_skipped(tmp_path, monkeypatch, make_idx_dataset):
    shared = tmp_path / "shared" / "mnist"
    make_idx_dataset(shared)
    (shared / IDX_NAMES["test_labels"]).unlink()
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "shared"))
    with pytest.raises(DatasetNotFoundError, match=str(shared)):
        mnist(download=False)


def test_uncompressed_idx_files_accepted(tmp_path, make_idx_dataset):
    arrays = make_idx_dataset(tmp_path)
    for name in IDX_NAMES.values():
        (tmp_path / name[:-3]).write_bytes(gzip.decompress((tmp_path / name).read_bytes()))
        (tmp_path / name).unlink()
    bundle = mnist(root=tmp_path, download=False)
    assert bundle.test.labels.tolist() == arrays["test_labels"].tolist()
    assert bundle.classes == [str(d) for d in range(10)]


def test_idx_consistency_errors(tmp_path, make_idx_dataset):
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / IDX_NAMES["test_labels"], np.array([0, 1, 2], np.uint8))  # 5 images
    with pytest.raises(CorruptDataError, match="5 images but .* 3 labels"):
        mnist(root=tmp_path, download=False)
    write_idx(tmp_path / IDX_NAMES["test_labels"], np.array([0, 1, 2, 3, 10], np.uint8))
    with pytest.raises(CorruptDataError, match=r"label 10 out of range 0\.\.9"):
        mnist(root=tmp_path, download=False)


# --- the real Fashion-MNIST shipped by Debian (dataset-fashion-mnist) --------------------------

@pytest.fixture(scope="module")
def debian_fmnist():
    if not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return fashion_mnist(root=DEBIAN_FMNIST, download=False)  # parsed once (~1 s)


def test_debian_fashion_mnist_is_found_by_default(debian_fmnist):
    assert locate("fashion_mnist") == DEBIAN_FMNIST  # env unset, cache empty (autouse fixture)


def test_debian_fashion_mnist_contents(debian_fmnist):
    b = debian_fmnist
    assert b.train.images.shape == (60000, 1, 28, 28) and b.test.images.shape == (10000, 1, 28, 28)
    assert b.train.images.dtype == torch.uint8 and b.train.labels.dtype == torch.int64
    assert torch.bincount(b.train.labels).tolist() == [6000] * 10
    assert torch.bincount(b.test.labels).tolist() == [1000] * 10
    assert b.classes == FASHION_MNIST_CLASSES and (b.in_chans, b.img_size) == (1, (28, 28))
    # Parity with a direct read of the raw bytes (16-byte header, then pixels).
    with gzip.open(DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    assert torch.equal(b.test.images.flatten(), torch.from_numpy(raw.copy()))
    assert b.mean[0] == pytest.approx(0.2860, abs=1e-4)  # published Fashion-MNIST stats
    assert b.std[0] == pytest.approx(0.3530, abs=1e-4)


# --- digits ----------------------------------------------------------------------------------

def test_digits_matches_sklearn_and_is_stratified():
    from sklearn.datasets import load_digits
    raw = load_digits()
    b = digits()
    assert len(b.train) + len(b.test) == 1797 and b.num_classes == 10
    assert b.train.images.shape[1:] == (1, 8, 8) and b.img_size == (8, 8)
    # Every image maps back to an sklearn image of the same label (exact 16-level inverse).
    pixels = np.concatenate([b.train.images, b.test.images])[:, 0].astype(np.float64)
    levels = np.rint(pixels * MAX_LEVEL / 255)
    labels = np.concatenate([b.train.labels, b.test.labels])
    order = np.lexsort(levels.reshape(len(levels), -1).T[::-1])
    ref_order = np.lexsort(raw.images.reshape(1797, -1).T[::-1])
    np.testing.assert_array_equal(levels[order], raw.images[ref_order])
    np.testing.assert_array_equal(labels[order], raw.target[ref_order])
    ref_counts = np.bincount(raw.target)
    assert b.test.labels.bincount().tolist() == [int(round(0.2 * c)) for c in ref_counts]
    assert int(b.train.images.max()) == 255
    assert torch.equal(digits().test.images, b.test.images)  # fixed split


# --- imagefolder -----------------------------------------------------------------------------

def _write_images(root: Path, layout: dict[str, dict[str, int]], size=(6, 5), seed=0) -> dict:
    """layout: split -> class -> count; returns {path: (H, W, 3) uint8 array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, classes in layout.items():
        for cls, count in classes.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
                written[d / f"{i}.png"] = arr
    return written


def test_imagefolder_reads_exact_pixels(tmp_path):
    written = _write_images(tmp_path, {"train": {"dog": 2, "cat": 3}, "test": {"cat": 1, "dog": 1}})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    b = imagefolder(root=tmp_path)
    assert b.classes == ["cat", "dog"] and b.in_chans == 3 and b.img_size == (5, 6)
    assert len(b.train) == 5 and len(b.test) == 2
    assert b.train.labels.tolist() == [0, 0, 0, 1, 1]
    for i, (path, label) in enumerate(b.train.samples):
        x, y = b.train[i]
        assert x.dtype == torch.uint8 and x.shape == (3, 5, 6) and y == label
        assert torch.equal(x, torch.from_numpy(written[path]).permute(2, 0, 1))
    # stats_images >= N: exact statistics of the whole training split
    stacked = torch.stack([b.train[i][0] for i in range(len(b.train))])
    mean, std = channel_stats(stacked)
    assert b.mean == pytest.approx(mean) and b.std == pytest.approx(std)


def test_imagefolder_gray_resize_and_val(tmp_path):
    written = _write_images(tmp_path, {"train": {"a": 2, "b": 1}, "val": {"a": 1, "b": 1}})
    b = imagefolder(root=tmp_path, mode="L", image_size=4)
    assert b.in_chans == 1 and b.img_size == (4, 4) and len(b.test) == 2
    path, _ = b.train.samples[0]
    gray = Image.fromarray(written[path]).convert("L")
    ref = np.array(gray.resize((4, 4), Image.Resampling.BILINEAR))
    assert torch.equal(b.train[0][0], torch.from_numpy(ref)[None])


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="needs root"):
        imagefolder()
    _write_images(tmp_path / "a", {"train": {"x": 1, "y": 1}, "test": {"x": 1, "z": 1}})
    with pytest.raises(ValueError, match=r"only in train \['y'\], only in test \['z'\]"):
        imagefolder(root=tmp_path / "a")
    _write_images(tmp_path / "b", {"train": {"x": 1}, "test": {"x": 1}})
    (tmp_path / "b" / "train" / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no images"):
        imagefolder(root=tmp_path / "b")
    _write_images(tmp_path / "c", {"train": {"x": 1}, "test": {"x": 1}})
    _write_images(tmp_path / "c", {"train": {"y": 1}, "test": {"y": 1}}, size=(7, 7))
    with pytest.raises(ValueError, match="image_size"):
        imagefolder(root=tmp_path / "c")
    assert imagefolder(root=tmp_path / "c", image_size=3).train[1][0].shape == (3, 3, 3)
    with pytest.raises(ValueError, match="mode"):
        imagefolder(root=tmp_path / "c", mode="CMYK")
    with pytest.raises(FileNotFoundError, match="train/ and test/"):
        imagefolder(root=tmp_path / "nothing")


# --- synthetic -------------------------------------------------------------------------------

def test_synthetic_deterministic_balanced_learnable():
    a = synthetic(num_train=200, num_test=100, num_classes=4, img_size=8, in_chans=2, seed=5)
    b = synthetic(num_train=200, num_test=100, num_classes=4, img_size=8, in_chans=2, seed=5)
    c = synthetic(num_train=200, num_test=100, num_classes=4, img_size=8, in_chans=2, seed=6)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert a.train.images.shape == (200, 2, 8, 8) and a.train.labels.bincount().tolist() == [50] * 4
    # Learnable: a nearest-class-mean classifier fitted on train beats chance by far on test.
    x_tr, x_te = a.train.images.flatten(1).float(), a.test.images.flatten(1).float()
    means = torch.stack([x_tr[a.train.labels == k].mean(0) for k in range(4)])
    acc = (torch.cdist(x_te, means).argmin(1) == a.test.labels).float().mean().item()
    assert acc > 0.9
    with pytest.raises(ValueError, match="num_classes"):
        synthetic(num_classes=1)


def test_registry_flags():
    for name, downloadable, is_synth in (("fashion_mnist", True, False), ("mnist", True, False),
                                         ("cifar10", True, False), ("cifar100", True, False),
                                         ("digits", False, False), ("imagefolder", False, False),
                                         ("synthetic", False, True)):
        meta = DATASETS.entry(name).meta
        assert (meta["downloadable"], meta["synthetic"]) == (downloadable, is_synth)
        assert meta["description"]
