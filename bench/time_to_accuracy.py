"""Wall time for recipes to reach test-accuracy thresholds, mean ± std over seeds.

Each recipe is trained with its own config (validation = test split, EMA + flip TTA as the
recipe says) for every seed; the time to a threshold is the cumulative *training* time
(evaluation excluded) at the end of the first epoch whose test accuracy reaches it.

    python bench/time_to_accuracy.py --recipes configs/fashion_mnist/default.yaml \\
        --seeds 0 1 --thresholds 0.92 0.93 0.94
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import emit
from archlab.runs.config import load_config
from archlab.runs.experiment import run_experiment
from archlab.runs.store import read_metrics


def time_to(records: list[dict], threshold: float) -> float | None:
    for r in records:
        if "val.acc" in r and r["val.acc"] >= threshold:
            return r["train_time_s"]
    return None


def summarize(values: list[float | None]) -> dict:
    reached = [v for v in values if v is not None]
    out = {"reached": f"{len(reached)}/{len(values)}"}
    if reached:
        out["mean_s"] = round(statistics.mean(reached), 1)
        out["std_s"] = round(statistics.stdev(reached), 1) if len(reached) > 1 else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["configs/fashion_mnist/default.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.92, 0.93, 0.94])
    ap.add_argument("--runs-dir", default=None, help="keep the runs here (default: temp dir)")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every recipe")
    args = ap.parse_args()
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="archlab-tta-")
    out = {"benchmark": "time_to_accuracy", "seeds": args.seeds, "recipes": {}}
    for recipe in args.recipes:
        per_seed, final = [], []
        for seed in args.seeds:
            cfg = load_config(recipe, [*args.overrides, f"train.seed={seed}",
                                       "callbacks.progress=false"])
            start = time.perf_counter()
            result = run_experiment(cfg, runs_dir=runs_dir)
            records = [r for r in read_metrics(result.run_dir) if "val.acc" in r]
            per_seed.append(records)
            final.append({"seed": seed, "test.acc": result.metrics["test.acc"],
                          "train_time_s": result.metrics["train_time_s"],
                          "wall_s": round(time.perf_counter() - start, 1)})
        accs = [f["test.acc"] for f in final]
        out["recipes"][recipe] = {
            "final_test_acc_mean": round(statistics.mean(accs), 4),
            "final_test_acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            "train_time_s_mean": round(statistics.mean(f["train_time_s"] for f in final), 1),
            "time_to": {f"{t:.2f}": summarize([time_to(r, t) for r in per_seed])
                        for t in args.thresholds},
            "runs": final,
        }
    emit(out)


if __name__ == "__main__":
    main()
