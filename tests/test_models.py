from pathlib import Path

import pytest
import torch

from hudd.core.errors import HuddError
from hudd.models import ModelSpec, find_model_file, get_model, list_models, load_model, register_model, save_checkpoint
from hudd.models import decode_keypoints

SPEC = ModelSpec(arch="alexnet-small", arch_kwargs={"in_channels": 1, "num_classes": 3, "image_size": 32}, task="classification",
                 channels=1, height=32, width=32, mean=(0.5,), std=(0.2,), classes=("a", "b", "c"))


def test_registry_lists_and_rejects():
    assert {"alexnet", "alexnet-small", "kpnet"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown architecture 'vgg'; known: alexnet, alexnet-small, kpnet"):  # hudd's own registry
        get_model("vgg")
    with pytest.raises(ValueError, match="already registered"):
        register_model("alexnet")(lambda: None)


@pytest.mark.parametrize("name, kwargs, shape, out", [
    ("alexnet", {"in_channels": 3, "num_classes": 5}, (2, 3, 224, 224), (2, 5)),
    ("alexnet-small", {"in_channels": 1, "num_classes": 8, "image_size": 64}, (2, 1, 64, 64), (2, 8)),
    ("alexnet-small", {"in_channels": 3, "num_classes": 4, "image_size": 128}, (2, 3, 128, 128), (2, 4)),
    ("kpnet", {"in_channels": 1, "num_keypoints": 13, "image_size": 32, "width": 0.1}, (2, 1, 32, 32), (2, 13, 32, 32)),
], ids=["alexnet", "alexnet-small-64-gray", "alexnet-small-128-rgb", "kpnet"])
def test_architectures_give_the_right_output_shape(name, kwargs, shape, out):
    model = get_model(name, **kwargs).eval()
    with torch.no_grad():
        assert tuple(model(torch.zeros(shape)).shape) == out
    assert all(not isinstance(m, torch.nn.ReLU) or not m.inplace for m in model.modules()), "in-place ReLU hides inputs from LRP"


def test_alexnet_small_refuses_large_images():
    with pytest.raises(ValueError, match="32 to 128 px"):
        get_model("alexnet-small", image_size=224)


def test_decode_keypoints_is_the_argmax():
    maps = torch.zeros(1, 2, 8, 10)
    maps[0, 0, 3, 7] = 1.0
    maps[0, 1, 6, 1] = 1.0
    assert decode_keypoints(maps).tolist() == [[[7.0, 3.0], [1.0, 6.0]]]


def test_checkpoint_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    model = get_model(SPEC.arch, **SPEC.arch_kwargs).eval()
    save_checkpoint(tmp_path / "m.pt", model, SPEC, {"epochs_run": 3})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == "hudd-checkpoint"
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.spec == SPEC and loaded.meta == {"epochs_run": 3}
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.module(x))
    assert not loaded.module.training


def test_pickled_model_needs_trust(tmp_path: Path):
    model = get_model(SPEC.arch, **SPEC.arch_kwargs)
    torch.save(model, tmp_path / "pickled.pt")
    with pytest.raises(HuddError) as info:
        load_model(tmp_path / "pickled.pt")
    assert "pickled.pt" in str(info.value) and "--trust-model" in str(info.value)
    loaded = load_model(tmp_path / "pickled.pt", trust_model=True, spec_for=lambda arch, found, weights: SPEC)
    assert isinstance(loaded.module, torch.nn.Module)


def test_bare_state_dict_needs_arch_and_must_fit(tmp_path: Path):
    model = get_model(SPEC.arch, **SPEC.arch_kwargs)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(HuddError, match="is a state_dict; name its architecture with --arch"):
        load_model(tmp_path / "weights.pt", spec_for=lambda arch, found, weights: SPEC)
    loaded = load_model(tmp_path / "weights.pt", arch="alexnet-small", spec_for=lambda arch, found, weights: SPEC)
    assert loaded.spec.classes == ("a", "b", "c")
    other = ModelSpec(**{**SPEC.__dict__, "arch_kwargs": {**SPEC.arch_kwargs, "num_classes": 5}, "classes": tuple("abcde")})
    with pytest.raises(HuddError, match="weights do not fit architecture alexnet-small"):
        load_model(tmp_path / "weights.pt", arch="alexnet-small", spec_for=lambda arch, found, weights: other)


def test_not_a_model_file(tmp_path: Path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(HuddError, match="junk.pt: cannot read as a PyTorch model"):
        load_model(tmp_path / "junk.pt")


def test_model_choice(tmp_path: Path):
    with pytest.raises(HuddError, match="no model file"):
        find_model_file(tmp_path, None)
    (tmp_path / "a.pt").write_bytes(b"")
    assert find_model_file(tmp_path, None).name == "a.pt"
    assert find_model_file(tmp_path, "a").name == "a.pt"
    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(HuddError, match=r"several models \(a.pt, b.pth\); choose one with --model NAME"):
        find_model_file(tmp_path, None)
    with pytest.raises(HuddError, match="c.pt: no such model file"):
        find_model_file(tmp_path, "c.pt")


def test_case_model_spec_comes_from_the_data_for_a_bare_state_dict(trained_case: Path, tmp_path: Path):
    import shutil

    from hudd.models.case_model import open_case_model
    from hudd.case.data import Case

    case = tmp_path / "case"
    shutil.copytree(trained_case, case)
    trained = load_model(case / "DNNModels/alexnet-small.pt")
    torch.save(trained.module.state_dict(), case / "DNNModels/weights.pth")
    with pytest.raises(HuddError, match="several models"):
        open_case_model(Case(case))
    loaded = open_case_model(Case(case), "weights.pth", arch="alexnet-small")
    assert loaded.spec.classes == trained.spec.classes
    assert (loaded.spec.channels, loaded.spec.height, loaded.spec.width) == (1, 32, 32)
