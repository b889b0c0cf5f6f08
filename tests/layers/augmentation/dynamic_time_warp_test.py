import numpy as np
import pytest

from keras_ecg.layers import DynamicTimeWarp
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return DynamicTimeWarp(warps=3, strength=0.5, **kwargs)


def warp(log_speed, timesteps):
    knots = np.linspace(0.0, timesteps - 1.0, log_speed.shape[0])
    speed = np.exp(np.interp(np.arange(timesteps), knots, log_speed))
    cumulative = np.cumsum(speed)
    return (
        (cumulative - cumulative[0])
        / (cumulative[-1] - cumulative[0])
        * (timesteps - 1)
    )


def reference(x, params):
    batch, timesteps, leads = x.shape
    y = np.empty_like(x)
    for b in range(batch):
        w = warp(params["log_speed"][b].astype("float64"), timesteps)
        for c in range(leads):
            y[b, :, c] = np.interp(w, np.arange(timesteps), x[b, :, c])
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference, atol=1e-4)
    assert params["log_speed"].shape == (checks.BATCH, 5)


def test_tf_data():
    checks.check_tf_data(make, reference, atol=1e-4)


def test_common_behaviour():
    checks.check_common(make)


def test_warp_is_monotonic_with_fixed_end_points():
    ramp = np.tile(np.arange(250, dtype="float32")[None, :, None], (4, 1, 12))
    y = checks.to_numpy(DynamicTimeWarp(strength=1.0, seed=0)(ramp))[..., 0]
    assert np.all(np.diff(y, axis=1) > 0)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(y[:, -1], 249.0, atol=1e-2)
    assert np.abs(y - ramp[..., 0]).max() > 5  # it does warp
    flat = DynamicTimeWarp(strength=0.0, seed=0)(ramp)
    np.testing.assert_allclose(checks.to_numpy(flat), ramp, atol=1e-3)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warps"):
        DynamicTimeWarp(warps=-1)
