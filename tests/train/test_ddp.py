"""DDP with real processes: torchrun, 2 ranks, gloo on CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from archlab.runs.config import load_config
    from archlab.runs.experiment import run_experiment

    out, overrides = sys.argv[1], sys.argv[2:]
    result = run_experiment(load_config(None, overrides), runs_dir=out + "/runs")
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.save({"model": result.model.state_dict(), "metrics": result.metrics},
               f"{out}/rank{rank}.pt")
""")

COMMON = ["data.name=synthetic", "data.options={num_train: 512, num_test: 128, img_size: 8}",
          "model.name=mlp", "model.options={img_size: 8, width: 32}", "train.epochs=2",
          "optim.lr=0.05", "callbacks.progress=false", "train.device=cpu"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
def test_two_rank_ddp_matches_single_process_with_double_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script),
                           str(ddp_dir), *COMMON, "data.batch_size=16"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    subprocess.run([sys.executable, str(script), str(single_dir), *COMMON, "data.batch_size=32"],
                   env=env, check=True, timeout=300)
    r0, r1 = (torch.load(ddp_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(single_dir / "rank0.pt", weights_only=True)
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), f"ranks differ at {key}"
        # Rank r takes every 2nd index of the shared permutation, so the two ranks' batches of
        # 16 together are the single process's batch of 32; DDP averages their gradients.
        torch.testing.assert_close(r0["model"][key], single["model"][key], rtol=1e-4, atol=1e-5)
    assert r0["metrics"]["test.acc"] == pytest.approx(single["metrics"]["test.acc"], abs=1e-6)
    # Only rank 0 wrote the run: one run directory, one index row.
    runs = list((ddp_dir / "runs").glob("*/*/config.yaml"))
    assert len(runs) == 1
