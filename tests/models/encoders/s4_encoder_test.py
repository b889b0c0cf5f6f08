import keras
import numpy as np
import pytest

from keras_ecg.distribute import batch_norm_is_synchronized
from keras_ecg.layers.s4 import S4
from keras_ecg.models.encoders.s4_encoder import S4Encoder
from keras_ecg.testing.test_case import assert_config_round_trip
from keras_ecg.testing.test_case import assert_saved_model_round_trip

SHAPE = (2, 32, 3)


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(size=SHAPE).astype("float32")


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _layer_norm(x, layer):
    gamma, beta = (_numpy(w) for w in layer.weights)
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


@pytest.mark.parametrize("prenorm", [False, True], ids=["postnorm", "prenorm"])
def test_residual_stack_is_the_reference_s4_model(prenorm):
    """tmehari/ssm_ecg `S4Model.forward`: Linear, then per layer
    z = S4(norm(x) if prenorm else x); x = z + x; x = norm(x) if postnorm;
    then the mean over time. Written out with NumPy around the encoder's own
    S4 layers (inference: no dropout)."""
    encoder = S4Encoder(
        d_model=8,
        num_layers=2,
        d_state=4,
        dropout=0.3,
        prenorm=prenorm,
        input_channels=3,
    )
    u = _inputs()
    kernel, bias = (_numpy(w) for w in encoder.get_layer("input_projection").weights)
    x = u @ kernel + bias
    for i in range(2):
        norm = encoder.get_layer(f"norm_{i}")
        z = _layer_norm(x, norm) if prenorm else x
        z = _numpy(encoder.get_layer(f"s4_{i}")(z.astype("float32")))
        x = z + x
        if not prenorm:
            x = _layer_norm(x, norm)
    np.testing.assert_allclose(
        _numpy(encoder(u, training=False)), x.mean(axis=1), rtol=1e-4, atol=1e-5
    )
    assert encoder.output_dim == 8
    # PyTorch's nn.Linear initialisation: uniform in +-1/sqrt(fan_in).
    assert np.abs(kernel).max() <= 1 / np.sqrt(3) and np.abs(kernel).max() > 0.3


def test_pooling_modes_and_shapes():
    u = _inputs()
    for pooling, dim in (("avg", 8), ("max", 8), ("concat", 16)):
        encoder = S4Encoder(
            d_model=8, num_layers=1, d_state=4, pooling=pooling, input_channels=3
        )
        assert tuple(encoder(u).shape) == (2, dim) and encoder.output_dim == dim
    sequence = S4Encoder(
        d_model=8, num_layers=1, d_state=4, pooling=None, input_channels=3
    )
    out = sequence(u)
    assert tuple(out.shape) == (2, 32, 8)
    # Any length.
    assert tuple(sequence(u[:, :13]).shape) == (2, 13, 8)


def test_causal_encoder_never_sees_the_future():
    encoder = S4Encoder(
        d_model=8,
        num_layers=2,
        d_state=4,
        bidirectional=False,
        pooling=None,
        input_channels=3,
    )
    u = _inputs()
    changed = u.copy()
    changed[:, 20:] += 3.0
    before, after = (_numpy(encoder(x, training=False)) for x in (u, changed))
    np.testing.assert_allclose(after[:, :20], before[:, :20], atol=1e-6, rtol=0)
    assert np.abs(after[:, 20:] - before[:, 20:]).max() > 1e-2
    bidirectional = S4Encoder(
        d_model=8, num_layers=1, d_state=4, pooling=None, input_channels=3
    )
    before, after = (_numpy(bidirectional(x, training=False)) for x in (u, changed))
    assert np.abs(after[:, :20] - before[:, :20]).max() > 1e-2


def test_batch_norm_option_and_synchronized_flag():
    encoder = S4Encoder(
        d_model=8,
        num_layers=2,
        d_state=4,
        norm="batch",
        input_channels=3,
        synchronized_batch_norm=True,
    )
    norms = [layer for layer in encoder.layers if "norm" in layer.name]
    assert len(norms) == 2
    for layer in norms:
        assert isinstance(layer, keras.layers.BatchNormalization)
        assert (layer.momentum, layer.epsilon) == (0.9, 1e-5)
        # Keras synchronises BatchNorm under TensorFlow only, keras-ecg under
        # torch (in multi-process steps; JAX's statistics are global anyway).
        assert layer.synchronized == (keras.backend.backend() == "tensorflow")
        assert batch_norm_is_synchronized(layer) == (keras.backend.backend() != "jax")
    assert np.isfinite(_numpy(encoder(_inputs(), training=True))).all()


def test_configuration_reaches_every_block():
    encoder = S4Encoder(
        d_model=8,
        num_layers=3,
        d_state=6,
        bidirectional=False,
        initialization="lin",
        dt_min=0.01,
        dt_max=0.02,
        train_ssm=False,
        dropout=0.0,
        input_channels=3,
    )
    blocks = [layer for layer in encoder.layers if isinstance(layer, S4)]
    assert len(blocks) == 3
    for block in blocks:
        config = block.get_config()
        assert config["d_state"] == 6 and config["initialization"] == "lin"
        assert (config["dt_min"], config["dt_max"]) == (0.01, 0.02)
        assert not config["bidirectional"] and not config["train_ssm"]
    # dropout=0: no dropout layers at all.
    assert not [
        layer
        for layer in encoder.layers
        if isinstance(layer, keras.layers.SpatialDropout1D)
    ]


def test_config_and_saved_model_round_trip(tmp_path):
    encoder = S4Encoder(
        d_model=8,
        num_layers=2,
        d_state=4,
        pooling="concat",
        prenorm=True,
        norm="batch",
        input_channels=3,
    )
    assert_config_round_trip(encoder)
    assert_saved_model_round_trip(encoder, _inputs(seed=1), tmp_path)
    mixed = S4Encoder(
        d_model=8, num_layers=1, d_state=4, input_channels=3, dtype="mixed_bfloat16"
    )
    rebuilt = assert_config_round_trip(mixed)
    s4 = [layer for layer in rebuilt.layers if isinstance(layer, S4)][0]
    assert s4.dtype_policy.name == "mixed_bfloat16"
    out = mixed(_inputs())
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert np.isfinite(_numpy(out)).all()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown norm"):
        S4Encoder(norm="group")
    with pytest.raises(ValueError, match="unknown pooling"):
        S4Encoder(pooling="last")
    with pytest.raises(ValueError, match="must be positive"):
        S4Encoder(num_layers=0)
