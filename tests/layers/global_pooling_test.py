import keras
import numpy as np
import pytest

from keras_ecg.layers import GlobalPooling1D
from keras_ecg.testing import assert_config_round_trip


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("avg", lambda x: x.mean(1)),
        ("max", lambda x: x.max(1)),
        ("last", lambda x: x[:, -1]),
        ("concat", lambda x: np.concatenate([x.max(1), x.mean(1)], -1)),
        (
            "concat_last",
            lambda x: np.concatenate([x.max(1), x.mean(1), x[:, -1]], -1),
        ),
    ],
)
def test_modes_match_numpy(mode, reference):
    x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype("float32")
    layer = GlobalPooling1D(mode)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, reference(x), rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((None, None, 4)) == (None, 4 * layer.multiplier)
    assert_config_round_trip(layer)


def test_hand_computed_concat():
    x = np.array([[[1.0, -2.0], [3.0, 0.0]]], "float32")
    out = keras.ops.convert_to_numpy(GlobalPooling1D("concat_last")(x))
    np.testing.assert_allclose(out, [[3.0, 0.0, 2.0, -1.0, 3.0, 0.0]])


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode 'mean'"):
        GlobalPooling1D("mean")
