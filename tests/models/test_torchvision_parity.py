"""State-dict keys, shapes, parameter counts and FLOPs equal torchvision's (reference manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from archlab.models import MODELS, count_flops, create_model

MANIFEST_PATH = Path(__file__).resolve().parents[3] / "shared" / "reference" / \
    "torchvision_manifest.json"
if not MANIFEST_PATH.exists():
    pytest.skip(f"reference manifest not found at {MANIFEST_PATH}", allow_module_level=True)
MANIFEST = json.loads(MANIFEST_PATH.read_text())["models"]


def test_every_manifest_model_is_registered():
    missing = [n for n in MANIFEST if n not in MODELS]
    assert not missing, f"torchvision models without an archlab twin: {missing}"


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_state_dict_params_and_flops_match(name):
    ref = MANIFEST[name]
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_chans=3)
    state = model.state_dict()
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert ours == [list(entry) for entry in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params_total"]
    res = ref["canonical_resolution"]
    assert count_flops(model, (3, res, res)) == ref["flops"]
