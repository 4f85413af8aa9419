"""`archlab profile`: figures equal count_flops / the parameter count, usage errors exit 2, and a
comparison of two trained runs writes the Pareto plot."""

from __future__ import annotations

import json

import pytest
import torch

from archlab.cli import main
from archlab.runs.config import load_config
from archlab.models import count_flops, create_model
from archlab.runs.experiment import run_experiment
from archlab.runs.store import RunStore
from tests.conftest import TINY

CHEAP = ["--runs", "1", "--warmup", "0"]


def test_profile_resnet18_json_matches_count_flops(capsys):
    code = main(["profile", "resnet18", "--json", "--batch-sizes", "1", "--input-size", "3", "64",
                 "64", "--per-layer", *CHEAP])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    with torch.device("meta"):
        model = create_model("resnet18")
    assert out["params"] == sum(p.numel() for p in model.parameters()) == 11_689_512
    assert out["flops"] == count_flops(model, (3, 64, 64)) and out["macs"] == out["flops"] // 2
    assert [s["batch_size"] for s in out["latency"]] == [1] and out["latency"][0]["median_ms"] > 0
    mem = out["memory"][0]
    assert mem["param_bytes"] == 11_689_512 * 4 and mem["activation_bytes"] > 0
    assert sum(layer["flops"] for layer in out["layers"]) == out["flops"]


def test_profile_prints_a_table(capsys):
    assert main(["profile", "cnn_tiny", "--batch-sizes", "1", "2", "--no-memory", "--per-layer",
                 "--depth", "1", *CHEAP]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in create_model("cnn_tiny").parameters())
    assert f"params      {params:,}" in out
    assert "median ms" in out and "per layer" in out and "stages" in out


@pytest.mark.parametrize("args, fragment", [
    (["profile", "resnt18"], "did you mean resnet18"),
    (["profile", "cnn_tiny", "--batch-sizes", "0"], "--batch-sizes"),
    (["profile", "cnn_tiny", "--runs", "0"], "--runs"),
])
def test_usage_errors_exit_2(args, fragment, capsys, tmp_path):
    assert main([*args, "--runs-dir", str(tmp_path)]) == 2
    assert fragment in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["profile", "--help"])
    assert e.value.code == 0 and "--batch-sizes" in capsys.readouterr().out


def test_comparing_two_runs_writes_the_pareto_plot(tmp_path, capsys):
    runs = tmp_path / "runs"
    results = [run_experiment(load_config(None, [*TINY, "experiment=prof", *extra]), runs_dir=runs)
               for extra in ([], ["model.name=cnn_small"])]
    assert all(r.ok for r in results)
    out_dir = tmp_path / "out"
    code = main(["profile", results[0].run_id, str(results[1].run_dir), "--runs-dir", str(runs),
                 "--out", str(out_dir), "--json", "--no-memory", *CHEAP])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    store = RunStore(runs)
    assert [r["accuracy"] for r in payload["reports"]] == \
        [store.get(r.run_id).metrics["test.acc"] for r in results]
    assert [r["model"] for r in payload["reports"]] == ["cnn_tiny", "cnn_small"]
    png = out_dir / "pareto.png"
    assert payload["pareto_png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out_dir / "profile.json").read_text()) == payload
