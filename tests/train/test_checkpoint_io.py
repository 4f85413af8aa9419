"""Checkpoints are data: atomic writes, and nothing executes on load."""

import os
import pickle

import pytest
import torch

from archlab.train.checkpoint_io import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_and_no_temp_files_left(tmp_path):
    obj = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "rng": (3, (1, 2), None)}
    path = save_checkpoint(obj, tmp_path / "ckpt" / "last.ckpt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], obj["model"]["w"]) and loaded["epoch"] == 3
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = save_checkpoint({"v": 1}, tmp_path / "last.ckpt")

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"v": Unsaveable()}, path)
    assert load_checkpoint(path) == {"v": 1}
    assert os.listdir(tmp_path) == ["last.ckpt"]


class Exploit:
    """Unpickling this would create a file: the classic pickle code-execution payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# torch warns that the crafted file uses pickle protocol 4: expected for a hand-made payload.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_checkpoint_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"model": {}, "payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    # A raw pickle file (not torch's zip format) is refused as well.
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_and_missing_files_name_the_path(tmp_path):
    path = save_checkpoint({"w": torch.randn(1000)}, tmp_path / "c.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="c.ckpt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
