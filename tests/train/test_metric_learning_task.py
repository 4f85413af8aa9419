"""Metric learning as a task: each loss gets exactly the embeddings computed directly from the
model, two-view batches come from the same images, the class centroids follow their EMA
definition and survive checkpoints and resume, and a real digits run classifies by nearest
centroid well above chance, with `archlab eval` reproducing its accuracy."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.runs.config import ConfigError, load_config
from archlab.data._registry import ArraySplit
from archlab.data.augment import HorizontalFlip
from archlab.data.loader import InMemoryLoader, Normalize
from archlab.losses import LOSSES
from archlab.losses.config import LossConfig
from archlab.models import create_model
from archlab.data.pipeline import build_loaders
from archlab.runs.evaluation import evaluate_checkpoint, load_trained_model
from archlab.runs.experiment import build_training_task, run_experiment
from archlab.runs.store import RunStore
from archlab.tasks import build_task
from archlab.tasks.metric_learning import (CentroidHead, MetricLearningConfig,
                                           MetricLearningTask, sample_triplets)
from archlab.train.callbacks.base import Callback
from archlab.train.checkpoint_io import load_checkpoint, save_checkpoint


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("cnn_tiny", num_classes=4, in_chans=1, img_size=8)


def batch(n: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(4).repeat(n // 4)


def embeddings(model, x):
    """Reference: unit-norm penultimate features, read through the model's own API."""
    return F.normalize(model.forward_head(model.forward_features(x), pre_logits=True), dim=1)


def make_task(model, loss: dict, **options):
    cfg = MetricLearningConfig(loss=LossConfig(**loss), **options)
    return build_task(model, cfg)


def test_triplet_batch_hard_sees_the_models_normalized_embeddings():
    model, (x, y) = tiny_model(), batch()
    task = make_task(model, {"name": "triplet_batch_hard", "options": {"margin": 0.3}})
    out = task.training_step({"x": x, "y": y}, "main")
    reference = LOSSES.get("triplet_batch_hard")(margin=0.3)(embeddings(model, x), y)
    torch.testing.assert_close(out["loss"], reference)
    # train accuracy scores the batch's own labels before this batch updates the centroids:
    # all centroids are still zero, every score ties and argmax picks class 0 (3 of 12 labels)
    assert out["acc"].ndim == 0 and out["acc"].item() == pytest.approx(3 / 12)
    assert task.predict(x).shape == (12, 4)


def test_contrastive_gets_every_pair_of_the_batch_once():
    model, (x, y) = tiny_model(), batch(8)
    task = make_task(model, {"name": "contrastive", "options": {"margin": 0.5}})
    out = task.training_step({"x": x, "y": y}, "main")
    z = embeddings(model, x)
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]  # 28 pairs, i < j
    i, j = torch.tensor(pairs).T
    reference = LOSSES.get("contrastive")(margin=0.5)(z[i], z[j], y[i] == y[j])
    torch.testing.assert_close(out["loss"], reference)


def test_sampled_triplets_are_valid_and_uniform_over_positives_and_negatives():
    target = torch.tensor([0, 0, 0, 1, 1, 2])  # class 2 has no positive: never an anchor
    torch.manual_seed(0)
    draws = [sample_triplets(target) for _ in range(3000)]
    for a, p, n in draws[:50]:
        assert a.tolist() == [0, 1, 2, 3, 4]
        assert torch.equal(target[p], target[a]) and not torch.any(p == a)
        assert not torch.any(target[n] == target[a])
    positives = torch.stack([p[0] for _, p, _ in draws])  # anchor 0: positives 1, 2
    negatives = torch.stack([n[0] for _, _, n in draws])  # anchor 0: negatives 3, 4, 5
    assert set(positives.tolist()) == {1, 2} and set(negatives.tolist()) == {3, 4, 5}
    # 3000 draws: the standard error of a 1/2 or 1/3 frequency is < 0.01, so 0.04 is 4+ sigma.
    assert abs((positives == 1).float().mean().item() - 1 / 2) < 0.04
    for j in (3, 4, 5):
        assert abs((negatives == j).float().mean().item() - 1 / 3) < 0.04
    a, p, n = sample_triplets(torch.zeros(4, dtype=torch.long))  # one class: no negatives
    assert len(a) == len(p) == len(n) == 0


