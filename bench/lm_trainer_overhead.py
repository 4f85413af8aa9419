"""Language-model training through the Trainer vs a hand-written minimal loop: same model, same
KJV batches, same optimizer. Reports tokens/s of both and their ratio (1.0 = no overhead).

Both loops read the same TextBlockLoader over the real King James text; rounds alternate
between them so machine-load drift hits both, and the best round of each is reported.

    python bench/lm_trainer_overhead.py [--model gpt_char] [--batches 40] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from _common import emit
from archlab.data import load_dataset
from archlab.data.config import DataConfig
from archlab.data.text_loader import TextBlockLoader
from archlab.models import create_model
from archlab.tasks.language_model import LanguageModelConfig, LanguageModelTask
from archlab.train.precision import resolve_precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.train.trainer import TrainConfig, Trainer


def make(model_name, tokens, corpus, block_size, batch_size):
    torch.manual_seed(0)
    model = create_model(model_name, **corpus.model_kwargs())
    loader = TextBlockLoader(tokens, block_size, batch_size, device=torch.device("cpu"),
                             shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    return model, loader, opt


def minimal_loop(model, loader, opt) -> float:
    model.train()
    n, start = 0, time.perf_counter()
    for batch in loader:
        logits = model(batch["x"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += batch["y"].numel()
    return n / (time.perf_counter() - start)


def trainer_loop(model, loader, opt) -> float:
    sched = build_schedule(opt, ScheduleConfig(name="constant"), epochs=1,
                           steps_per_epoch=len(loader))
    trainer = Trainer(LanguageModelTask(model, LanguageModelConfig()), opt, sched,
                      train_loader=loader, val_loader=loader, cfg=TrainConfig(epochs=1),
                      precision=resolve_precision("fp32", torch.device("cpu")))
    start = time.perf_counter()
    trainer.train_epoch()
    return len(loader) * loader.batch_size * loader.block_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt_char")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40, help="training batches per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    corpus = load_dataset(DataConfig(name="kjv", options={"block_size": args.block_size}))
    # Enough of the training text for --batches blocks at the largest offset, plus one.
    tokens = corpus.train[: (args.batches * args.batch_size + 2) * args.block_size]
    results = {"minimal": [], "trainer": []}
    loops = [("minimal", minimal_loop), ("trainer", trainer_loop)]
    for r in range(args.rounds):
        for name, loop in (loops if r % 2 == 0 else loops[::-1]):
            results[name].append(loop(*make(args.model, tokens, corpus, args.block_size,
                                            args.batch_size)))
    best = {k: max(v) for k, v in results.items()}
    emit({"benchmark": "lm_trainer_overhead", "model": args.model,
          "block_size": args.block_size, "batch_size": args.batch_size,
          "batches_per_round": args.batches, "rounds": args.rounds,
          "minimal_loop_tokens_per_s": round(best["minimal"]),
          "trainer_tokens_per_s": round(best["trainer"]),
          "all_rounds": {k: [round(v) for v in vs] for k, vs in results.items()},
          "ratio": round(best["trainer"] / best["minimal"], 3)})


if __name__ == "__main__":
    main()
