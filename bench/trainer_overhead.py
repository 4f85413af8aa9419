"""Trainer vs a hand-written minimal PyTorch loop: same model, data, batch size, optimizer.

Both consume the same in-memory loader over real Fashion-MNIST images; the ratio of their
throughputs is the Trainer's overhead (1.0 = none). Rounds alternate between the two loops so
machine-load drift hits both equally; the best round of each is reported.

    python bench/trainer_overhead.py [--model cnn_small] [--images 12800] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from _common import emit
from archlab.data import load_dataset
from archlab.data.config import DataConfig
from archlab.data.loader import InMemoryLoader, Normalize
from archlab.models import create_model
from archlab.train.precision import resolve_precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.tasks.classification import ClassificationConfig, ClassificationTask
from archlab.train.trainer import TrainConfig, Trainer


def make(model_name, split, bundle, batch_size):
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = create_model(model_name, num_classes=10, in_chans=1).to(
        memory_format=torch.channels_last)
    loader = InMemoryLoader(split, batch_size, normalize=Normalize(bundle.mean, bundle.std,
                                                                  device, channels_last=True),
                            device=device, shuffle=True, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return model, loader, opt


def minimal_loop(model, loader, opt) -> float:
    model.train()
    n, start = 0, time.perf_counter()
    for batch in loader:
        x, y = batch["x"], batch["y"]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += y.shape[0]
    return n / (time.perf_counter() - start)


def trainer_loop(model, loader, opt) -> float:
    sched = build_schedule(opt, ScheduleConfig(name="constant"), epochs=1,
                           steps_per_epoch=len(loader))
    trainer = Trainer(ClassificationTask(model, ClassificationConfig()), opt, sched, train_loader=loader,
                      val_loader=loader, cfg=TrainConfig(epochs=1),
                      precision=resolve_precision("fp32", torch.device("cpu")))
    start = time.perf_counter()
    trainer.train_epoch()
    return len(loader) * loader.batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn_small")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    bundle = load_dataset(DataConfig(name="fashion_mnist"))
    split = bundle.train.subset(torch.arange(args.images))
    results = {"minimal": [], "trainer": []}
    loops = [("minimal", minimal_loop), ("trainer", trainer_loop)]
    for r in range(args.rounds):
        for name, loop in (loops if r % 2 == 0 else loops[::-1]):
            results[name].append(loop(*make(args.model, split, bundle, args.batch_size)))
    best = {k: max(v) for k, v in results.items()}
    emit({"benchmark": "trainer_overhead", "model": args.model, "batch_size": args.batch_size,
          "images_per_round": args.images, "rounds": args.rounds,
          "minimal_loop_images_per_s": round(best["minimal"]),
          "trainer_images_per_s": round(best["trainer"]),
          "all_rounds": {k: [round(v) for v in vs] for k, vs in results.items()},
          "ratio": round(best["trainer"] / best["minimal"], 3)})


if __name__ == "__main__":
    main()
