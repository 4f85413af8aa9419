"""Registry-driven contract for every metric: exact accumulation over batches and over ranks.

Each registered metric needs a CASES entry (a new metric without one fails
``test_every_metric_has_a_case``); a case is the metric's options and the ``update`` calls that
feed it one data set, which the tests cut into uneven batches.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from archlab.metrics import METRICS, Metric, build_metric
from archlab.registry import UnknownNameError
from archlab.distributed import DistInfo

WORDS = "the cat sat on a mat . dog ran fast , 3.5 it is red".split()


def _scores(seed: int, n: int = 61, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


def _sequence_scores(seed: int):
    g = torch.Generator().manual_seed(seed)
    logits, target = torch.randn(9, 7, 11, generator=g), torch.randint(0, 11, (9, 7), generator=g)
    target[torch.rand(9, 7, generator=g) < 0.2] = -100  # padding
    return logits, target


def _sentences(seed: int, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    def sentence():
        length = int(torch.randint(3, 12, (1,), generator=g))
        return " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (length,), generator=g))
    return [sentence() for _ in range(n)]


def _features(seed: int, n: int, shift: float):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) @ torch.randn(4, 4, generator=g) + shift


def _text_calls():
    hyps, refs1, refs2 = _sentences(1), _sentences(2), _sentences(3)
    return [((hyps, [[a, b] for a, b in zip(refs1, refs2)]), {})]


CASES = {
    "accuracy": ({}, [(_scores(0), {})]),
    "topk_accuracy": ({"topk": (1, 3)}, [(_scores(1), {})]),
    "confusion_matrix": ({"num_classes": 5}, [(_scores(2), {})]),
    "precision_recall_f1": ({"num_classes": 5, "averages": ("macro", "micro", "weighted"),
                             "per_class": True}, [(_scores(3), {})]),
    "ece": ({"n_bins": 10}, [(_scores(4), {})]),
    "perplexity": ({}, [(_sequence_scores(5), {})]),
    "mean": ({"key": "loss"}, [((_features(8, 23, 1.0)[:, 0].abs(),), {})]),
    "bleu": ({}, _text_calls()),
    "rouge": ({"rouge_types": ("rouge1", "rouge2", "rougeL")}, _text_calls()),
    "fid": ({"num_features": 4}, [((_features(6, 40, 0.0),), {"real": True}),
                                  ((_features(7, 33, 0.5),), {"real": False})]),
}


def _chunk(args: tuple, parts: int = 3) -> list[tuple]:
    """Cut every argument along its first axis into ``parts`` uneven pieces."""
    n = len(args[0])
    bounds = [0, n // 5, n // 2, n][: parts + 1] if parts == 3 else None
    return [tuple(a[lo:hi] for a in args) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _feed(metric: Metric, calls, pieces=None) -> Metric:
    """Update with the chunks ``pieces`` (None: the whole data in one call) of every call."""
    for args, kwargs in calls:
        chunks = [args] if pieces is None else [_chunk(args)[i] for i in pieces]
        for chunk in chunks:
            metric.update(*chunk, **kwargs)
    return metric


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-12, msg=key)
        else:
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-9), key


def test_every_metric_has_a_case():
    assert sorted(CASES) == METRICS.list()


@pytest.mark.parametrize("name", sorted(CASES))
def test_three_batches_equal_the_concatenated_batch(name):
    options, calls = CASES[name]
    whole = _feed(build_metric(name, **options), calls).compute()
    batched = _feed(build_metric(name, **options), calls, pieces=[0, 1, 2]).compute()
    assert_same(batched, whole)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_ranks_summed_state_equals_one_process(name):
    options, calls = CASES[name]
    rank0 = _feed(build_metric(name, **options), calls, pieces=[0, 2])
    rank1 = _feed(build_metric(name, **options), calls, pieces=[1])
    s0, s1 = rank0.state_tensors(), rank1.state_tensors()
    assert s0.keys() == s1.keys()
    merged = build_metric(name, **options)
    merged.load_state_tensors({k: s0[k] + s1[k] for k in s0})
    whole = _feed(build_metric(name, **options), calls).compute()
    assert_same(merged.compute(), whole)
    # Each rank's own state differs from the merged one: the merge is not vacuous.
    for own in (s0, s1):
        assert any(not torch.equal(own[k], merged.state_tensors()[k]) for k in own)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reset_and_single_process_sync(name):
    options, calls = CASES[name]
    metric = _feed(build_metric(name, **options), calls)
    assert isinstance(metric, Metric)
    before = metric.compute()
    metric.sync(DistInfo())  # world_size 1: must leave the state alone
    assert_same(metric.compute(), before)
    fresh = build_metric(name, **options).state_tensors()
    metric.reset()
    for key, value in metric.state_tensors().items():
        assert torch.equal(value, fresh[key]), key
    assert_same(_feed(metric, calls).compute(), before)


def test_load_state_rejects_wrong_keys_and_shapes():
    metric = build_metric("confusion_matrix", num_classes=3)
    with pytest.raises(KeyError, match="matrix"):
        metric.load_state_tensors({"counts": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        metric.load_state_tensors({"matrix": torch.zeros(4, 4)})


def test_unknown_metric_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean accuracy"):
        build_metric("acuracy")


def _rank_worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        results = {}
        for name, (options, calls) in CASES.items():
            metric = _feed(build_metric(name, **options), calls, [[0, 2], [1]][rank])
            metric.sync(DistInfo(rank=rank, world_size=2))
            results[name] = metric.compute()
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sync_over_two_real_gloo_ranks(tmp_path):
    mp.start_processes(_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2,
                       start_method="fork")
    for rank in (0, 1):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for name, (options, calls) in CASES.items():
            assert_same(results[name], _feed(build_metric(name, **options), calls).compute())
