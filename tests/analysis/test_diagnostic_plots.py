"""What the diagnostics PNGs draw, read back from the matplotlib figures: the gradient-flow curve
joins exactly the weight tensors (ndim >= 2, from the run's parameters record), and the dead-unit
heat map holds every (layer, epoch) fraction with its percentage written in the cell."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from torch import nn

from archlab.analysis.diagnostic_plots import plot_diagnostics


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would close, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    monkeypatch.undo()
    plt.close("all")


def write_records(run_dir, records) -> None:
    (run_dir / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def grad_flow_records(model: nn.Module, with_shapes: bool) -> list[dict]:
    names = [n for n, _ in model.named_parameters()]
    records = [{"step": s, "epoch": 1, "kind": "grad_flow", "global_norm": 1.0,
                "depth_ratio": 0.5, "warnings": [],
                "layers": {n: {"norm": 10.0 ** -(i + s), "mean_abs": 1e-3} for i, n in
                           enumerate(names)}} for s in (1, 2)]
    if with_shapes:
        records.insert(0, {"step": 0, "epoch": 0, "kind": "parameters",
                           "layers": {n: {"shape": list(p.shape)}
                                      for n, p in model.named_parameters()}})
    return records


@pytest.mark.parametrize("with_shapes", [True, False])
def test_grad_flow_curve_joins_the_weight_tensors(tmp_path, figures, with_shapes):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    # 0.weight 0.bias 1.weight 1.bias 2.weight 2.bias: BN's weight is 1-d, a scale not a kernel
    write_records(tmp_path, grad_flow_records(model, with_shapes))
    written = plot_diagnostics(tmp_path)
    assert [p.name for p in written] == ["grad_flow.png"]
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == [n for n, _ in
                                                            model.named_parameters()]
    joined = [0, 4] if with_shapes else [0, 2, 4]  # without shapes BN's weight passes as one
    lines = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(lines) == len(crosses) == 2  # one of each per logged step
    for step, line in zip((1, 2), lines):
        assert list(line.get_xdata()) == joined
        np.testing.assert_allclose(line.get_ydata(), [10.0 ** -(i + step) for i in joined])
    assert list(crosses[0].get_xdata()) == [i for i in range(6) if i not in joined]


def test_dead_unit_heat_map_holds_every_layer_and_epoch(tmp_path, figures):
    fractions = {"stages.0.relu": [0.0, 0.25, 0.5], "stages.1.relu": [0.0, 0.0, 0.125],
                 "fc.relu": [1.0, 1.0, 1.0]}
    units = {"stages.0.relu": 4, "stages.1.relu": 8, "fc.relu": 2}
    write_records(tmp_path, [
        {"step": 10 * e, "epoch": e, "kind": "dead_units",
         "layers": {n: {"dead_fraction": f[e - 1], "dead": round(f[e - 1] * units[n]),
                        "units": units[n]} for n, f in fractions.items()}}
        for e in (1, 2, 3)])
    plot_diagnostics(tmp_path)
    ax = figures[0].axes[0]
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image, np.array(list(fractions.values())))  # (layers, epochs)
    cells = [t.get_text() for t in ax.texts]
    assert cells == [f"{100 * v:.0f}%" for f in fractions.values() for v in f]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "stages.0.relu (4 units)", "stages.1.relu (8 units)", "fc.relu (2 units)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    # last epoch: 2 of 4 + 1 of 8 + 2 of 2 dead
    assert "5 of 14 units dead after the last epoch; worst layer 100%" in ax.get_title()