def test_triplet_gets_the_sampled_triplets_of_the_batch():
    model, (x, y) = tiny_model(), batch()
    task = make_task(model, {"name": "triplet", "options": {"margin": 0.3}})
    torch.manual_seed(7)
    out = task.training_step({"x": x, "y": y}, "main")
    torch.manual_seed(7)  # the same draw: the model's forward uses no randomness
    a, p, n = sample_triplets(y)
    z = embeddings(model, x)
    reference = LOSSES.get("triplet")(margin=0.3)(z[a], z[p], z[n])
    torch.testing.assert_close(out["loss"], reference)
    out["loss"].backward()  # a loss of the model's parameters
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in model.parameters())


def test_nt_xent_pairs_the_two_views_of_each_image_through_the_projection_head():
    model, (x, y) = tiny_model(), batch(8)
    view2 = x.flip(-1)
    task = make_task(model, {"name": "nt_xent", "options": {"temperature": 0.5}},
                     projection_dim=16)
    out = task.training_step({"x": x, "y": y, "x_view2": view2}, "main")
    # One forward over both views (BN sees 2B images), then the projection head g(.).
    features = model.forward_head(model.forward_features(torch.cat([x, view2])), pre_logits=True)
    z = F.normalize(task.projection(features), dim=1)
    reference = LOSSES.get("nt_xent")(temperature=0.5)(z[:8], z[8:])
    torch.testing.assert_close(out["loss"], reference)
    # the projection head is the task's own parameter group (base lr; the optimizer's decay)
    groups = task.param_groups("main", 0.1)
    assert len(groups) == 1 and groups[0]["lr"] == 0.1
    assert [p.shape for p in groups[0]["params"]] == [(64, 64), (64,), (16, 64), (16,)]
    assert all(p is q for p, q in zip(groups[0]["params"], task.projection.parameters()))
    with pytest.raises(ValueError, match="data.views=2"):
        task.training_step({"x": x, "y": y}, "main")  # one view only


def test_joint_cross_entropy_adds_the_weighted_ce_on_the_logits():
    model, (x, y) = tiny_model(), batch()
    task = make_task(model, {"name": "triplet_batch_hard"}, ce_weight=0.5)
    out = task.training_step({"x": x, "y": y}, "main")
    metric = LOSSES.get("triplet_batch_hard")()(embeddings(model, x), y)
    ce = F.cross_entropy(model(x), y)
    torch.testing.assert_close(out["loss"], metric + 0.5 * ce)


def test_centroids_follow_the_ema_and_scores_are_cosine_similarities():
    task = make_task(tiny_model(), {"name": "triplet_batch_hard"}, centroid_momentum=0.75)
    z1 = F.normalize(torch.randn(6, 64, generator=torch.Generator().manual_seed(2)), dim=1)
    y1 = torch.tensor([0, 0, 1, 1, 1, 3])
    task.update_centroids(z1, y1)
    expected = torch.zeros(4, 64)
    expected[0], expected[1], expected[3] = z1[:2].mean(0), z1[2:5].mean(0), z1[5]  # first batch
    torch.testing.assert_close(task.centroids, expected)
    z2 = F.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(3)), dim=1)
    task.update_centroids(z2, torch.tensor([1, 2]))
    expected[1] = 0.75 * expected[1] + 0.25 * z2[0]  # EMA for a class seen before
    expected[2] = z2[1]  # class 2's first appearance sets it
    torch.testing.assert_close(task.centroids, expected)
    query = F.normalize(torch.randn(5, 64), dim=1)
    cosine = torch.stack([F.cosine_similarity(query, c[None].expand(5, -1), dim=1)
                          for c in expected], dim=1)
    torch.testing.assert_close(task.scores(query), cosine)

    restored = make_task(tiny_model(1), {"name": "triplet_batch_hard"})
    restored.load_state_dict(task.state_dict())  # what checkpoints carry
    torch.testing.assert_close(restored.scores(query), cosine)


