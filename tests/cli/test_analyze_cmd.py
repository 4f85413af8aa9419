"""archlab analyze on real tiny runs: a CNN and a ViT trained on 8x8 digits."""

from __future__ import annotations

import json

import pytest

from archlab.cli import main
from archlab.runs.config import load_config
from archlab.runs.experiment import run_experiment
from tests.conftest import TINY

PNG = b"\x89PNG\r\n\x1a\n"
VIT = [o for o in TINY if not o.startswith("model.")] + [
    "model.name=vit_tiny_patch4",
    "model.options={img_size: 8, patch_size: 2, embed_dim: 16, depth: 2, num_heads: 2}",
    "optim.lr=0.002", "train.epochs=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze") / "runs"
    cnn = run_experiment(load_config(None, [*TINY, "experiment=cnn", "train.epochs=1"]),
                         runs_dir=root)
    vit = run_experiment(load_config(None, [*VIT, "experiment=vit"]), runs_dir=root)
    assert cnn.ok and vit.ok
    return root, cnn, vit


def _index(out):
    return json.loads((out / "index.json").read_text())


def test_all_on_a_cnn_writes_every_applicable_png(runs, capsys):
    root, cnn, _ = runs
    code = main(["analyze", cnn.run_id, "--runs-dir", str(root), "--n", "4",
                 "--max-samples", "60", "--ig-steps", "4"])
    assert code == 0
    out = cnn.run_dir / "artifacts" / "analysis"
    index = _index(out)
    assert set(index["files"]) == {"gradcam", "gradcam++", "saliency", "ig", "confusion",
                                   "top-losses", "samples", "embeddings"}
    assert "no attention layers" in index["skipped"]["attention"]
    assert "skipping attention" in capsys.readouterr().out
    assert index["checkpoint"].endswith(("best.ckpt", "last.ckpt"))
    assert index["classes"] == [str(i) for i in range(10)] and index["n"] == 4
    for files in index["files"].values():
        for name in files:
            assert (out / name).read_bytes()[:8] == PNG
    assert sorted(index["files"]["embeddings"]) == ["embedding_pca.png", "embedding_tsne.png"]


def test_vit_run_writes_attention_maps_and_gradcam(runs, tmp_path):
    root, _, vit = runs
    code = main(["analyze", str(vit.run_dir), "--runs-dir", str(root), "--what",
                 "attention,gradcam", "--n", "3", "--out", str(tmp_path / "a")])
    assert code == 0
    index = _index(tmp_path / "a")
    assert index["files"]["attention"] == ["attention_0.png", "attention_1.png",
                                           "attention_2.png", "attention_rollout.png"]
    assert index["files"]["gradcam"] == ["gradcam.png"] and not index["skipped"]
    for name in [*index["files"]["attention"], "gradcam.png"]:
        assert (tmp_path / "a" / name).read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, fragment", [
    (["--what", "attention"], "nothing to do: attention"),
    (["--what", "gradcam,shap"], "unknown --what item(s) ['shap']"),
    (["--layer", "stages.9"], "--layer"),
    (["--checkpoint", "missing.ckpt"], "checkpoint file not found"),
])
def test_usage_errors_exit_2(runs, args, fragment, capsys):
    root, cnn, _ = runs
    assert main(["analyze", cnn.run_id, "--runs-dir", str(root), *args]) == 2
    assert fragment in capsys.readouterr().err


def test_unknown_run_exits_2(tmp_path, capsys):
    assert main(["analyze", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err
