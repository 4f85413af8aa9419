"""DataConfig checks on real data: the test subset, and dataset options validated at load time."""

import pytest
import torch

from archlab.runs.config import ConfigError, load_config
from archlab.data.pipeline import build_loaders, load_dataset

CPU = torch.device("cpu")


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy()) for x in images}


def test_test_subset_is_balanced_part_of_the_real_test_split():
    cfg = load_config(None, ["data.name=digits", "data.test_subset_fraction=0.5"])
    bundle = load_dataset(cfg.data)
    loaders = build_loaders(cfg.data, device=CPU, seed=0, bundle=bundle)
    full_counts = torch.bincount(bundle.test.labels)
    labels = torch.cat([b["y"] for b in loaders.test])
    # every class keeps round(n_c / 2) examples: balanced, not the first half of the file
    assert torch.bincount(labels, minlength=len(full_counts)).tolist() == \
        [round(int(n) * 0.5) for n in full_counts]
    assert loaders.test.num_examples == len(labels) < len(bundle.test)
    # no held-out validation split: validation scores the same subset, not the full test set
    assert loaders.val_is_test and loaders.val.num_examples == loaders.test.num_examples
    assert _rows(loaders.test.images) <= _rows(bundle.test.images)


def test_test_subset_depends_on_split_seed_only():
    def labels(*extra):
        cfg = load_config(None, ["data.name=digits", "data.test_subset_fraction=0.3", *extra])
        loaders = build_loaders(cfg.data, device=CPU, seed=0)
        return torch.cat([b["x"].flatten(1).sum(1) for b in loaders.test])

    assert torch.equal(labels(), labels("train.seed=7"))  # the training seed does not move it
    assert not torch.equal(labels(), labels("data.split_seed=1"))


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_bad_test_subset_fraction_names_the_key(value):
    with pytest.raises(ConfigError, match=r"data\.test_subset_fraction"):
        load_config(None, ["data.name=digits", f"data.test_subset_fraction={value}"])


def test_unknown_dataset_option_fails_at_config_time_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"data\.options.*'size'.*image_size.*mode"):
        load_config(None, ["data.name=imagefolder", "data.root=/nonexistent",
                           "data.options={size: 64}"])
    with pytest.raises(ConfigError, match=r"dataset 'digits' has no option\(s\) \['img_size'\]"
                                          r"; valid options: none"):
        load_config(None, ["data.name=digits", "data.options={img_size: 8}"])
    cfg = load_config(None, ["data.name=synthetic", "data.options={num_train: 64}"])
    assert cfg.data.options == {"num_train": 64}