def test_digits_run_classifies_by_centroid_and_eval_reproduces_it(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + [
        "train.epochs=4", "task.name=metric_learning",
        "task.loss={name: triplet_batch_hard, options: {margin: 0.2}}",
        "data.pk_sampler={classes_per_batch: 8, samples_per_class: 8}", "data.batch_size=64"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok, result.error
    # Measured 98.3% after 6 epochs, ~95% after 4; chance is 10%.
    assert result.metrics["test.acc"] > 0.85
    checkpoint = result.run_dir / "checkpoints" / "last.ckpt"
    again = evaluate_checkpoint(checkpoint)
    assert again["test.acc"] == pytest.approx(result.metrics["test.acc"], abs=1e-9)

    # A loaded model (analyze, study sample grids) predicts by the centroids as the run did:
    # its outputs are the cosine similarities to the saved centroids, not the untrained head's.
    loaded = load_trained_model(checkpoint, torch.device("cpu"))
    model = loaded.model
    assert loaded.output_kind == MetricLearningTask.output_kind != "logits"
    assert isinstance(model.get_classifier(), CentroidHead)
    state = load_checkpoint(checkpoint)["trainer"]["task"]
    loaders = build_loaders(loaded.cfg.data, device=torch.device("cpu"), seed=0)
    correct = 0
    with torch.no_grad():
        for batch in loaders.test:
            x, y = batch["x"], batch["y"]
            scores = model(x)
            reference = embeddings(model, x) @ F.normalize(state["centroids"], dim=1).T
            torch.testing.assert_close(scores, reference)
            correct += (scores.argmax(1) == y).sum().item()
    assert correct / loaders.test.num_examples == pytest.approx(result.metrics["test.acc"],
                                                                abs=1e-9)
    # ... and it is refused as a distillation teacher: cosine scores are not logits.
    student_cfg = load_config(None, tiny_overrides + [
        "task.name=distillation", f"task.teacher={{run: '{result.run_dir}'}}"])
    student = student_cfg.model.build(num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match="cosine similarities to class centroids, not logits"):
        build_training_task(student_cfg, student, torch.device("cpu"))


def test_config_errors_name_what_fits():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["task.name=metric_learning", "task.loss.name=cross_entropy"])
    message = str(err.value)
    assert "cannot train with loss 'cross_entropy'" in message
    assert all(n in message for n in ("triplet_batch_hard", "triplet,", "contrastive", "nt_xent"))
    # metric-learning options are the metric_learning task's own fields: the old sub-section
    # says where they went, and on another task they are unknown keys
    with pytest.raises(ConfigError, match="task.metric_learning: this key moved to task"):
        load_config(None, ["task.metric_learning={ce_weight: 0.1}"])
    with pytest.raises(ConfigError, match="task.ce_weight: unknown key"):
        load_config(None, ["task.ce_weight=0.1"])  # classification task
    with pytest.raises(ConfigError, match="task.mix: unknown key"):
        load_config(None, ["task.name=metric_learning", "task.loss.name=triplet_batch_hard",
                           "task.mix=mixup"])
    with pytest.raises(ConfigError, match="set batch_size to 64"):
        load_config(None, ["data.pk_sampler={classes_per_batch: 8, samples_per_class: 8}",
                           "data.batch_size=32"])
    with pytest.raises(ConfigError, match="views=2 needs data.augment"):
        load_config(None, ["data.views=2"])
    with pytest.raises(ConfigError, match="data.views=2: task 'classification' takes 1 view"):
        load_config(None, ["data.views=2", "data.augment=[flip]"])  # classification task
    task = load_config(None, ["task.name=metric_learning", "task.ce_weight=0.1",
                              "task.projection_dim=8", "task.centroid_momentum=0.5"]).task
    assert isinstance(task, MetricLearningConfig)
    assert (task.ce_weight, task.projection_dim, task.centroid_momentum) == (0.1, 8, 0.5)


PK = ["task.name=metric_learning", "task.loss={name: triplet_batch_hard, options: {margin: 0.2}}",
      "data.pk_sampler={classes_per_batch: 8, samples_per_class: 8}"]


def task_config(loss: str, options: dict | None = None, **metric) -> MetricLearningConfig:
    return MetricLearningConfig(loss=LossConfig(name=loss, options=options or {}), **metric)


def test_two_views_come_from_the_same_images_with_independent_augmentation():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 6, 6), dtype=torch.uint8, generator=g)
    split = ArraySplit(images, torch.arange(32) % 4)
    loader = InMemoryLoader(split, 16, normalize=Normalize([0.0], [1.0], torch.device("cpu")),
                            device=torch.device("cpu"), augment=[HorizontalFlip()], shuffle=True,
                            drop_last=True, views=2)
    differ = 0
    for batch in loader:
        assert set(batch) == {"x", "y", "x_view2"}
        x1, x2 = batch["x"], batch["x_view2"]
        for a, b in zip(x1, x2):
            # each view of an image is that image or its mirror: the flip's only outcomes
            candidates = [img.float() / 255 for i, img in enumerate(images)
                          if torch.allclose(a, img.float() / 255)
                          or torch.allclose(a, img.flip(-1).float() / 255)]
            assert len(candidates) == 1
            src = candidates[0]
            assert torch.allclose(b, src) or torch.allclose(b, src.flip(-1))
            differ += not torch.equal(a, b)
    assert 4 <= differ <= 28  # independent p=0.5 flips disagree on about half of 32 images


