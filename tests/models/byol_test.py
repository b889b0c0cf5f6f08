import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.models.byol import BYOL
from keras_ecg.models.byol import _steps_per_epoch
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _numpy_byol(p_1, p_2, z_1, z_2):
    def regression(p, z):
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        return np.mean(2.0 - 2.0 * (p * z).sum(1))

    return regression(p_1, z_2) + regression(p_2, z_1)


def _numpy_tau(k, total, tau0):
    return 1.0 - (1.0 - tau0) * (math.cos(math.pi * min(k / total, 1.0)) + 1.0) / 2.0


def _encoder():
    return keras.Sequential(
        [
            keras.layers.Conv1D(8, 7, strides=2),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )


def _model(**kwargs):
    from keras_ecg.layers.projection_head import ProjectionHead

    return BYOL(
        _encoder(),
        projection_head=ProjectionHead((16,), output_dim=8),
        prediction_head=ProjectionHead((16,), output_dim=8),
        **kwargs,
    )


def _views(signals, batch_size=8, length=250):
    x = signals[:batch_size]
    return x[:, :length], x[:, length : 2 * length]


def _weights(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def _dataset(views, repeats=1):
    return tf.data.Dataset.from_tensors((views,)).repeat(repeats)


def test_target_is_a_frozen_copy_and_loss_matches_numpy(ptbxl_signals):
    model = _model(tau=0.99)
    views = _views(ptbxl_signals)
    model.build([v.shape for v in views])
    # Built eagerly: the target starts as an exact copy of the online network.
    assert int(keras.ops.convert_to_numpy(model.target_synced)) == 1
    for o, t in zip(_weights(model.online_weights), _weights(model.target_weights)):
        np.testing.assert_array_equal(o, t)
    trainable = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in trainable for v in model.target_weights)
    online_trainable = [v for v in model.online_weights if v.trainable]
    assert all(id(v) in trainable for v in online_trainable)
    assert len(model.trainable_variables) == len(online_trainable) + len(
        model.prediction_head.trainable_weights
    )
    assert model.backbone is model.encoder

    outputs = model.predict_on_batch(views)
    target = [
        keras.ops.convert_to_numpy(
            model.target_projection_head(model.target_encoder(v, training=False))
        )
        for v in views
    ]
    loss = model.compute_loss(x=views, y_pred=outputs, training=False)
    p_1, p_2 = outputs["predictions"]
    np.testing.assert_allclose(
        float(loss), _numpy_byol(p_1, p_2, *target), rtol=1e-5, atol=1e-6
    )
    # Evaluation does not move the target.
    assert int(keras.ops.convert_to_numpy(model.ema_step)) == 0


def test_tau_schedule_matches_numpy():
    model = _model(tau=0.9, total_steps=100)
    model.build((None, 250, 12))
    for k in (0, 25, 50, 100, 150):
        np.testing.assert_allclose(
            float(model.tau_at(k)), _numpy_tau(k, 100, 0.9), rtol=1e-6
        )
    assert float(model.tau_at(0)) == pytest.approx(0.9)
    assert float(model.tau_at(50)) == pytest.approx(0.95)
    assert float(model.tau_at(100)) == pytest.approx(1.0)
    # Unknown K: tau stays at tau0.
    model.total_steps_variable.assign(0.0)
    assert float(model.tau_at(70)) == pytest.approx(0.9)


def test_ema_step_moves_the_target_exactly(ptbxl_signals):
    views = _views(ptbxl_signals)
    model = _model(tau=0.9, total_steps=6)
    model.build([v.shape for v in views])
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    dataset = _dataset(views)
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    # Step k = 1: the EMA uses tau_1 and the online weights *before* this
    # step's optimizer update (the ones that produced its loss).
    online_before = _weights(model.online_weights)
    target_before = _weights(model.target_weights)
    tau = _numpy_tau(1, 6, 0.9)
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.ema_step)) == 2
    online_after = _weights(model.online_weights)
    target_after = _weights(model.target_weights)
    for variable, o, t, new_t in zip(
        model.online_weights, online_before, target_before, target_after
    ):
        if variable.trainable:
            np.testing.assert_allclose(new_t, tau * t + (1 - tau) * o, atol=1e-5)
    # The online kernels moved, so pre- and post-update EMAs differ: the
    # check above can tell them apart.
    assert np.abs(online_after[0] - online_before[0]).max() > 1e-3
    assert np.abs(target_after[0] - online_after[0]).max() > 1e-4


