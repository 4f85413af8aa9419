"""load_pretrained: formats, classifier / first-conv adaptation, strictness and safety."""

import hashlib
import os

import pytest
import torch
from safetensors.torch import save_file

from archlab.models import create_model
from archlab.models._weights import WeightsError, load_pretrained


def _eval_out(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _trained_like(name="resnet20", **kw):
    """A model whose BN statistics are not the defaults, so a missed buffer would show."""
    torch.manual_seed(0)
    model = create_model(name, **kw)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, model.default_cfg.input_size[0], 16, 16))
    return model


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "archlab"])
def test_round_trip_gives_identical_outputs(tmp_path, fmt):
    src = _trained_like()
    sd = src.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif fmt == "pth":
        torch.save(sd, path)
    else:
        torch.save({"model": sd, "config": {"model": {"name": "resnet20"}}}, path)
    torch.manual_seed(1)
    dst = create_model("resnet20")
    report = load_pretrained(dst, path, strict=True)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(_eval_out(dst, x), _eval_out(src, x), rtol=0, atol=0)
    assert report.loaded == list(sd) and not report.missing and not report.unexpected
    assert f"loaded {len(sd)} tensors" in str(report)


def test_other_num_classes_leaves_classifier_new(tmp_path):
    src = _trained_like()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    torch.manual_seed(1)
    dst = create_model("resnet20", num_classes=5)
    fresh_fc = dst.fc.weight.detach().clone()
    report = load_pretrained(dst, tmp_path / "w.pth", strict=True)
    assert report.dropped == ["fc.weight", "fc.bias"] == report.missing
    torch.testing.assert_close(dst.fc.weight, fresh_fc)
    for key, value in src.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(dst.state_dict()[key], value)
    assert "left new" in str(report)


def test_gray_model_sums_rgb_filters_and_matches_repeated_input(tmp_path):
    src = _trained_like()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = create_model("resnet20", in_chans=1)
    report = load_pretrained(dst, tmp_path / "w.pth", strict=True)
    assert "summed" in report.adapted["conv1.weight"]
    torch.testing.assert_close(dst.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    gray = torch.randn(2, 1, 16, 16)
    src.eval(), dst.eval()
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(gray),
                                   src.forward_features(gray.repeat(1, 3, 1, 1)))


def test_more_channels_repeat_rgb_and_rescale(tmp_path):
    src = _trained_like()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = create_model("resnet20", in_chans=5)
    load_pretrained(dst, tmp_path / "w.pth")
    w = src.conv1.weight
    expected = torch.cat([w, w[:, :2]], dim=1) * 3 / 5  # channels R, G, B, R, G
    torch.testing.assert_close(dst.conv1.weight, expected)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(WeightsError, match="refusing"):
        load_pretrained(create_model("resnet20"), path)
    assert not marker.exists()


def test_shape_mismatch_outside_head_raises(tmp_path):
    torch.save(create_model("resnet20", widths=(8, 16, 32)).state_dict(), tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_pretrained(create_model("resnet20"), tmp_path / "w.pth")


def test_missing_and_unexpected_keys_reported_or_strict(tmp_path):
    torch.save(create_model("resnet18", stem="small", num_classes=3).state_dict(),
               tmp_path / "plain.pth")
    se = create_model("seresnet18", stem="small", num_classes=3)
    report = load_pretrained(se, tmp_path / "plain.pth")
    assert report.missing and all(".attn." in k for k in report.missing)
    with pytest.raises(WeightsError, match="strict"):
        load_pretrained(se, tmp_path / "plain.pth", strict=True)
    torch.save(se.state_dict(), tmp_path / "se.pth")
    report = load_pretrained(create_model("resnet18", stem="small", num_classes=3),
                             tmp_path / "se.pth")
    assert report.unexpected and all(".attn." in k for k in report.unexpected)


def test_unrelated_file_raises(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="shares no parameter"):
        load_pretrained(create_model("resnet20"), tmp_path / "w.pth")


def test_url_is_cached_and_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = _trained_like()
    plain = tmp_path / "w.pth"
    torch.save(src.state_dict(), plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    good = tmp_path / f"resnet20-{digest[:8]}.pth"
    good.write_bytes(plain.read_bytes())
    load_pretrained(create_model("resnet20"), good.as_uri())
    assert (tmp_path / "cache" / "archlab" / "weights" / good.name).is_file()
    bad = tmp_path / "resnet20-00000000.pth"
    bad.write_bytes(plain.read_bytes())
    with pytest.raises(WeightsError, match="corrupt"):
        load_pretrained(create_model("resnet20"), bad.as_uri())
    assert not (tmp_path / "cache" / "archlab" / "weights" / bad.name).exists()
