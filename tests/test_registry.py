import pytest

from archlab.registry import Registry, UnknownNameError


def make():
    reg = Registry("model")
    for name in ("resnet18", "resnet152", "resnet20", "vgg11"):
        reg.add(name, object(), family=name[:3])
    return reg


def test_duplicate_name_is_an_error():
    reg = make()
    with pytest.raises(ValueError, match="already registered"):
        reg.add("resnet18", object())


def test_wildcards_and_sorting():
    reg = make()
    assert reg.list("resnet*") == ["resnet152", "resnet18", "resnet20"]
    assert reg.list("vgg?1") == ["vgg11"]
    assert reg.list("nope*") == []


def test_unknown_name_lists_close_matches():
    reg = make()
    with pytest.raises(UnknownNameError) as err:
        reg.get("resnet19")
    msg = str(err.value)
    assert "unknown model 'resnet19'" in msg
    assert "did you mean" in msg and "resnet18" in msg


def test_decorator_registers_with_metadata():
    reg = Registry("thing")

    @reg.register("x", paper="p")
    def build():
        return 1

    assert reg.get("x") is build
    assert reg.entry("x").meta == {"paper": "p"}
    assert "x" in reg and len(reg) == 1


def test_build_from_config_entries():
    reg = Registry("augmentation")

    @reg.register("crop")
    def crop(padding=2, scale=1):
        return ("crop", padding, scale)

    assert reg.build("crop") == ("crop", 2, 1)
    assert reg.build({"name": "crop", "padding": 4}, scale=3) == ("crop", 4, 3)
    with pytest.raises(ValueError, match="augmentation 'crop'"):
        reg.build({"name": "crop", "pad": 4})
    with pytest.raises(ValueError, match="mapping with 'name'"):
        reg.build(["crop"])
    with pytest.raises(UnknownNameError, match="did you mean crop"):
        reg.build("cropp")
