import numpy as np
import pytest

from keras_ecg.layers import RandomResizedCrop
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return RandomResizedCrop(crop_ratio_range=(0.5, 1.0), **kwargs)


def reference(x, params):
    batch, timesteps, leads = x.shape
    y = np.empty_like(x)
    for b in range(batch):
        start, length = int(params["start"][b]), int(params["length"][b])
        grid = np.linspace(0.0, length - 1.0, timesteps)
        for c in range(leads):
            crop = x[b, start : start + length, c]
            y[b, :, c] = np.interp(grid, np.arange(length), crop)
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference, atol=2e-5)
    length, start = params["length"], params["start"]
    assert np.all((length >= 125) & (length <= 250))
    assert np.all((start >= 0) & (start + length <= 250))


def test_tf_data():
    checks.check_tf_data(make, reference, atol=2e-5)


def test_common_behaviour():
    checks.check_common(make)


def test_full_crop_is_identity_and_half_crop_stretches_a_ramp():
    ramp = np.tile(np.arange(250, dtype="float32")[None, :, None], (4, 1, 12))
    full = RandomResizedCrop(crop_ratio_range=(1.0, 1.0), seed=0)(ramp)
    np.testing.assert_allclose(checks.to_numpy(full), ramp, atol=1e-4)
    half = checks.to_numpy(RandomResizedCrop(crop_ratio_range=(0.5, 0.5), seed=0)(ramp))
    # A ramp stays a ramp with slope (125 - 1) / 249 starting at the crop start.
    np.testing.assert_allclose(np.diff(half, axis=1), 124 / 249, atol=1e-3)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="> 0"):
        RandomResizedCrop(crop_ratio_range=(0.0, 1.0))