class Identity(nn.Module):
    """A model whose embedding is its input: the penultimate features are what the test sets."""

    def __init__(self, dim=3, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(dim, num_classes)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(x)


def test_centroid_scores_are_cosine_similarities_to_the_ema_of_class_means():
    model = Identity()
    task = MetricLearningTask(model, task_config("triplet_batch_hard", centroid_momentum=0.75))
    q = torch.tensor([[1.0, 0.0, 0.0], [0.3, -2.0, 0.5]])
    assert torch.equal(task.predict(q), torch.zeros(2, 3))  # before training: meaningless zeros
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])  # class 2 not in the batch
    task.training_step({"x": x, "y": y}, "main")
    unit = F.normalize(x, dim=1)
    means = torch.stack([unit[:2].mean(0), unit[2:].mean(0), torch.zeros(3)])
    cos = torch.stack([torch.tensor([float(F.cosine_similarity(a, c, dim=0)) if c.any() else 0.0
                                     for c in means]) for a in q])
    torch.testing.assert_close(task.predict(q), cos)
    x2 = torch.tensor([[0.0, 0.0, 5.0], [1.0, 0.0, 1.0]])
    y2 = torch.tensor([0, 2])
    task.training_step({"x": x2, "y": y2}, "main")
    unit2 = F.normalize(x2, dim=1)
    means = torch.stack([0.75 * means[0] + 0.25 * unit2[0], means[1], unit2[1]])  # first: set
    torch.testing.assert_close(task.centroids, means)
    expected = F.normalize(q, dim=1) @ F.normalize(means, dim=1).T
    torch.testing.assert_close(task.predict(q), expected)


def test_centroids_survive_a_checkpoint_file(tmp_path):
    model = Identity()
    task = MetricLearningTask(model, task_config("contrastive", projection_dim=4))
    task.training_step({"x": torch.randn(8, 3), "y": torch.arange(8) % 3}, "main")
    save_checkpoint({"task": task.state_dict()}, tmp_path / "t.ckpt")  # weights_only reload
    other = MetricLearningTask(model, task_config("contrastive", projection_dim=4))
    other.load_state_dict(load_checkpoint(tmp_path / "t.ckpt")["task"])
    q = torch.randn(5, 3)
    assert torch.equal(other.predict(q), task.predict(q))
    assert torch.equal(other.projection[0].weight, task.projection[0].weight)


class Interrupt(Exception):
    pass


class StopAtEpoch(Callback):
    def on_train_epoch_start(self, trainer):
        if trainer.epoch == 1:
            raise Interrupt


def test_resumed_run_ends_with_the_same_centroids_and_archlab_eval_uses_them(
        tiny_overrides, runs_dir, capsys):
    from archlab.cli import main

    overrides = [o for o in tiny_overrides if not o.startswith("data.batch_size")] + PK
    cfg = load_config(None, overrides)
    full = run_experiment(cfg, runs_dir=runs_dir / "full")
    # Measured: 96.1% test accuracy from centroid scores after 2 epochs (chance: 10%).
    assert full.ok and full.metrics["test.acc"] > 0.8, full.metrics
    with pytest.raises(Interrupt):
        run_experiment(cfg, runs_dir=runs_dir / "cut", callbacks=[StopAtEpoch()])
    cut = RunStore(runs_dir / "cut").list()[0]
    resumed = run_experiment(cfg, runs_dir=runs_dir / "cut", resume=cut.run_id)
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.ckpt")["trainer"]["task"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.ckpt")["trainer"]["task"]
    assert a["centroid_seen"].all()
    assert torch.equal(a["centroids"], b["centroids"])
    assert resumed.metrics["test.acc"] == full.metrics["test.acc"]

    capsys.readouterr()
    assert main(["eval", full.run_id, "--runs-dir", str(runs_dir / "full"), "--checkpoint",
                 "last", "--json"]) == 0
    # The classifier head is untrained (ce_weight 0): only the restored centroids give this.
    assert json.loads(capsys.readouterr().out)["test.acc"] == pytest.approx(
        full.metrics["test.acc"])


def test_a_model_without_a_linear_classifier_is_refused():
    class NoHead(nn.Module):
        num_classes = 3

        def get_classifier(self):
            return nn.Identity()

    with pytest.raises(ValueError, match="get_classifier\\(\\) is a Linear"):
        MetricLearningTask(NoHead(), task_config("triplet_batch_hard"))
