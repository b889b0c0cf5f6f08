import numpy as np

from keras_ecg.layers import Negation
from tests.layers.augmentation import augmentation_checks as checks


def reference(x, params):
    return -x


def test_matches_numpy_reference():
    checks.check_reference(Negation, reference)


def test_random_subset_with_probability():
    def make(**kwargs):
        return Negation(probability=0.5, **kwargs)

    x = checks.ecg_batch(batch=16)
    y, params = checks.check_reference(make, reference, x=x)
    apply = params["apply"]
    assert 0 < apply.sum() < 16  # both outcomes occur in 16 draws
    np.testing.assert_array_equal(y[apply], -x[apply])
    np.testing.assert_array_equal(y[~apply], x[~apply])


def test_tf_data():
    checks.check_tf_data(Negation, reference)
    checks.check_tf_data(lambda **kw: Negation(probability=0.5, **kw), reference)


def test_common_behaviour():
    checks.check_common(
        lambda **kw: Negation(**{"probability": 0.5, **kw}),
        x=checks.ecg_batch(batch=16),
        independent=False,
    )
    x = checks.ecg_batch()
    np.testing.assert_array_equal(checks.to_numpy(Negation()(x)), -x)
