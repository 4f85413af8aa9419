"""archlab sample RUN --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P
--seed S]: continue a prompt with a trained language model, streamed to stdout."""

from __future__ import annotations

import sys

from archlab.cli import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text with a trained language model",
                       description="Rebuild a language-model run from its checkpoint (model and "
                       "vocabulary, no dataset) and continue --prompt token by token: greedy "
                       "(--temperature 0), temperature, top-k and nucleus (top-p) sampling, "
                       "seeded.")
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix), run directory or "
                   ".ckpt file")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=1.0, help="0 picks the most likely "
                   "token (greedy)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="sample in the smallest set of "
                   "tokens whose probability reaches p (nucleus)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="best", help="best or last")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=run)


def checkpoint_path(ref: str, which: str, runs_dir: str):
    """A checkpoint from a .ckpt file, a run directory, or a run id in ``runs_dir``."""
    from pathlib import Path

    from archlab.runs.evaluation import run_checkpoint
    from archlab.runs.store import RunNotFoundError, RunStore

    path = Path(ref)
    if not path.exists():
        try:
            path = RunStore(runs_dir).get(ref).path
        except RunNotFoundError as e:
            raise UsageError(str(e)) from None
    try:
        return run_checkpoint(path, which, what="RUN")
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def run(args) -> int:
    import torch

    from archlab.data.text import CharVocab
    from archlab.models.sampling import generate
    from archlab.runs.evaluation import load_trained_model

    path = checkpoint_path(args.run, args.checkpoint, args.runs_dir)
    loaded = load_trained_model(path, args.device)
    if loaded.data.get("kind") != "text":
        raise UsageError(f"{path} is a {loaded.data.get('kind')} model (task "
                         f"{loaded.cfg.task.name}); sample needs a language-model run")
    vocab = CharVocab.from_dict(loaded.data["vocab"])
    try:
        prompt = vocab.encode(args.prompt, strict=True)
        tokens = generate(loaded.model, prompt.to(args.device), args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          generator=torch.Generator(args.device).manual_seed(args.seed))
    except ValueError as e:
        raise UsageError(f"{e}") from None
    out = sys.stdout
    out.write(args.prompt)
    for token in tokens:
        out.write(vocab.decode([token]))
        out.flush()
    out.write("\n")
    return 0
