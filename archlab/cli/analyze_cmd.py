"""archlab analyze RUN [--what gradcam,saliency,...|all] [--n 16] [--split test|val] [--out DIR]

Loads a run's model (best checkpoint if there is one, else last) and its data, and writes PNGs
plus ``index.json`` (what was written, what was skipped and why) to
``<run_dir>/artifacts/analysis/`` unless ``--out`` says otherwise. Items that do not apply to
the model (attention maps for a CNN) are skipped with a message; if nothing requested applies,
the exit status is 2.
"""

from __future__ import annotations

import json
from pathlib import Path

from archlab.cli import UsageError

ITEMS = ("gradcam", "gradcam++", "saliency", "ig", "attention", "confusion", "top-losses",
         "samples", "embeddings")
ATTENTION_FIGURES = 4  # per-head grids are one figure per example: the first few suffice


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="interpretability plots for a trained run",
                       description="Grad-CAM, saliency, integrated gradients, attention maps, "
                       "confusion matrix, top losses, sample predictions and embeddings of a "
                       "run's trained model, as PNG files.")
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    p.add_argument("--what", default="all",
                   help=f"comma-separated items from {', '.join(ITEMS)}, or all (default)")
    p.add_argument("--n", type=int, default=16, help="examples per image grid (default 16)")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--out", default=None, help="output directory (default "
                   "<run_dir>/artifacts/analysis)")
    p.add_argument("--layer", default=None, help="module name for Grad-CAM (default: the "
                   "backbone's last feature map; for ViTs the last attention layer's input)")
    p.add_argument("--checkpoint", default="best", help="best (falls back to last), last, "
                   "or a checkpoint file")
    p.add_argument("--max-samples", type=int, default=2000,
                   help="examples of the split used for confusion, top losses and embeddings")
    p.add_argument("--ig-steps", type=int, default=32, help="integrated-gradients steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs-dir", default="runs")
    p.set_defaults(handler=run)


def parse_items(spec: str) -> list[str]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise UsageError(f"--what is empty; choose from {', '.join(ITEMS)} or all")
    unknown = [s for s in items if s not in ITEMS and s != "all"]
    if unknown:
        raise UsageError(f"unknown --what item(s) {unknown}; choose from {', '.join(ITEMS)} "
                         f"or all")
    return list(ITEMS) if "all" in items else list(dict.fromkeys(items))


def _checkpoint(args) -> tuple[Path, Path | None]:
    """(checkpoint file, run directory or None when a bare file was given)."""
    from archlab.runs.store import RunNotFoundError, RunStore

    if args.checkpoint not in ("best", "last"):
        path = Path(args.checkpoint)
        if not path.is_file():
            raise UsageError(f"checkpoint file not found: {path}")
        return path, None
    try:
        record = RunStore(args.runs_dir).get(args.run)
    except RunNotFoundError as e:
        raise UsageError(str(e)) from None
    folder = record.path / "checkpoints"
    for name in ([args.checkpoint] + (["last"] if args.checkpoint == "best" else [])):
        if (folder / f"{name}.ckpt").is_file():
            return folder / f"{name}.ckpt", record.path
    raise UsageError(f"run {record.run_id} has no {args.checkpoint} checkpoint in {folder}")


def _first_examples(loader, n: int):
    import torch

    xs, ys, seen = [], [], 0
    for batch in loader:
        xs.append(batch["x"])
        ys.append(batch["y"])
        seen += len(batch["y"])
        if seen >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def applicability(model, x, item: str, layer: str | None) -> str | None:
    """None if ``item`` applies to this model and input, else the reason it does not."""
    import torch

    from archlab.analysis.attention_maps import has_attention, patch_grid

    name = type(model).__name__
    image = x.ndim == 4 and x.dtype.is_floating_point
    if item in ("gradcam", "gradcam++", "saliency", "ig", "top-losses", "samples") and not image:
        return f"needs image inputs (B, C, H, W); {name} takes {tuple(x.shape)} {x.dtype}"
    if item in ("gradcam", "gradcam++") and layer is None:
        with torch.no_grad():
            features = model.eval().forward_features(x[:1])
        if features.ndim != 4 and not (features.ndim == 3 and patch_grid(model) is not None):
            return (f"{name}'s features {tuple(features.shape)} are not a spatial map; "
                    f"name a convolutional layer with --layer")
    if item == "attention" and not has_attention(model):
        return f"{name} has no attention layers (attention maps are for ViT/Transformer models)"
    return None


