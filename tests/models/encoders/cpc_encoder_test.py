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


@pytest.mark.parametrize(
    "kernel_size, stride", [(4, 2), (10, 2), (3, 2), (5, 3), (2, 3), (4, 1)]
)
def test_strided_encoder_pads_like_a_same_convolution(kernel_size, stride):
    rng = np.random.default_rng(4)
    for length in (1, 2, 5, 125, 126):
        encoder = CPCEncoder(
            filters=(5,), kernel_sizes=kernel_size, strides=stride, use_batch_norm=False
        )
        x = rng.normal(size=(2, length, 3)).astype("float32")
        y = _np(encoder(x))
        same = keras.layers.Conv1D(5, kernel_size, strides=stride, padding="same")
        same.build(x.shape)
        same.set_weights(encoder.conv_layers[0].get_weights())
        expected = np.maximum(_np(same(x)), 0.0)
        assert y.shape == expected.shape == encoder.compute_output_shape(x.shape)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow graphs only"
)
def test_strided_encoder_accepts_an_unknown_length_in_a_graph():
    import tensorflow as tf

    encoder = CPCEncoder(filters=(5, 6), kernel_sizes=(3, 4), strides=2)
    call = tf.function(
        lambda x: encoder(x), input_signature=[tf.TensorSpec((None, None, 3))]
    )
    for length in (7, 8, 125):
        x = np.random.default_rng(length).normal(size=(2, length, 3)).astype("float32")
        np.testing.assert_allclose(call(x), encoder(x), atol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a race in TensorFlow's oneDNN CPU convolution kernel",
)
def test_strided_encoder_input_gradient_repeats_exactly():
    # 125 -> 63 steps, kernel 4, stride 2: "same" pads 1 left and 2 right.
    # Handed to TensorFlow as an asymmetrically padded convolution, its input
    # gradient came out different (wrong) in some of the repeated calls, for
    # some batch sizes, in about 5 processes out of 6.
    import tensorflow as tf

    rng = np.random.default_rng(5)
    encoder = CPCEncoder(filters=(64,), kernel_sizes=4, strides=2, use_batch_norm=False)
    x = rng.normal(size=(34, 125, 64)).astype("float32")
    cotangent = rng.normal(size=(34, 63, 64)).astype("float32")

    @tf.function(
        input_signature=[tf.TensorSpec((None, 125, 64)), tf.TensorSpec((None, 63, 64))]
    )
    def input_gradient(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(encoder(x) * cotangent)
        return tape.gradient(loss, x)

    for batch_size in range(4, 35, 2):
        args = (x[:batch_size], cotangent[:batch_size])
        first = input_gradient(*args).numpy()
        for _ in range(40):
            np.testing.assert_array_equal(input_gradient(*args).numpy(), first)


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


def test_batch_norm_uses_the_reference_momentum_and_epsilon():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    encoder = cpc_fc_encoder(filters=(3,))
    bn = encoder.norm_layers[0]
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
    encoder(x, training=True)
    (kernel,) = encoder.conv_layers[0].get_weights()
    h = x.reshape(-1, 2).astype("float64") @ kernel[0]
    # One training step moves the statistics 10% of the way (torch's 0.1).
    np.testing.assert_allclose(_np(bn.moving_mean), 0.1 * h.mean(0), atol=1e-6)
    np.testing.assert_allclose(_np(bn.moving_variance), 0.9 + 0.1 * h.var(0), rtol=1e-5)
    # Inference with epsilon 1e-5 (gamma 1, beta 0).
    mean, var = _np(bn.moving_mean), _np(bn.moving_variance)
    expected = np.maximum((h - mean) / np.sqrt(var + 1e-5), 0).reshape(3, 5, 3)
    np.testing.assert_allclose(_np(encoder(x)), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_settings_round_trip_and_old_configs_keep_keras_defaults():
    encoder = cpc_fc_encoder(
        filters=(3,), batch_norm_momentum=0.8, batch_norm_epsilon=1e-4
    )
    rebuilt = assert_config_round_trip(encoder)
    assert (rebuilt.norm_layers[0].momentum, rebuilt.norm_layers[0].epsilon) == (
        0.8,
        1e-4,
    )
    # Encoders saved before these options existed used Keras' defaults.
    config = cpc_fc_encoder(filters=(3,)).get_config()
    del config["batch_norm_momentum"], config["batch_norm_epsilon"]
    old = CPCEncoder.from_config(config)
    assert (old.norm_layers[0].momentum, old.norm_layers[0].epsilon) == (0.99, 1e-3)


def _value_and_grads(run, x, variables, cotangent):
    """`[run(x), d/dx, d/dvariables]` of `sum(run(x) * cotangent)`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(values, inputs):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                outputs = run(inputs)
            return (outputs * cotangent).sum(), outputs

        (_, outputs), (grad_values, grad_x) = jax.value_and_grad(
            loss, argnums=(0, 1), has_aux=True
        )([v.value for v in variables], x)
        grads = [grad_x] + list(grad_values)
    elif backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = run(inputs)
            loss = tf.reduce_sum(outputs * cotangent)
        grads = tape.gradient(loss, [inputs] + list(variables))
    else:
        import torch

        inputs = torch.tensor(x, requires_grad=True)
        outputs = run(inputs)
        loss = (outputs * torch.tensor(cotangent)).sum()
        grads = torch.autograd.grad(loss, [inputs] + [v.value for v in variables])
    return [_np(outputs)] + [_np(g) for g in grads]


def _random_context(rng, units=4, num_layers=2, input_dim=5):
    context = CPCContext(units=units, num_layers=num_layers)
    context.build((None, None, input_dim))
    # Weights large enough that no gate saturates or idles.
    for w in context.weights:
        w.assign(rng.uniform(-0.6, 0.6, tuple(w.shape)).astype("float32"))
    return context


def _keras_lstm_path(context):
    def run(inputs):
        # Calling the LSTM layers themselves: Keras' generic LSTM.
        for lstm in context.lstm_layers:
            inputs = lstm(inputs)
        return inputs

    return run


def test_fast_context_matches_keras_lstms_with_gradients():
    # torch: the fused torch._VF.lstm call; JAX and TensorFlow: the hoisted
    # input projection and hand-written backward scan.
    from keras_ecg.models.encoders.cpc_encoder import _is_plain_lstm_stack

    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 11, 5)).astype("float32")
    cotangent = rng.normal(size=(3, 11, 4)).astype("float32")
    context = _random_context(rng)
    assert _is_plain_lstm_stack(
        context.lstm_layers, keras.ops.convert_to_tensor(x), True
    )
    variables = context.trainable_weights
    fast = _value_and_grads(context, x, variables, cotangent)
    reference = _value_and_grads(_keras_lstm_path(context), x, variables, cotangent)
    assert len(fast) == 2 + 3 * 2
    for got, expected in zip(fast, reference):
        assert np.abs(got).max() > 1e-3
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Against the float64 NumPy LSTM too.
    expected = x.astype("float64")
    for lstm in context.lstm_layers:
        expected = _numpy_lstm(expected, *(_np(w) for w in lstm.weights))
    np.testing.assert_allclose(fast[0], expected, rtol=1e-4, atol=1e-5)


def test_fast_context_inside_a_compiled_function_matches_keras_lstms():
    # What fit() runs: a jitted JAX function / a TensorFlow graph.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 13, 5)).astype("float32")
    context = _random_context(rng, units=3, num_layers=1)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(lambda inputs: context(inputs))
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda inputs: context(inputs))
    else:
        compiled = context
    np.testing.assert_allclose(
        _np(compiled(x)), _np(_keras_lstm_path(context)(x)), rtol=1e-5, atol=1e-6
    )


def test_layers_the_fast_paths_cannot_express_take_the_keras_path():
    from keras_ecg.models.encoders.cpc_encoder import _is_plain_lstm_stack

    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    context = _random_context(rng)
    inputs = keras.ops.convert_to_tensor(x)
    assert _is_plain_lstm_stack(context.lstm_layers, inputs, True)
    assert not _is_plain_lstm_stack(
        context.lstm_layers, keras.ops.cast(inputs, "float16"), False
    )
    # Dropout: only in training is it something the fast paths lack.
    context.lstm_layers[0].cell.dropout = 0.5
    assert not _is_plain_lstm_stack(context.lstm_layers, inputs, True)
    assert _is_plain_lstm_stack(context.lstm_layers, inputs, False)
    context.lstm_layers[0].cell.dropout = 0.0
    context.lstm_layers[1].cell.activation = keras.activations.relu
    assert not _is_plain_lstm_stack(context.lstm_layers, inputs, False)
    # Which then computes the relu LSTM, not the tanh one.
    np.testing.assert_allclose(
        _np(context(x)), _np(_keras_lstm_path(context)(x)), rtol=1e-5, atol=1e-6
    )


_CROSS_BACKEND_LOADER = r"""
import sys
import numpy as np
import keras
import keras_ecg  # registers the serializable classes

path, inputs_path, out = sys.argv[1:]
model = keras.saving.load_model(path)
np.save(out, keras.ops.convert_to_numpy(model(np.load(inputs_path))))
"""


def test_context_saved_here_loads_and_matches_under_the_next_backend(tmp_path):
    # Each backend's pass checks one direction: tf -> jax -> torch -> tf.
    import subprocess
    import sys

    from keras_ecg.testing.test_case import subprocess_env

    rng = np.random.default_rng(9)
    context = _random_context(rng, units=6, num_layers=2, input_dim=4)
    model = keras.Sequential([keras.Input((None, 4)), context])
    x = rng.normal(size=(2, 15, 4)).astype("float32")
    path, inputs_path = str(tmp_path / "context.keras"), str(tmp_path / "x.npy")
    out = str(tmp_path / "loaded.npy")
    model.save(path)
    np.save(inputs_path, x)
    backends = ("tensorflow", "jax", "torch")
    here = keras.backend.backend()
    other = backends[(backends.index(here) + 1) % 3]
    process = subprocess.run(
        [sys.executable, "-c", _CROSS_BACKEND_LOADER, path, inputs_path, out],
        env=subprocess_env(other),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), _np(model(x)), rtol=1e-5, atol=1e-6)
