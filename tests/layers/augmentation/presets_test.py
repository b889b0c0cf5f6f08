import numpy as np
import pytest

from keras_ecg.layers import NOISE_LEVELS
from keras_ecg.layers import AugmentationStack
from keras_ecg.layers import BaselineShift
from keras_ecg.layers import BaselineWander
from keras_ecg.layers import EMNoise
from keras_ecg.layers import PowerlineNoise
from keras_ecg.layers import RandomResizedCrop
from keras_ecg.layers import TimeOut
from keras_ecg.layers import paper_augmentations
from keras_ecg.layers import physiological_noise
from tests.layers.augmentation import augmentation_checks as checks


def test_paper_best_setting_is_rrc_then_timeout():
    stack = paper_augmentations("rrc_to", seed=10)
    assert isinstance(stack, AugmentationStack)
    rrc, timeout = stack.layers
    assert isinstance(rrc, RandomResizedCrop) and isinstance(timeout, TimeOut)
    assert rrc.crop_ratio_range == (0.5, 1.0)
    assert timeout.crop_ratio_range == (0.2, 0.4)
    assert (rrc.seed, timeout.seed) == (10, 11)
    x = checks.ecg_batch()
    views = checks.to_numpy(stack(x)), checks.to_numpy(stack(x))
    assert views[0].shape == x.shape and not np.allclose(*views)


def test_setting_names_are_parsed():
    names = [type(layer).__name__ for layer in paper_augmentations("GN_ChR_RRC").layers]
    assert names == ["GaussianNoise", "ChannelResize", "RandomResizedCrop"]
    physio = paper_augmentations("blw_pln_em_bls", sampling_rate=500).layers
    assert [layer.sampling_rate for layer in physio if layer.sampling_rate] == [
        500.0
    ] * 3
    with pytest.raises(ValueError, match=r"unknown transformation\(s\) \['xyz'\]"):
        paper_augmentations("rrc_xyz")


def test_noise_levels_follow_the_reference_table():
    assert NOISE_LEVELS[1] == {
        "bw_cmax": 0.05,
        "em_cmax": 0.25,
        "pl_cmax": 0.1,
        "bs_cmax": 0.5,
    }
    assert NOISE_LEVELS[6] == {
        "bw_cmax": 0.3,
        "em_cmax": 2.0,
        "pl_cmax": 0.5,
        "bs_cmax": 3.0,
    }
    for key in NOISE_LEVELS[1]:
        values = [NOISE_LEVELS[level][key] for level in range(1, 7)]
        assert values == sorted(values), key


def test_physiological_noise_stack():
    stack = physiological_noise(4, sampling_rate=500, seed=0)
    types = [type(layer) for layer in stack.layers]
    assert types == [BaselineWander, PowerlineNoise, EMNoise, BaselineShift]
    assert [layer.c_max for layer in stack.layers] == [0.2, 0.4, 1.0, 2.0]
    assert stack.layers[1].sampling_rate == 500.0
    x = np.zeros((4, 250, 12), "float32")
    low = np.abs(checks.to_numpy(physiological_noise(1, seed=0)(x))).mean()
    high = np.abs(checks.to_numpy(physiological_noise(6, seed=0)(x))).mean()
    assert 0 < low < high


@pytest.mark.parametrize("level", [0, 7, 2.5, True])
def test_rejects_unknown_levels(level):
    with pytest.raises(ValueError, match="level"):
        physiological_noise(level)