def run(args) -> int:
    import torch

    from types import SimpleNamespace

    from archlab.data.pipeline import build_loaders
    from archlab.runs.evaluation import load_trained_model

    items = parse_items(args.what)
    if args.n < 1 or args.max_samples < 1:
        raise UsageError("--n and --max-samples must be >= 1")
    path, run_dir = _checkpoint(args)
    device = torch.device(args.device)
    loaded = load_trained_model(path, device)
    model, cfg = loaded.model, loaded.cfg
    if loaded.data.get("kind") != "images":
        raise UsageError(f"analyze draws image classifiers' attributions and predictions; this "
                         f"run's model reads {loaded.data.get('kind')} (try archlab eval or "
                         f"archlab sample)")
    bundle = SimpleNamespace(**loaded.data)  # classes, mean, std of what the model saw
    loaders = build_loaders(cfg.data, device=device, seed=cfg.train.seed)
    loader = loaders.test if args.split == "test" else loaders.val
    scores = loaded.output_kind
    if scores != "logits":
        print(f"note: this run's class scores are {scores} (what it was scored with); their "
              f"softmax is not a calibrated probability, so read the confidences as relative")
    if args.split == "val" and loaders.val_is_test:
        print("note: this run has no held-out validation split; --split val is the test split")
    out = Path(args.out) if args.out else (run_dir or path.parent.parent) / "artifacts" / "analysis"
    x, y = _first_examples(loader, args.n)
    if args.layer is not None:
        from archlab.analysis.gradcam import find_module

        try:
            find_module(model, args.layer)
        except ValueError as e:
            raise UsageError(f"--layer: {e}") from None

    skipped = {}
    for item in items:
        reason = applicability(model, x, item, args.layer)
        if reason:
            skipped[item] = reason
            print(f"skipping {item}: {reason}")
    todo = [i for i in items if i not in skipped]
    if not todo:
        raise UsageError("nothing to do: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    context = dict(model=model, x=x, y=y, bundle=bundle, out=out, args=args, loader=loader)
    files: dict[str, list[str]] = {}
    for item in todo:
        written = WRITERS[item](**context)
        files[item] = [str(p.relative_to(out)) for p in written]
        for p in written:
            print(f"{item}: {p}")
    index = {"run_dir": str(run_dir) if run_dir else None, "checkpoint": str(path),
             "split": args.split, "n": len(y), "model": cfg.model.name, "dataset": cfg.data.name,
             "classes": list(bundle.classes), "scores": scores, "files": files,
             "skipped": skipped}
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(index, indent=2))
    print(f"index: {out / 'index.json'}")
    return 0


def _titles(model, x, y, bundle):
    import torch

    from archlab.analysis.attribution_plots import prediction_titles

    with torch.no_grad():
        probs = model.eval()(x).softmax(1)
    return prediction_titles(y, probs, bundle.classes)


def _cam(method: str, label: str):
    def write(model, x, y, bundle, out, args, **_):
        from archlab.analysis.attribution_plots import plot_heatmap_grid
        from archlab.analysis.gradcam import class_activation_maps, target_layer_name

        layer_text = target_layer_name(model, x, args.layer)
        maps = class_activation_maps(model, x, layer=args.layer, method=method)
        name = method.replace("++", "_plus_plus")
        return [plot_heatmap_grid(x, maps, out / f"{name}.png", titles=_titles(model, x, y, bundle),
                                  title=f"{label} for the predicted class (layer: {layer_text})",
                                  mean=bundle.mean, std=bundle.std)]
    return write


