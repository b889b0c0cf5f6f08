import numpy as np
import pytest

from keras_ecg.layers import TimeOut
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return TimeOut(crop_ratio_range=(0.2, 0.4), **kwargs)


def reference(x, params):
    y = x.copy()
    for b in range(x.shape[0]):
        start, length = int(params["start"][b]), int(params["length"][b])
        y[b, start : start + length] = 0.0
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference)
    length, start = params["length"], params["start"]
    assert np.all((length >= 50) & (length <= 100))  # floor(0.2 * 250) .. 0.4
    assert np.all((start >= 0) & (start + length <= 250))


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_zeroes_one_contiguous_segment():
    x = np.ones((4, 250, 12), "float32")
    y = checks.to_numpy(make(seed=0)(x))
    for record in y:
        zero = np.flatnonzero(record[:, 0] == 0)
        assert 50 <= zero.size <= 100
        np.testing.assert_array_equal(np.diff(zero), 1)
        assert np.all(record[zero] == 0) and np.all(np.delete(record, zero, 0) == 1)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="crop_ratio_range"):
        TimeOut(crop_ratio_range=(0.2, 1.5))
