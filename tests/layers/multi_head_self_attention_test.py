import keras
import numpy as np
import pytest

from keras_ecg.layers import MultiHeadSelfAttention
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests import transformer_numpy as ref


def _layer(**kwargs):
    layer = MultiHeadSelfAttention(num_heads=2, name="attention", **kwargs)
    layer.build((None, None, 6))
    ref.randomize(layer, np.random.default_rng(0))
    return layer


def test_output_matches_numpy_attention():
    biases = True  # the encoder test covers the bias-free layout
    layer = _layer(use_qkv_bias=biases, use_bias=biases)
    x = np.random.default_rng(1).normal(size=(3, 5, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    w = {"attention/" + k: v for k, v in ref.weights(layer).items()}
    assert ("attention/qkv/bias" in w) == biases
    np.testing.assert_allclose(out, ref.attention(x, w, heads=2), rtol=1e-4, atol=1e-5)


def test_masked_keys_are_ignored_and_padding_changes_nothing():
    layer = _layer()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 6)).astype("float32")
    valid = np.array([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1]], bool)
    out = keras.ops.convert_to_numpy(layer(x, key_mask=valid))
    w = {"attention/" + k: v for k, v in ref.weights(layer).items()}
    np.testing.assert_allclose(
        out, ref.attention(x, w, heads=2, key_mask=valid), rtol=1e-4, atol=1e-5
    )
    # The real tokens' outputs equal those of the unpadded sequences.
    for b in range(2):
        alone = keras.ops.convert_to_numpy(layer(x[b : b + 1, valid[b]]))
        np.testing.assert_allclose(out[b, valid[b]], alone[0], rtol=1e-4, atol=1e-5)
    # Whatever the padded tokens hold.
    noisy = x.copy()
    noisy[~valid] = 100.0
    out_noisy = keras.ops.convert_to_numpy(layer(noisy, key_mask=valid))
    np.testing.assert_allclose(out_noisy[valid], out[valid], rtol=1e-4, atol=1e-5)


def test_width_must_split_into_heads():
    with pytest.raises(ValueError, match="multiple of num_heads=4"):
        MultiHeadSelfAttention(num_heads=4).build((None, 3, 6))


def test_round_trips(tmp_path):
    layer = MultiHeadSelfAttention(num_heads=2, use_bias=False, dropout=0.1)
    assert_config_round_trip(layer)
    inputs = keras.Input((4, 6))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(3).normal(size=(2, 4, 6)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path)
