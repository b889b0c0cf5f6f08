import math

import numpy as np
import pytest

from keras_ecg.layers import BaselineShift
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    # 1 s mean segments and up to 2 per second: several overlapping segments.
    return BaselineShift(
        c_max=1.0,
        mean_segment_length=1.0,
        max_segments_per_second=2.0,
        sampling_rate=100,
        **kwargs,
    )


def reference(x, params, fs=100.0):
    batch, timesteps, _ = x.shape
    y = x.astype("float64")
    for b in range(batch):
        steps = np.zeros(timesteps)
        for j in range(int(params["num_segments"][b])):
            mid, duration = params["centers"][b, j], params["durations"][b, j]
            left = max(0, int(mid - 0.5 * fs * duration))
            right = min(timesteps - 1, int(mid + 0.5 * fs * duration))
            steps[left : right + 1] = params["levels"][b, j]  # later overwrite
        steps *= params["amplitude"][b]
        y[b] += steps[:, None] * params["lead_gains"][b][None, :]
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference)
    assert params["centers"].shape == (checks.BATCH, 5)  # ceil(2 * 250 / 100)
    assert np.all((params["num_segments"] >= 0) & (params["num_segments"] <= 5))


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_piecewise_constant_steps_and_gain_distribution():
    layer = BaselineShift(sampling_rate=100, seed=0)
    assert layer.max_segments(500) == math.ceil(0.3 * 5)
    x = np.zeros((4, 250, 12), "float32")
    y = checks.to_numpy(make(seed=0)(x))
    jumps = np.count_nonzero(np.abs(np.diff(y[:, :, 0], axis=1)) > 1e-7, axis=1)
    assert np.all(jumps <= 2 * 5) and jumps.max() > 0  # 5 slots
    params = checks.to_numpy(layer.get_random_transformation((64, 500, 12)))
    # Intended gains (2 r - 1) * N(1, 1): symmetric, E[g^2] = 2.
    gains = params["lead_gains"].ravel()
    assert abs(gains.mean()) < 0.2 and abs((gains**2).mean() - 2.0) < 0.35
    assert abs(np.mean(gains > 0) - 0.5) < 0.1


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="c_max"):
        BaselineShift(c_max=-1)
