import pytest
import yaml

from archlab.runs.config import ConfigError, build_config, config_to_dict, load_config


def test_yaml_plus_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 5}\noptim: {lr: 0.2}\n")
    cfg = load_config(path, ["train.epochs=3", "optim.lr=0.05", "data.augment=[flip]",
                             "optim.lr=1e-3"])
    assert cfg.train.epochs == 3
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML reads "1e-3" as a string; still a float
    assert cfg.data.augment == ["flip"]


@pytest.mark.parametrize("override, names", [
    ("train.epochs=0", ["train.epochs", "greater than or equal to 1"]),
    ("optim.lr=-0.1", ["optim.lr", "greater than 0"]),
    ("train.epochs=abc", ["train.epochs", "valid integer"]),
    ("train.epochs=2.5", ["train.epochs", "integer"]),
    ("optim.lrr=0.1", ["optim.lrr", "unknown key", "did you mean 'lr'", "weight_decay"]),
    ("trian.epochs=1", ["trian", "did you mean 'train'"]),
    ("model.name=resnet19", ["model.name", "did you mean", "resnet18"]),
    ("optim.name=adamm", ["optim.name", "adam"]),
    ("schedule.name=cosin", ["schedule.name", "cosine"]),
    ("data.augment=[flop]", ["data.augment", "flip"]),
    ("data.augment=[{name: random_crop, pad: 2}]", ["random_crop", "pad"]),
    ("model.options={widht: 3}", ["model", "widht", "valid options"]),
    ("data.name=fashion", ["data.name", "fashion_mnist"]),
    ("train.precision=fp8", ["train.precision", "fp32"]),
])
def test_bad_values_fail_naming_the_key(override, names):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for fragment in names:
        assert fragment in str(err.value)


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["optim.lr=-1", "train.epochs=0"])
    assert "optim.lr" in str(err.value) and "train.epochs" in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_resolved_config_round_trips_through_yaml():
    cfg = load_config(None, ["train.epochs=3", "data.augment=[flip, {name: random_crop, padding: 3}]",
                             "callbacks.ema.enabled=true", "optim.betas=[0.8, 0.99]"])
    text = yaml.safe_dump(config_to_dict(cfg))
    assert build_config(yaml.safe_load(text)) == cfg


def test_recipes_in_configs_are_valid():
    from pathlib import Path

    recipes = sorted(Path(__file__).resolve().parents[2].glob("configs/**/*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        load_config(path)