def _saliency(model, x, y, bundle, out, **_):
    from archlab.analysis.attribution import normalize_maps, saliency
    from archlab.analysis.attribution_plots import plot_heatmap_grid

    maps = normalize_maps(saliency(model, x))
    return [plot_heatmap_grid(x, maps, out / "saliency.png", titles=_titles(model, x, y, bundle),
                              title="saliency |d score / d pixel| for the predicted class",
                              mean=bundle.mean, std=bundle.std)]


def _ig(model, x, y, bundle, out, args, **_):
    from archlab.analysis.attribution import heatmap, integrated_gradients
    from archlab.analysis.attribution_plots import plot_heatmap_grid

    attr, delta = integrated_gradients(model, x, steps=args.ig_steps, return_delta=True)
    return [plot_heatmap_grid(x, heatmap(attr), out / "integrated_gradients.png",
                              titles=_titles(model, x, y, bundle),
                              title=f"integrated gradients, zero baseline, {args.ig_steps} steps "
                                    f"(max completeness error {delta.abs().max():.2g})",
                              mean=bundle.mean, std=bundle.std)]


def _attention(model, x, y, bundle, out, **_):
    from archlab.analysis.attention_maps import attention_maps, patch_grid, rollout_maps
    from archlab.analysis.attribution_plots import plot_attention_heads, plot_rollout

    maps = attention_maps(model, x)
    grid = patch_grid(model) if x.ndim == 4 else None
    titles = _titles(model, x, y, bundle) if x.ndim == 4 else [""] * len(y)
    written = []
    for i in range(min(ATTENTION_FIGURES, len(y))):
        written.append(plot_attention_heads(
            x[i] if grid else None, {k: v[i] for k, v in maps.items()},
            out / f"attention_{i}.png", grid=grid, mean=bundle.mean, std=bundle.std,
            title=(f"example {i}: {titles[i]} - " if titles[i] else "") +
            ("class-token attention per layer and head" if grid else "attention per layer")))
    if grid is not None:
        written.append(plot_rollout(x, rollout_maps(model, x), out / "attention_rollout.png",
                                    titles=titles, mean=bundle.mean, std=bundle.std))
    return written


def _predictions(kind: str):
    def write(model, bundle, out, args, loader, **_):
        from archlab.analysis import predictions as P

        preds = P.collect_predictions(model, loader, max_samples=args.max_samples,
                                      keep_images=kind != "confusion")
        common = dict(class_names=bundle.classes, mean=bundle.mean, std=bundle.std)
        if kind == "confusion":
            return [P.plot_confusion_matrix(preds.confusion(), out / "confusion_matrix.png",
                                            class_names=bundle.classes,
                                            title=f"confusion matrix, {args.split} split: "
                                                  f"{len(preds.labels)} examples, accuracy "
                                                  f"{preds.accuracy():.4f}")]
        if kind == "top-losses":
            return [P.plot_top_losses(preds, out / "top_losses.png", k=args.n, **common)]
        return [P.plot_sample_predictions(preds, out / "sample_predictions.png", n=args.n,
                                          **common)]
    return write


def _embeddings(model, bundle, out, args, loader, **_):
    from archlab.analysis import embeddings as E

    feats, labels = E.extract_features(model, loader, max_samples=args.max_samples)
    written = []
    for method, title, axes in (("pca", "PCA", ("PC 1", "PC 2")),
                                ("tsne", "t-SNE", ("t-SNE 1", "t-SNE 2"))):
        written.append(E.plot_embedding(
            E.project(feats, method), labels, out / f"embedding_{method}.png",
            class_names=bundle.classes, axis_names=axes,
            title=f"{title} of penultimate features ({len(labels)} {args.split} examples)"))
    return written


WRITERS = {"gradcam": _cam("gradcam", "Grad-CAM"), "gradcam++": _cam("gradcam++", "Grad-CAM++"),
           "saliency": _saliency, "ig": _ig, "attention": _attention,
           "confusion": _predictions("confusion"), "top-losses": _predictions("top-losses"),
           "samples": _predictions("samples"), "embeddings": _embeddings}
