import keras
import numpy as np
import pytest

from keras_ecg.layers import ProjectionHead
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _randomize(layer, rng):
    for w in layer.weights:
        low = 0.5 if "moving_variance" in w.path else -1.0
        w.assign(rng.uniform(low, 1.5, tuple(w.shape)).astype("float32"))


def test_forward_matches_numpy_inference():
    rng = np.random.default_rng(0)
    head = ProjectionHead(hidden_dims=(6, 5), output_dim=3)
    x = rng.normal(size=(4, 8)).astype("float32")
    head(x)
    _randomize(head, rng)
    out = keras.ops.convert_to_numpy(head(x, training=False))
    h = x.astype("float64")
    for i in range(2):
        kernel, bias = head.hidden_layers[i].get_weights()
        gamma, beta, mean, var = head.batch_norms[i].get_weights()
        h = h @ kernel + bias
        h = gamma * (h - mean) / np.sqrt(var + 1e-5) + beta
        h = np.maximum(h, 0.0)
    kernel, bias = head.output_layer.get_weights()
    np.testing.assert_allclose(out, h @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_training_mode_uses_batch_statistics():
    rng = np.random.default_rng(1)
    head = ProjectionHead(hidden_dims=(4,), output_dim=2, use_bias_last=False)
    x = rng.normal(size=(16, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(head(x, training=True))
    kernel, bias = head.hidden_layers[0].get_weights()
    h = x.astype("float64") @ kernel + bias
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # gamma 1, beta 0
    (kernel,) = head.output_layer.get_weights()
    np.testing.assert_allclose(out, np.maximum(h, 0) @ kernel, rtol=1e-4, atol=1e-4)


def test_linear_head_without_bn_or_activation():
    rng = np.random.default_rng(2)
    head = ProjectionHead(
        hidden_dims=(5,), output_dim=2, use_batch_norm=False, activation=None
    )
    x = rng.normal(size=(3, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(head(x))
    assert not head.batch_norms
    k1, b1 = head.hidden_layers[0].get_weights()
    k2, b2 = head.output_layer.get_weights()
    np.testing.assert_allclose(out, (x @ k1 + b1) @ k2 + b2, rtol=1e-5, atol=1e-5)


def test_invalid_dims():
    with pytest.raises(ValueError, match="positive"):
        ProjectionHead(hidden_dims=(0,), output_dim=4)


def test_round_trips(tmp_path):
    head = ProjectionHead(hidden_dims=(6,), output_dim=3, activation="gelu")
    assert_config_round_trip(head)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, head(inputs))
    _randomize(head, np.random.default_rng(3))
    x = np.random.default_rng(4).normal(size=(2, 8)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)


def test_hidden_layers_without_bias_as_the_reference_byol_mlp(tmp_path):
    rng = np.random.default_rng(5)
    head = ProjectionHead(hidden_dims=(6,), output_dim=3, use_bias_hidden=False)
    x = rng.normal(size=(8, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(head(x, training=True))
    (kernel,) = head.hidden_layers[0].get_weights()
    h = x.astype("float64") @ kernel
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # gamma 1, beta 0
    k2, b2 = head.output_layer.get_weights()
    np.testing.assert_allclose(out, np.maximum(h, 0) @ k2 + b2, rtol=1e-4, atol=1e-4)
    rebuilt = assert_config_round_trip(head)
    assert rebuilt.use_bias_hidden is False
    inputs = keras.Input((4,))
    model = keras.Model(inputs, head(inputs))
    assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)


def test_config_without_the_hidden_bias_key_keeps_the_bias():
    # A head saved before `use_bias_hidden` existed had biased hidden layers.
    config = ProjectionHead(hidden_dims=(6,), output_dim=3).get_config()
    del config["use_bias_hidden"]
    head = ProjectionHead.from_config(config)
    head.build((None, 4))
    assert len(head.hidden_layers[0].weights) == 2
