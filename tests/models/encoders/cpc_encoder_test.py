"""Tests of the CPC encoder and context network."""

import keras
import numpy as np
import pytest

from keras_ecg.models.encoders import CPCContext
from keras_ecg.models.encoders import CPCEncoder
from keras_ecg.models.encoders import cpc_fc_encoder
from keras_ecg.models.encoders import cpc_strided_encoder
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_fc_encoder_matches_numpy_mlp():
    x = np.random.default_rng(0).normal(size=(2, 7, 12)).astype("float32")
    encoder = cpc_fc_encoder(filters=(6, 4), use_batch_norm=False)
    y = _np(encoder(x))
    assert y.shape == (2, 7, 4)
    expected = x
    for conv in encoder.conv_layers:
        kernel, bias = (_np(w) for w in conv.weights)
        expected = np.maximum(expected @ kernel[0] + bias, 0.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_fc_encoder_with_batch_norm_inference_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 5, 12)).astype("float32")
    encoder = CPCEncoder(filters=(3,))
    y = _np(encoder(x, training=False))
    kernel = _np(encoder.conv_layers[0].kernel)
    # Fresh moving statistics: mean 0, variance 1.
    epsilon = encoder.norm_layers[0].epsilon
    expected = np.maximum((x @ kernel[0]) / np.sqrt(1.0 + epsilon), 0.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_strided_encoder_downsamples_by_16():
    encoder = cpc_strided_encoder(filters=(4, 4, 4, 5))
    assert encoder.downsampling_factor == 16
    assert encoder.kernel_sizes == (10, 4, 4, 4)
    y = encoder(np.zeros((2, 160, 12), "float32"))
    assert tuple(y.shape) == (2, 10, 5)
    assert encoder.compute_output_shape((2, 1008, 12)) == (2, 63, 5)
    # "same" padding rounds up: 1000 -> 500 -> 250 -> 125 -> 63.
    assert encoder.compute_output_shape((2, 1000, 12)) == (2, 63, 5)


def test_default_encoder_is_the_paper_fc_encoder():
    encoder = CPCEncoder()
    assert encoder.filters == (512,) * 4
    assert encoder.kernel_sizes == (1,) * 4 and encoder.strides == (1,) * 4
    assert encoder.output_dim == 512 and encoder.downsampling_factor == 1


def test_encoder_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        CPCEncoder(filters=(4, 4), kernel_sizes=(1, 1, 1), strides=1)


def _numpy_lstm(x, kernel, recurrent, bias):
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    out = []
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def test_context_matches_numpy_stacked_lstm_and_is_causal():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 5)).astype("float32")
    context = CPCContext(units=4, num_layers=2)
    y = _np(context(x))
    assert y.shape == (2, 9, 4)
    expected = x.astype("float64")
    for lstm in context.lstm_layers:
        kernel, recurrent, bias = (_np(w) for w in lstm.weights)
        expected = _numpy_lstm(expected, kernel, recurrent, bias)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    # Changing the future does not change the past.
    x2 = x.copy()
    x2[:, 6:] += 1.0
    y2 = _np(context(x2))
    np.testing.assert_allclose(y2[:, :6], y[:, :6], atol=1e-6)
    assert not np.allclose(y2[:, 6:], y[:, 6:])


def test_config_and_saved_model_round_trips(tmp_path):
    encoder = cpc_strided_encoder(filters=(4, 4, 4, 4), name="enc")
    context = CPCContext(units=3, num_layers=2, name="ctx")
    assert_config_round_trip(encoder)
    assert_config_round_trip(context)
    model = keras.Sequential([keras.Input((64, 12)), encoder, context])
    x = np.random.default_rng(3).normal(size=(2, 64, 12)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path)
