import math

import keras
import numpy as np

from keras_ecg.layers import TransformerBlock
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests import transformer_numpy as ref


def test_output_matches_numpy_pre_norm_block():
    block = TransformerBlock(
        num_heads=2, mlp_ratio=2.0, use_bias=True, use_qkv_bias=True, name="blk"
    )
    block.build((None, None, 8))
    ref.randomize(block, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    valid = np.array([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]], bool)
    w = ref.weights(block)
    # With every bias (LayerNorm shifts included); the encoder test runs the
    # bias-free layout of ViT-XS.
    assert {"attention_norm/beta", "mlp_hidden/bias", "attention/qkv/bias"} <= set(w)
    for mask in (None, valid):
        out = keras.ops.convert_to_numpy(block(x, key_mask=mask))
        expected = ref.block(x.astype("float64"), w, heads=2, key_mask=mask)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_gelu_is_the_exact_erf_form():
    # tanh-approximated GELU differs from the erf form by ~1e-3 around |x|=2.
    block = TransformerBlock(num_heads=1, mlp_ratio=1.0)
    block.build((None, None, 2))
    for w in block.weights:
        w.assign(np.zeros(tuple(w.shape), "float32"))
    block.mlp_norm.gamma.assign(np.ones(2, "float32"))
    block.mlp_hidden.kernel.assign(np.eye(2, dtype="float32") * 10.0)
    block.mlp_output.kernel.assign(np.eye(2, dtype="float32"))
    x = np.array([[[0.3, -0.3]]], "float32")  # normalised: (1, -1) * 10
    out = keras.ops.convert_to_numpy(block(x))
    gelu = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in (10.0, -10.0)]
    # The 1e-6 epsilon makes the normalised values 1 - 5.6e-6.
    np.testing.assert_allclose(out[0, 0] - x[0, 0], gelu, rtol=1e-4, atol=1e-4)


def test_round_trips(tmp_path):
    block = TransformerBlock(num_heads=2, use_qkv_bias=True, layer_norm_epsilon=1e-5)
    assert_config_round_trip(block)
    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, block(inputs))
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)
