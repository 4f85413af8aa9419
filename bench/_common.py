"""Shared bits of the benchmarks: machine load and JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys

import torch


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0], "platform": platform.platform(),
            "torch": torch.__version__}


def emit(result: dict) -> None:
    json.dump({**result, "machine": machine()}, sys.stdout, indent=2)
    sys.stdout.write("\n")
