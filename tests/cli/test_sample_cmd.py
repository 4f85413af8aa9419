"""archlab sample and eval on a language-model run: the model and vocabulary come from the
checkpoint alone; greedy output equals greedy decoding done by hand; seeds reproduce."""

from __future__ import annotations

import pytest
import torch

from archlab.cli import main
from archlab.data.text import CharVocab
from archlab.runs.config import load_config
from archlab.runs.evaluation import load_trained_model, run_checkpoint
from archlab.runs.experiment import run_experiment
from tests.conftest import TINY
from tests.tasks.test_task_contract import text_file


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    cfg = load_config(None, [
        "data.name=text", f"data.options={{path: {text_file(tmp_path_factory)}, block_size: 16}}",
        "data.val_fraction=0.1", "data.batch_size=32", "model.name=gpt_char",
        "model.options={depth: 1, width: 16, num_heads: 2}", "task.name=language_model",
        "train.epochs=1", "optim.name=adamw", "optim.lr=0.003", "callbacks.progress=false",
        "train.device=cpu"])
    result = run_experiment(cfg, runs_dir=tmp_path_factory.mktemp("runs"))
    assert result.ok, result.error
    return result


def test_greedy_sample_is_the_argmax_chain(lm_run, capsys):
    assert main(["sample", str(lm_run.run_dir), "--prompt", "The data", "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    loaded = load_trained_model(run_checkpoint(lm_run.run_dir))
    vocab = CharVocab.from_dict(loaded.data["vocab"])
    ids = vocab.encode("The data").tolist()
    with torch.no_grad():
        for _ in range(12):
            logits = loaded.model(torch.tensor([ids[-16:]]))[0, -1]
            ids.append(int(logits.argmax()))
    assert out == "The data" + vocab.decode(ids[len("The data"):])
    assert len(out) == len("The data") + 12


def test_seeded_sampling_reproduces_and_seeds_differ(lm_run, capsys):
    outs = []
    for seed in (3, 3, 4):
        assert main(["sample", str(lm_run.run_dir), "--prompt", "a", "--max-new-tokens", "40",
                     "--top-k", "10", "--top-p", "0.9", "--seed", str(seed)]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0] != outs[2]


def test_unknown_prompt_characters_are_listed(lm_run, capsys):
    assert main(["sample", str(lm_run.run_dir), "--prompt", "snow ☃ and ✓"]) == 2
    err = capsys.readouterr().err
    assert "☃" in err and "✓" in err


def test_eval_prints_perplexity_and_bits_per_char(lm_run, capsys):
    assert main(["eval", str(lm_run.run_dir), "--json", "--runs-dir",
                 str(lm_run.run_dir.parent.parent)]) == 0
    import json

    metrics = json.loads(capsys.readouterr().out)
    assert metrics.keys() == {"test.loss", "test.bpc", "test.ppl"}
    assert metrics["test.bpc"] == pytest.approx(metrics["test.loss"] / torch.log(
        torch.tensor(2.0)).item())
    assert metrics == pytest.approx({k: v for k, v in lm_run.metrics.items()
                                     if k.startswith("test.")}, rel=1e-12)


def test_sample_refuses_an_image_classifier(tmp_path, capsys):
    result = run_experiment(load_config(None, TINY + ["train.epochs=1"]), runs_dir=tmp_path)
    assert main(["sample", str(result.run_dir), "--prompt", "x"]) == 2
    assert "language-model run" in capsys.readouterr().err
