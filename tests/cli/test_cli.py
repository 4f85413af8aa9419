"""The archlab command: exit codes, help, and the commands working on a real tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archlab.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "archlab", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["lr-find"], ["runs"], ["runs", "ls"],
                                 ["runs", "show"], ["runs", "compare"], ["data"], ["data", "ls"],
                                 ["data", "prepare"], ["models"], ["models", "ls"],
                                 ["models", "info"], ["profile"], ["analyze"], ["sample"],
                                 ["study"], ["study", "run"], ["study", "report"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: archlab" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["train", "train.epochs=0"], "train.epochs"),
    (["train", "optim.lr=-1"], "optim.lr"),
    (["train", "model.name=resnet19"], "resnet18"),
    (["train", "-c", "missing.yaml"], "not found"),
    (["models", "info", "resnt18"], "did you mean"),
    (["data", "prepare", "fashion"], "fashion_mnist"),
    (["runs", "show", "nope"], "no run"),
    (["eval", "nope"], "no run"),
])
def test_usage_and_config_errors_exit_2(args, fragment, capsys, tmp_path):
    args = [*args, "--runs-dir", str(tmp_path)] if args[0] in ("train", "eval") else args
    if args[0] == "runs":
        args = ["runs", "--runs-dir", str(tmp_path), *args[1:]]
    assert main(args) == 2
    assert fragment in capsys.readouterr().err


def test_argparse_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_runtime_failure_exits_1(tmp_path, capsys):
    # a dataset root that does not hold the data: a runtime failure, not a usage error
    code = main(["train", "data.name=mnist", f"data.root={tmp_path}", "data.download=false",
                 "--runs-dir", str(tmp_path / "runs")])
    assert code == 1
    err = capsys.readouterr().err
    assert "mnist" in err.lower() and str(tmp_path) in err


def test_train_ls_show_compare_eval(tmp_path, tiny_overrides):
    runs = str(tmp_path / "runs")
    first = run_cli("train", *tiny_overrides, "experiment=cli", "--runs-dir", runs)
    assert first.returncode == 0, first.stderr
    assert "test accuracy" in first.stdout and "stored in" in first.stdout
    second = run_cli("train", *tiny_overrides, "experiment=cli", "optim.lr=0.02",
                     "--runs-dir", runs)
    assert second.returncode == 0, second.stderr
    ls = run_cli("runs", "--runs-dir", runs, "ls", "--experiment", "cli", "--sort", "val.acc",
                 "--json")
    records = json.loads(ls.stdout)
    assert len(records) == 2
    accs = [r["metrics"]["val.acc"] for r in records]
    assert accs == sorted(accs, reverse=True)
    table = run_cli("runs", "--runs-dir", runs, "ls")
    assert "val.acc" in table.stdout and records[0]["run_id"] in table.stdout
    show = run_cli("runs", "--runs-dir", runs, "show", records[0]["run_id"])
    assert "completed" in show.stdout and "cnn_tiny" in show.stdout
    cmp_ = run_cli("runs", "--runs-dir", runs, "compare", records[0]["run_id"],
                   records[1]["run_id"])
    assert "optim.lr" in cmp_.stdout and "test.acc" in cmp_.stdout
    ev = run_cli("eval", records[0]["run_id"], "--runs-dir", runs, "--checkpoint", "last",
                 "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["test.acc"] == pytest.approx(records[0]["metrics"]["test.acc"])


def test_saved_config_reproduces_the_run(tmp_path, tiny_overrides):
    runs = tmp_path / "runs"
    first = run_cli("train", *tiny_overrides, "train.epochs=1", "--runs-dir", str(runs))
    assert first.returncode == 0, first.stderr
    config = next(runs.glob("*/*/config.yaml"))
    again = run_cli("train", "-c", str(config), "--runs-dir", str(runs))
    assert again.returncode == 0, again.stderr
    from archlab.runs.store import RunStore

    a, b = RunStore(runs).list()
    assert a.metrics["test.acc"] == b.metrics["test.acc"]
    assert a.metrics["train.loss"] == b.metrics["train.loss"]


def test_models_ls_and_data_ls():
    out = run_cli("models", "ls", "resnet*")
    assert out.returncode == 0 and "resnet18" in out.stdout and "vgg11" not in out.stdout
    cost = run_cli("models", "ls", "resnet1?", "--cost")
    assert "11.69M" in cost.stdout and "3.63G" in cost.stdout  # resnet18: params, FLOPs at 224
    info = run_cli("models", "info", "resnet18")
    assert "11,689,512" in info.stdout  # torchvision's parameter count
    # Builder options: the separable CNN's count is tested against its closed form elsewhere.
    info = run_cli("models", "info", "cnn_fast", "block=separable")
    assert info.returncode == 0 and "36,298" in info.stdout and "block=separable" in info.stdout
    bad = run_cli("models", "info", "cnn_fast", "blok=separable")
    assert bad.returncode == 2 and "unknown option(s) ['blok']" in bad.stderr
    assert "'block'" in bad.stderr  # the valid options are listed
    data = run_cli("data", "ls")
    assert "fashion_mnist" in data.stdout and "cifar10" in data.stdout


def test_lr_find_saves_plot_and_suggestions(tmp_path, tiny_overrides):
    runs = tmp_path / "runs"
    out = run_cli("lr-find", *tiny_overrides, "--steps", "30", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    assert "steepest descent" in out.stdout and "valley" in out.stdout
    png = next(runs.glob("*/*/artifacts/lr_find.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(run_cli("runs", "--runs-dir", str(runs), "ls", "--json").stdout)[0]
    assert record["status"] == "completed" and "lr_find.steepest" in record["metrics"]
    assert main(["lr-find", "--start-lr", "1", "--end-lr", "0.1", "--runs-dir", str(runs)]) == 2
