"""Tests of the ViT encoder of JEPA against a NumPy reference."""

import keras
import numpy as np
import pytest

from keras_ecg.models.encoders import ECGTransformer
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests import transformer_numpy as ref

CONFIG = dict(patch_size=4, hidden_dim=8, num_layers=2, num_heads=2, num_registers=1)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _encoder(seed=0, **overrides):
    config = dict(CONFIG, **overrides)
    encoder = ECGTransformer(input_leads=3, name="enc", **config)
    encoder.build((None, None, 3))
    ref.randomize(encoder, np.random.default_rng(seed))
    return encoder, dict(config, layer_norm_epsilon=encoder.layer_norm_epsilon)


def test_tokens_and_pooling_match_the_numpy_vit():
    # Bias-free as ViT-XS (the layer tests cover the biases).
    encoder, config = _encoder(use_bias=False, use_qkv_bias=False)
    x = np.random.default_rng(1).normal(size=(2, 24, 3)).astype("float32")
    tokens, registers = ref.encoder(x, ref.weights(encoder), config)
    assert tokens.shape == (2, 6, 8) and registers.shape == (2, 1, 8)
    out = _np(encoder(x, return_tokens=True))
    np.testing.assert_allclose(out, tokens, rtol=1e-4, atol=1e-4)
    # Downstream: the average of the patch tokens (registers excluded) ...
    np.testing.assert_allclose(_np(encoder(x)), tokens.mean(1), rtol=1e-4, atol=1e-4)
    # ... or the register token, or the token sequence.
    encoder.pooling = "register"
    np.testing.assert_allclose(_np(encoder(x)), registers[:, 0], rtol=1e-4, atol=1e-4)
    encoder.pooling = None
    np.testing.assert_allclose(_np(encoder(x)), tokens, rtol=1e-4, atol=1e-4)


def test_context_subset_sees_only_its_tokens_and_padding_is_inert():
    encoder, config = _encoder(seed=2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 40, 3)).astype("float32")  # 10 tokens
    indices = np.array([[1, 4, 5, 8, 0], [0, 2, 3, 7, 9]], "int32")
    valid = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    out = _np(encoder(x, token_indices=indices, token_valid=valid, return_tokens=True))
    assert out.shape == (2, 5, 8)
    w = ref.weights(encoder)
    for b in range(2):
        kept = indices[b][valid[b]]
        expected, _ = ref.encoder(x[b : b + 1], w, config, indices=kept[None])
        np.testing.assert_allclose(out[b, valid[b]], expected[0], rtol=1e-4, atol=1e-4)
    # Changing the signal outside the context changes nothing inside it.
    other = x.copy()
    other[0, :4] += 5.0  # token 0: padding of row 0
    other[0, 8:16] -= 3.0  # tokens 2, 3: not in row 0's context
    out_other = _np(
        encoder(other, token_indices=indices, token_valid=valid, return_tokens=True)
    )
    np.testing.assert_allclose(out_other[0, :4], out[0, :4], rtol=1e-5, atol=1e-5)


def test_reference_initialisation():
    encoder = ECGTransformer(patch_size=5, hidden_dim=96, num_layers=8, num_heads=4)
    encoder.build((None, None, 12))
    w = {k: v for k, v in ref.weights(encoder).items()}
    residual = np.concatenate(
        [
            w[f"block_{i}/{n}/kernel"].ravel()
            for i in range(8)
            for n in ("attention/output", "mlp_output")
        ]
    )
    others = np.concatenate(
        [
            w[f"block_{i}/{n}/kernel"].ravel()
            for i in range(8)
            for n in ("attention/qkv", "mlp_hidden")
        ]
    )
    # std 0.02 / sqrt(2 x 8) on the residual outputs, 0.02 elsewhere.
    assert abs(residual.std() - 0.005) < 0.0002
    assert abs(others.std() - 0.02) < 0.0005
    assert abs(w["registers"].std() - 0.02) < 0.006
    assert all(np.all(w[k] == 1.0) for k in w if k.endswith("gamma"))
    # No biases anywhere (ViT-XS: qkv_bias and bias False).
    assert not any(k.endswith(("bias", "beta")) for k in w)
    # Different blocks draw different weights.
    assert not np.allclose(
        w["block_0/attention/qkv/kernel"], w["block_1/attention/qkv/kernel"]
    )


def test_any_multiple_of_the_patch_and_a_clear_error_otherwise():
    encoder, _ = _encoder()
    assert encoder.num_tokens(1000) == 250
    # 12 samples: 3 tokens (the other tests use 6 and 10).
    tokens = encoder(np.zeros((1, 12, 3), "float32"), return_tokens=True)
    assert tuple(tokens.shape) == (1, 3, 8)
    with pytest.raises(ValueError, match="not a multiple of"):
        encoder.num_tokens(10)
    with pytest.raises(ValueError, match="not a multiple of"):
        encoder(np.zeros((1, 10, 3), "float32"))
    with pytest.raises(ValueError, match="return_tokens=True"):
        encoder(np.zeros((1, 8, 3), "float32"), token_indices=np.zeros((1, 1), "int32"))
    with pytest.raises(ValueError, match="pooling"):
        ECGTransformer(pooling="max")
    with pytest.raises(ValueError, match="num_registers"):
        ECGTransformer(pooling="register", num_registers=0)


def test_round_trips(tmp_path):
    encoder = ECGTransformer(
        patch_size=5,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        pooling="register",
        input_leads=12,
        name="vit",
    )
    restored = assert_config_round_trip(encoder)
    assert restored.pooling == "register" and restored.patch_size == 5
    x = np.random.default_rng(4).normal(size=(2, 50, 12)).astype("float32")
    encoder(x)
    ref.randomize(encoder, np.random.default_rng(5))
    loaded = assert_saved_model_round_trip(encoder, x, tmp_path, atol=1e-5)
    np.testing.assert_allclose(
        _np(loaded(x, return_tokens=True)),
        _np(encoder(x, return_tokens=True)),
        rtol=1e-5,
        atol=1e-5,
    )
