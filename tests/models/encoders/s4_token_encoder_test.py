"""Tests of the S4 token encoder (JEPA's S4 encoder)."""

import keras
import numpy as np
import pytest

from keras_ecg.models.encoders import S4TokenEncoder
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip

CONFIG = dict(patch_size=4, d_model=8, num_layers=2, d_state=4, input_leads=3)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _encoder(**overrides):
    keras.utils.set_random_seed(0)
    encoder = S4TokenEncoder(**dict(CONFIG, **overrides))
    encoder.build((None, None, 3))
    # A visible mask token (it starts near zero).
    encoder.mask_token.assign(np.linspace(-1.0, 1.0, 8).astype("float32"))
    return encoder


def _numpy_tokens(encoder, x):
    """Patch `n` = samples `n*p .. n*p+p-1` of all leads, time-major, as a
    kernel-p / stride-p convolution of the leads: `(batch, N, p * leads)`."""
    p = encoder.patch_size
    batch, steps, leads = x.shape
    patches = x.reshape(batch, steps // p, p * leads)
    kernel = _np(encoder.patch_projection.kernel)
    bias = _np(encoder.patch_projection.bias)
    return patches @ kernel + bias


def test_tokens_are_the_s4_stack_over_patch_embeddings():
    encoder = _encoder()
    x = np.random.default_rng(1).normal(size=(2, 40, 3)).astype("float32")
    embedded = _numpy_tokens(encoder, x)
    # Patch 2 of sample 0 holds samples 8..11: a direct check of the order.
    np.testing.assert_allclose(
        embedded[0, 2],
        x[0, 8:12].ravel() @ _np(encoder.patch_projection.kernel)
        + _np(encoder.patch_projection.bias),
        rtol=1e-5,
    )
    expected = _np(encoder.s4_stack(embedded))
    tokens = _np(encoder(x, return_tokens=True))
    assert tokens.shape == (2, 10, 8) and encoder.num_tokens(40) == 10
    np.testing.assert_allclose(tokens, expected, rtol=1e-5, atol=1e-5)
    # Post-norm blocks: every token is layer-normed (gamma 1, beta 0).
    np.testing.assert_allclose(tokens.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(tokens.std(-1), 1.0, rtol=1e-3)
    # Downstream: the time average.
    np.testing.assert_allclose(_np(encoder(x)), expected.mean(1), rtol=1e-5, atol=1e-5)


def test_context_sees_no_masked_or_padded_position():
    encoder = _encoder()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 40, 3)).astype("float32")  # 10 tokens
    # Row 0 keeps tokens 1, 4, 5, 8 (slot 4 is padding pointing at token 0);
    # row 1 keeps 0, 2, 3, 7, 9.
    indices = np.array([[1, 4, 5, 8, 0], [0, 2, 3, 7, 9]], "int32")
    valid = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)

    def context(signal, idx=indices, ok=valid):
        return _np(
            encoder(signal, token_indices=idx, token_valid=ok, return_tokens=True)
        )

    out = context(x)
    assert out.shape == (2, 5, 8)
    # The reference: every position outside the valid context is the mask
    # token before the first block, then the outputs at the indices.
    embedded = _numpy_tokens(encoder, x)
    mask_token = _np(encoder.mask_token)
    for b in range(2):
        hidden = np.setdiff1d(np.arange(10), indices[b][valid[b]])
        embedded[b, hidden] = mask_token
    full = _np(encoder.s4_stack(embedded))
    expected = np.take_along_axis(full, indices[..., None], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    # Perturbing every sample outside the valid context (token 0, row 0's
    # padding slot; tokens 2-3, 6-7, 9 of row 0; tokens 1, 4-6, 8 of row 1)
    # changes nothing in the valid context outputs.
    other = x.copy()
    for b in range(2):
        for token in np.setdiff1d(np.arange(10), indices[b][valid[b]]):
            other[b, 4 * token : 4 * token + 4] += rng.normal(scale=5.0, size=(4, 3))
    np.testing.assert_allclose(context(other)[valid], out[valid], rtol=0, atol=1e-6)
    # A visible token does reach the others, on both sides (bidirectional).
    moved = x.copy()
    moved[0, 20:24] += 1.0  # token 5, in row 0's context
    changed = np.abs(context(moved)[0] - out[0]).max(-1)
    assert changed[0] > 1e-3 and changed[3] > 1e-3  # tokens 1 and 8

    # A padding slot is ignored: the valid outputs equal those of the
    # unpadded index list.
    unpadded = context(x[:1], indices[:1, :4], valid[:1, :4])
    np.testing.assert_allclose(unpadded[0], out[0, :4], rtol=1e-6, atol=1e-6)


def test_a_causal_stack_sees_only_the_past():
    encoder = _encoder(bidirectional=False)
    x = np.random.default_rng(3).normal(size=(1, 40, 3)).astype("float32")
    tokens = _np(encoder(x, return_tokens=True))
    later = x.copy()
    later[0, 24:] += 3.0  # tokens 6..9
    moved = np.abs(_np(encoder(later, return_tokens=True)) - tokens).max(-1)[0]
    np.testing.assert_allclose(moved[:6], 0.0, atol=1e-6)
    assert moved[6:].min() > 1e-3


def test_errors_are_clear():
    encoder = _encoder()
    with pytest.raises(ValueError, match="not a multiple of"):
        encoder.num_tokens(42)
    with pytest.raises(ValueError, match="not a multiple of"):
        encoder(np.zeros((1, 42, 3), "float32"))
    with pytest.raises(ValueError, match="return_tokens=True"):
        encoder(np.zeros((1, 8, 3), "float32"), token_indices=np.zeros((1, 1), "int32"))
    with pytest.raises(ValueError, match="pooling"):
        S4TokenEncoder(pooling="register")


def test_round_trips(tmp_path):
    encoder = _encoder(pooling="concat", prenorm=True, name="s4_tokens")
    restored = assert_config_round_trip(encoder)
    assert restored.pooling == "concat" and restored.prenorm
    assert restored.hidden_dim == 8 and restored.output_dim == 16
    x = np.random.default_rng(4).normal(size=(2, 40, 3)).astype("float32")
    loaded = assert_saved_model_round_trip(encoder, x, tmp_path, atol=1e-5)
    np.testing.assert_allclose(
        _np(loaded(x, return_tokens=True)),
        _np(encoder(x, return_tokens=True)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(_np(loaded.mask_token), _np(encoder.mask_token))