def test_fit_on_ptbxl_decreases_the_loss_and_infers_total_steps(ptbxl_signals):
    steps_per_execution = 1 if keras.backend.backend() == "torch" else 2
    model = _model(tau=0.99)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), steps_per_execution=steps_per_execution
    )
    history = model.fit(
        _dataset(_views(ptbxl_signals, 16), repeats=2),
        epochs=5,
        shuffle=False,
        verbose=0,
    ).history
    # K = epochs x dataset cardinality; one EMA per optimizer step.
    assert float(keras.ops.convert_to_numpy(model.total_steps_variable)) == 10.0
    assert int(keras.ops.convert_to_numpy(model.ema_step)) == 10
    losses = history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0] - 0.05, losses
    assert set(history) == {"loss", "tau"}
    # Logged tau is the epoch mean of the cosine schedule.
    expected_tau = np.mean([_numpy_tau(k, 10, 0.99) for k in (8, 9)])
    np.testing.assert_allclose(history["tau"][-1], expected_tau, rtol=1e-5)
    online, target = _weights(model.online_weights), _weights(model.target_weights)
    assert any(np.abs(o - t).max() > 1e-4 for o, t in zip(online, target))


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_fit_under_mixed_precision_with_unknown_length(ptbxl_signals):
    # A filtered dataset has unknown cardinality: K cannot be inferred, so
    # fit warns and tau stays at tau0.
    unknown = _dataset(_views(ptbxl_signals), repeats=2).filter(lambda *a: True)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model(tau=0.9)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        with pytest.warns(UserWarning, match="cannot infer the number of training"):
            history = model.fit(unknown, epochs=1, shuffle=False, verbose=0).history
        assert model.encoder.layers[0].compute_dtype == "bfloat16"
        assert np.all(np.isfinite(history["loss"]))
        np.testing.assert_allclose(history["tau"], [0.9], rtol=1e-6)
        # The target keeps float32 variables (the EMA is done in float32).
        assert all(
            keras.backend.standardize_dtype(v.dtype) == "float32"
            for v in model.target_weights
        )
    finally:
        keras.config.set_dtype_policy("float32")


def test_symbolic_build_sync_and_saved_model_round_trip(ptbxl_signals, tmp_path):
    views = _views(ptbxl_signals)
    # total_steps is given, so Keras builds the model symbolically inside fit
    # and the target copy happens in-graph at the first step.
    model = _model(tau=0.98, total_steps=7, name="byol_test")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(_dataset(views, repeats=2), epochs=1, shuffle=False, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.target_synced)) == 1
    assert int(keras.ops.convert_to_numpy(model.ema_step)) == 2
    # With a zero learning rate the online network does not move, so the
    # target (copy, then EMAs towards the same weights) equals it.
    for o, t in zip(_weights(model.online_weights), _weights(model.target_weights)):
        if o.ndim > 1:
            np.testing.assert_allclose(t, o, atol=1e-6)

    restored = assert_config_round_trip(model)
    assert restored.tau == 0.98 and restored.total_steps == 7
    # Make the target differ from the online network, then check the
    # `.keras` file restores it (the round trip compares every weight).
    rng = np.random.default_rng(0)
    for t in model.target_weights:
        t.assign(rng.normal(size=t.shape).astype("float32"))
    loaded = assert_saved_model_round_trip(model, views, tmp_path)
    for a, b in zip(_weights(loaded.target_weights), _weights(model.target_weights)):
        np.testing.assert_array_equal(a, b)
    assert int(keras.ops.convert_to_numpy(loaded.ema_step)) == 2
    assert float(keras.ops.convert_to_numpy(loaded.total_steps_variable)) == 7.0
    assert not any(v.trainable for v in loaded.target_weights)


def test_steps_per_epoch_inference():
    x = np.zeros((10, 50, 12), "float32")
    assert _steps_per_epoch(x, 4, None, 0.0) == 3
    assert _steps_per_epoch((x, x), 5, None, 0.0) == 2
    assert _steps_per_epoch(x, 4, 7, 0.0) == 7
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    assert _steps_per_epoch(dataset, None, None, 0.0) == 3
    assert _steps_per_epoch(dataset.repeat(), None, None, 0.0) is None
    unknown = dataset.filter(lambda v: True)
    assert _steps_per_epoch(unknown, None, None, 0.0) is None


def test_invalid_arguments_and_views_raise(ptbxl_signals):
    with pytest.raises(ValueError, match="tau"):
        BYOL(_encoder(), tau=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        BYOL(_encoder(), total_steps=0)
    model = _model()
    x = ptbxl_signals[:4, :250]
    outputs = model.predict_on_batch(x)
    assert outputs["embeddings"].shape == (4, 8)
    with pytest.raises(ValueError, match="exactly two views"):
        model.compute_loss(x=x, y_pred=outputs)
