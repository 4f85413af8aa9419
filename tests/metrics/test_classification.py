"""Accuracy, top-k, confusion matrix and precision/recall/F1 against direct computations and
scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from archlab.metrics import build_metric


def _data(seed: int, n: int = 50, c: int = 6, skip: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    logits[:, list(skip)] = -1e4  # these classes are never predicted
    return logits, torch.randint(0, c, (n,), generator=g)


def test_accuracy_matches_direct_count_for_scores_and_labels():
    logits, target = _data(0)
    direct = (logits.argmax(1) == target).double().mean().item()
    for preds in (logits, logits.softmax(1), logits.argmax(1)):
        metric = build_metric("accuracy")
        metric.update(preds, target)
        assert metric.compute() == {"acc": pytest.approx(direct, abs=1e-15)}
    assert 0.05 < direct < 0.6  # random data: neither trivial extreme


def test_accuracy_on_sequences_skips_padding():
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(3, 5, 4, generator=g), torch.randint(0, 4, (3, 5), generator=g)
    target[:, -2:] = -1
    keep = target != -1
    direct = (logits.argmax(-1)[keep] == target[keep]).double().mean().item()
    metric = build_metric("accuracy", ignore_index=-1)
    metric.update(logits, target)
    assert metric.compute()["acc"] == pytest.approx(direct, abs=1e-15)


def test_topk_matches_sklearn_top_k_accuracy():
    logits, target = _data(2, n=80, c=7)
    metric = build_metric("topk_accuracy", topk=(1, 2, 5))
    metric.update(logits, target)
    out = metric.compute()
    for k in (1, 2, 5):
        ref = skm.top_k_accuracy_score(target.numpy(), logits.numpy(), k=k, labels=np.arange(7))
        assert out[f"top{k}"] == pytest.approx(ref, abs=1e-15)
    assert out["top1"] < out["top2"] < out["top5"]


def test_topk_rejects_k_larger_than_classes():
    logits, target = _data(3, c=4)
    with pytest.raises(ValueError, match="at least 5 classes"):
        build_metric("topk_accuracy", topk=(1, 5)).update(logits, target)


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_matches_sklearn(normalize):
    logits, target = _data(4, skip=(2,))
    target[target == 5] = 4  # class 5 is never true: an all-zero row
    metric = build_metric("confusion_matrix", num_classes=6, normalize=normalize)
    metric.update(logits, target)
    ours = metric.compute()["confusion_matrix"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = skm.confusion_matrix(target.numpy(), logits.argmax(1).numpy(), labels=np.arange(6),
                                   normalize=normalize)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12, atol=0)


def test_confusion_matrix_rejects_out_of_range_labels():
    metric = build_metric("confusion_matrix", num_classes=3)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\)"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_classes=3"):
        metric.update(torch.randn(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_precision_recall_f1_match_sklearn_including_empty_classes(seed):
    # Class 1 is never predicted, class 4 never true: both divisions by zero occur.
    logits, target = _data(seed, n=40, c=6, skip=(1,))
    target[target == 4] = 0
    pred = logits.argmax(1)
    metric = build_metric("precision_recall_f1", num_classes=6,
                          averages=("macro", "micro", "weighted"), per_class=True)
    metric.update(logits, target)
    out = metric.compute()
    labels = np.arange(6)
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            target.numpy(), pred.numpy(), labels=labels, average=average, zero_division=0)
        assert out[f"precision_{average}"] == pytest.approx(p, abs=1e-12)
        assert out[f"recall_{average}"] == pytest.approx(r, abs=1e-12)
        assert out[f"f1_{average}"] == pytest.approx(f, abs=1e-12)
    p, r, f, _ = skm.precision_recall_fscore_support(
        target.numpy(), pred.numpy(), labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(out["precision_per_class"].numpy(), p, atol=1e-12)
    np.testing.assert_allclose(out["recall_per_class"].numpy(), r, atol=1e-12)
    np.testing.assert_allclose(out["f1_per_class"].numpy(), f, atol=1e-12)
    assert out["precision_per_class"][1] == 0 and out["recall_per_class"][4] == 0
    assert out["precision_micro"] == pytest.approx((pred == target).double().mean().item())


def test_precision_recall_f1_rejects_unknown_average():
    with pytest.raises(ValueError, match="choose from"):
        build_metric("precision_recall_f1", num_classes=3, averages=("samples",))
