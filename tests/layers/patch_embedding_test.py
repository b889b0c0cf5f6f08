import keras
import numpy as np
import pytest

from keras_ecg.layers import PatchEmbedding
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def test_each_token_is_a_linear_map_of_one_patch_of_all_leads():
    rng = np.random.default_rng(0)
    layer = PatchEmbedding(hidden_dim=4, patch_size=5)
    x = rng.normal(size=(2, 20, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 4, 4)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    assert kernel.shape == (5, 3, 4)
    for b in range(2):
        for n in range(4):
            patch = x[b, 5 * n : 5 * n + 5]  # (samples, leads)
            expected = np.einsum("sc,scd->d", patch, kernel) + bias
            np.testing.assert_allclose(out[b, n], expected, rtol=1e-5, atol=1e-5)


def test_bias_free_projection_and_reference_initialisation():
    layer = PatchEmbedding(hidden_dim=64, patch_size=25, use_bias=False)
    layer.build((None, None, 12))
    (kernel,) = layer.weights
    values = keras.ops.convert_to_numpy(kernel)
    # trunc_normal_(std=0.02) with absolute +-2 bounds: a plain N(0, 0.02).
    assert abs(values.std() - 0.02) < 0.002 and abs(values.mean()) < 0.002


def test_length_not_a_multiple_of_the_patch_is_refused():
    layer = PatchEmbedding(hidden_dim=4, patch_size=5)
    with pytest.raises(ValueError, match="not a multiple of the patch size 5"):
        layer(np.zeros((1, 22, 3), "float32"))


def test_round_trips(tmp_path):
    layer = PatchEmbedding(hidden_dim=6, patch_size=4, use_bias=False)
    assert_config_round_trip(layer)
    inputs = keras.Input((16, 3))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(1).normal(size=(2, 16, 3)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path)
