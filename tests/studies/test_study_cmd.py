"""`archlab study run | report | ls`: exit codes, outputs, and the end-to-end command on a
tiny digits study (one trial)."""

from __future__ import annotations

import pytest

from archlab.cli import main
from archlab.studies.runner import read_ledger

from tests.conftest import TINY


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    overrides = "\n".join(f"  - '{o}'" for o in TINY)
    path.write_text(f"name: clitiny\ndescription: one digits trial\noverrides:\n{overrides}\n"
                    f"seeds: [0, 1]\nquick:\n  overrides: ['train.epochs=1']\n  seeds: [0]\n")
    return path


def test_run_quick_then_report_then_ls(study_file, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["study", "run", str(study_file), "--quick", "--runs-dir", runs]) == 0
    study_dir = tmp_path / "runs" / "studies" / "clitiny-quick"
    ledger = read_ledger(study_dir)["trials"]
    assert list(ledger) == ["base seed=0"] and ledger["base seed=0"]["status"] == "completed"
    md = (study_dir / "report.md").read_text()
    assert "QUICK mode" in md and "`archlab study run" in md and "--quick" in md
    (study_dir / "report.md").unlink()
    assert main(["study", "report", "clitiny-quick", "--runs-dir", runs]) == 0
    assert "| base |" in (study_dir / "report.md").read_text()
    capsys.readouterr()
    assert main(["study", "ls", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "clitiny-quick" in out and "1 completed" in out
    # built-in studies listed by what they compare (the description up to its first ': ')
    row = next(line for line in out.splitlines() if line.startswith("architectures "))
    assert row.split(None, 1)[1].rstrip() == ("cnn_fast vs ResNet-20 vs GoogLeNet (small stem) "
                                              "vs ViT-Tiny/4 on Fashion-MNIST")


def test_headline_cuts_at_the_colon_or_a_word():
    from archlab.cli.study_cmd import _headline

    assert _headline("A vs B on data: accuracy, curves") == "A vs B on data"
    assert _headline("one two, three four", width=14) == "one two…"
    assert _headline("  spread\n over   lines ") == "spread over lines"


def test_command_line_overrides_and_seeds_apply_to_every_trial(study_file, tmp_path, capsys):
    import yaml

    runs = str(tmp_path / "runs")
    # After quick mode's own override (train.epochs=1): the command line wins.
    argv = ["study", "run", str(study_file), "train.epochs=2", "optim.lr=0.03", "--seeds", "3",
            "5", "--quick", "--runs-dir", runs, "--no-report"]
    assert main(argv) == 0
    ledger = read_ledger(tmp_path / "runs" / "studies" / "clitiny-quick")["trials"]
    assert list(ledger) == ["base seed=3", "base seed=5"]
    for entry in ledger.values():
        cfg = yaml.safe_load((tmp_path / entry["run_dir"] / "config.yaml").read_text())
        assert cfg["train"]["epochs"] == 2 and cfg["optim"]["lr"] == 0.03
        assert cfg["train"]["seed"] == entry["seed"]
    capsys.readouterr()
    assert main(argv[:-1]) == 0  # same settings: nothing to run again; writes the report
    md = (tmp_path / "runs" / "studies" / "clitiny-quick" / "report.md").read_text()
    assert "changed on the command line: `train.epochs=2 optim.lr=0.03 --seeds 3 5`" in md
    assert "2 already done, 0 to run" in capsys.readouterr().out
    assert main(argv[:3] + ["train.epochs=1", "--seeds", "3", "--quick", "--runs-dir", runs,
                            "--no-report"]) == 0  # other settings: a new trial, not a reuse
    out = capsys.readouterr().out
    assert "0 already done, 1 to run" in out
    assert main(["study", "run", str(study_file), "train.epochz=1", "--runs-dir", runs]) == 2
    assert "train.epochz" in capsys.readouterr().err
    assert main(["study", "run", str(study_file), "--seeds", "1", "1", "--runs-dir", runs]) == 2
    assert "distinct" in capsys.readouterr().err


@pytest.mark.parametrize("body, fragment", [
    ("name: x\nseedz: [0]\n", "seedz: unknown key; did you mean 'seeds'"),
    ("name: x\noverrides: ['optim.lr=-1']\n", "optim.lr"),
    ("name: x\nvariants: {a: ['model.name=resnet19']}\n", "configuration 'a'"),
    ("- just a list\n", "must be a mapping"),
])
def test_config_errors_exit_2_and_name_the_problem(tmp_path, capsys, body, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    assert main(["study", "run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "runs" / "studies").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["study", "run", str(tmp_path / "missing.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err
    assert main(["study", "report", str(tmp_path / "nowhere"), "--runs-dir",
                 str(tmp_path)]) == 2
    assert "no study directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["study", "report", str(tmp_path / "empty")]) == 2
    assert "not a study directory" in capsys.readouterr().err
    path = tmp_path / "ok.yaml"
    path.write_text("name: ok\n")
    assert main(["study", "run", str(path), "--jobs", "0"]) == 2


def test_help(capsys):
    for cmd in (["study"], ["study", "run"], ["study", "report"], ["study", "ls"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0 and "usage: archlab study" in capsys.readouterr().out
