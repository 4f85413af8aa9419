"""The README's "Writing a task" example runs as written and its task really learns."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_custom_task_example_trains_a_reconstruction_task():
    proc = subprocess.run([sys.executable, "examples/custom_task.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"validation MSE ([\d.]+) before training, ([\d.]+) after", proc.stdout)
    assert match, proc.stdout
    before, after = map(float, match.groups())
    # Normalized pixels: predicting nothing costs ~1; a trained autoencoder far less.
    assert before > 0.8 and after < 0.3 * before
