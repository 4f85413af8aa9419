"""triplet: parity with nn.TripletMarginLoss; batch-hard mining on a constructed batch."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from archlab.losses import BatchHardTripletLoss, TripletLoss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_plain_matches_torch_triplet_margin_loss(reduction):
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(3))
    ours = TripletLoss(margin=0.7, reduction=reduction)(a, p, n)
    ref = torch.nn.TripletMarginLoss(margin=0.7, reduction=reduction)(a, p, n)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)  # torch adds eps=1e-6 to x1 - x2


def test_plain_squared_normalized_matches_facenet_formula():
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    an, pn, nn_ = (t / t.norm(dim=1, keepdim=True) for t in (a, p, n))
    expected = torch.clamp(((an - pn) ** 2).sum(1) - ((an - nn_) ** 2).sum(1) + 0.2, min=0)
    out = TripletLoss(margin=0.2, squared=True, normalize=True, reduction="none")(a, p, n)
    torch.testing.assert_close(out, expected)


# Embeddings on a line so every distance is |u - v|; sample 5 has no positive.
POSITIONS = torch.tensor([0.0, 1.0, 3.0, 10.0, 4.0, 20.0], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_batch_hard_mining_picks_hardest_pairs():
    emb = POSITIONS[:, None] * torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # unit direction
    _, pos, neg, valid = BatchHardTripletLoss().mine(emb, LABELS)
    # anchor 0 at 0: positives 1 (d=1), 2 (d=3) -> 2; negatives 10, 4, 20 -> index 4.
    # anchor 3 at 10: positive 4 (d=6); negatives 0, 1, 3, 20 -> index 2 (d=7).
    assert pos[:5].tolist() == [2, 2, 0, 4, 3]
    assert neg[:5].tolist() == [4, 4, 4, 2, 2]
    assert valid.tolist() == [True] * 5 + [False]


@pytest.mark.parametrize("squared", [False, True])
def test_batch_hard_equals_worst_triplet_per_anchor(squared):
    # Brute force over every (anchor, positive, negative): the hinge is monotone, so the hardest
    # triplet's loss is the maximum over all triplets of that anchor.
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(8, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])  # sample 7 has no positive
    dist = torch.cdist(emb, emb) ** (2 if squared else 1)
    expected = torch.zeros(8, dtype=torch.float64)
    for a, p, n in itertools.product(range(8), repeat=3):
        if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
            expected[a] = max(expected[a], F.relu(dist[a, p] - dist[a, n] + 0.5))
    loss = BatchHardTripletLoss(margin=0.5, squared=squared, reduction="none")
    torch.testing.assert_close(loss(emb, labels), expected)
    loss.reduction = "mean"
    torch.testing.assert_close(loss(emb, labels), expected[:7].mean())


def test_batch_hard_gradients_finite_with_duplicates_and_empty_batch():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    BatchHardTripletLoss(margin=0.3)(emb, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(emb.grad).all()
    x = torch.randn(3, 2, requires_grad=True)
    out = BatchHardTripletLoss()(x, torch.tensor([0, 1, 2]))  # no positives at all
    out.backward()
    assert out.item() == 0.0 and x.grad is not None


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-0.1)
    with pytest.raises(ValueError, match="squared"):
        BatchHardTripletLoss(squared=1)
    with pytest.raises(ValueError, match="anchor, positive and negative"):
        TripletLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="integer labels"):
        BatchHardTripletLoss()(torch.zeros(2, 3), torch.zeros(2))
