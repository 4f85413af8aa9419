"""The UCI optical handwritten digits bundled with scikit-learn (1797 real 8x8 images, 10 classes).

No download: the data ships inside scikit-learn (``sklearn.datasets.load_digits``). Pixels are
counts 0..16 (16 gray levels); they are scaled to uint8 with ``round(v * 255 / 16)``, so 16 maps
to 255. The train/test split is fixed so results are comparable across runs: per class, the
indices are shuffled by ``numpy.random.default_rng(SPLIT_SEED)`` and the first
``round(TEST_FRACTION * n_class)`` go to test (stratified; 20% test, about 1437/360).
``root`` and ``download`` are accepted for the common builder signature and ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archlab.data._registry import ArraySplit, DatasetBundle, channel_stats, register_dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0
MAX_LEVEL = 16  # load_digits pixel values are counts of set pixels in 4x4 blocks: 0..16


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) index arrays holding ``test_fraction`` of every class in test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@register_dataset("digits", description="scikit-learn's bundled 8x8 handwritten digits "
                  "(1797 images, 10 classes), fixed stratified 80/20 split",
                  downloadable=False, synthetic=False, location="bundled with scikit-learn")
def digits(root: Path | None = None, download: bool = True) -> DatasetBundle:
    """Real 8x8 digits, 1 channel, in memory; a fast real-data sanity check (seconds to train)."""
    import sklearn
    from sklearn.datasets import load_digits

    raw = load_digits()
    levels = np.asarray(raw.images, dtype=np.float64)  # (N, 8, 8) in 0..16
    images = np.rint(levels * (255.0 / MAX_LEVEL)).astype(np.uint8)[:, None]  # -> (N, 1, 8, 8)
    labels = np.asarray(raw.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    train = ArraySplit(x[train_idx], y[train_idx])
    test = ArraySplit(x[test_idx], y[test_idx])
    mean, std = channel_stats(train.images)
    return DatasetBundle(train=train, test=test, classes=[str(int(c)) for c in raw.target_names],
                         in_chans=1, img_size=(8, 8), mean=mean, std=std,
                         source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
                         extra={"split_seed": SPLIT_SEED, "test_fraction": TEST_FRACTION})
