import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.models.simclr import SimCLR
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _numpy_nt_xent(z_a, z_b, temperature):
    z = np.concatenate([z_a, z_b]).astype("float64")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)
    n = len(z_a)
    positives = np.concatenate([np.arange(n) + n, np.arange(n)])
    log_norm = np.log(np.exp(logits).sum(1))
    loss = np.mean(log_norm - logits[np.arange(2 * n), positives])
    return loss, np.mean(logits.argmax(1) == positives)


def _encoder(filters=8):
    return keras.Sequential(
        [
            keras.layers.Conv1D(filters, 7, strides=2),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )


def _model(**kwargs):
    from keras_ecg.layers.projection_head import ProjectionHead

    return SimCLR(
        _encoder(), projection_head=ProjectionHead((16,), output_dim=8), **kwargs
    )


def _views(signals, batch_size=8, length=250):
    """Two deterministic views of each record: adjacent 2.5 s windows."""
    x = signals[:batch_size]
    return x[:, :length], x[:, length : 2 * length]


def _numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def _forward(model, x):
    """`model(x, training=False)` as numpy, compiled (eager JAX is very slow)."""
    return model.predict_on_batch(x)


def test_loss_matches_numpy_on_model_projections(ptbxl_signals):
    batch_size = 8
    model = _model(temperature=0.3)
    views = _views(ptbxl_signals, batch_size)
    outputs = _forward(model, views)
    assert len(outputs["projections"]) == 2
    assert outputs["embeddings"][0].shape == (batch_size, 8)
    loss = model.compute_loss(x=views, y_pred=outputs, training=False)
    z_a, z_b = _numpy(outputs["projections"])
    expected_loss, expected_accuracy = _numpy_nt_xent(z_a, z_b, 0.3)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(model.accuracy_tracker.result()), expected_accuracy, atol=1e-6
    )


def test_single_tensor_is_one_view_and_cannot_be_trained(ptbxl_signals):
    model = _model()
    x = ptbxl_signals[:8, :250]
    outputs = _forward(model, x)
    np.testing.assert_allclose(
        outputs["embeddings"], model.backbone.predict_on_batch(x), atol=1e-6
    )
    assert model.backbone is model.encoder
    with pytest.raises(ValueError, match="at least two views"):
        model.compute_loss(x=x, y_pred=outputs)


def test_augmenter_makes_distinct_views(ptbxl_signals):
    model = _model(augmenter=keras.layers.GaussianNoise(0.1, seed=3), num_views=3)
    x = ptbxl_signals[:8, :250]
    outputs = _forward(model, x)
    assert len(outputs["embeddings"]) == 3
    e = _numpy(outputs["embeddings"])
    assert not np.allclose(e[0], e[1])
    loss = model.compute_loss(x=x, y_pred=outputs)
    z = _numpy(outputs["projections"])
    expected = np.mean(
        [_numpy_nt_xent(z[i], z[j], 0.5)[0] for i, j in [(0, 1), (0, 2), (1, 2)]]
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    restored = assert_config_round_trip(model)
    assert isinstance(restored.augmenter, keras.layers.GaussianNoise)
    assert restored.num_views == 3


def test_config_and_saved_model_round_trip(ptbxl_signals, tmp_path):
    model = _model(temperature=0.2, name="simclr_test")
    views = _views(ptbxl_signals, 8)
    model(views)
    restored = assert_config_round_trip(model)
    assert restored.temperature == 0.2 and restored.name == "simclr_test"
    assert_saved_model_round_trip(model, views, tmp_path)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(_encoder(), temperature=0.0)
    with pytest.raises(ValueError, match="num_views"):
        SimCLR(_encoder(), num_views=1)


def _fit(model, views, epochs, repeats=1, **compile_kwargs):
    # One fixed batch repeated: the loss must go down.
    dataset = tf.data.Dataset.from_tensors((views,)).repeat(repeats)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), **compile_kwargs)
    return model.fit(dataset, epochs=epochs, shuffle=False, verbose=0).history


def test_fit_on_ptbxl_decreases_the_loss(ptbxl_signals):
    # Also runs two steps per execution where the backend supports it (Keras'
    # torch trainer only supports steps_per_execution=1).
    steps_per_execution = 1 if keras.backend.backend() == "torch" else 2
    model = _model()
    history = _fit(
        model,
        _views(ptbxl_signals, 16),
        epochs=5,
        repeats=2,
        steps_per_execution=steps_per_execution,
    )
    assert int(model.optimizer.iterations.numpy()) == 10
    losses = history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0] - 0.05, losses
    assert set(history) == {"loss", "contrastive_accuracy"}
    # The trained encoder is not a trivial (constant) map.
    features = _numpy(model.backbone(ptbxl_signals[:8, :250]))
    assert features.std(axis=0).max() > 1e-3


def test_fit_under_mixed_precision(ptbxl_signals):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model()
        views = _views(ptbxl_signals, 8)
        history = _fit(model, views, epochs=2)
        assert model.encoder.layers[0].compute_dtype == "bfloat16"
        assert np.all(np.isfinite(history["loss"]))
        outputs = _forward(model, views)
        loss = model.compute_loss(x=views, y_pred=outputs, training=False)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def test_with_tiny_xresnet1d(ptbxl_signals):
    from keras_ecg.layers.projection_head import ProjectionHead
    from keras_ecg.models.encoders.xresnet1d import XResNet1D

    encoder = XResNet1D(
        block_depths=(1, 1), widths=(8, 8), expansion=1, stem_filters=(8, 8, 8)
    )
    model = SimCLR(encoder, ProjectionHead((16,), 8), temperature=0.5)
    views = _views(ptbxl_signals, 8)
    outputs = _forward(model, views)
    assert outputs["embeddings"][0].shape == (8, 16)
    loss = model.compute_loss(x=views, y_pred=outputs, training=False)
    expected, _ = _numpy_nt_xent(*_numpy(outputs["projections"]), 0.5)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    restored = assert_config_round_trip(model)
    assert isinstance(restored.encoder, XResNet1D)


def test_default_head_is_the_reference_and_paper_factory_head():
    from keras_ecg.models.method_factory import projection_heads

    model = SimCLR(_encoder())
    head = model.projection_head
    expected = projection_heads("simclr", "paper")
    assert head.hidden_dims == expected["hidden_dims"] == (512,)
    assert head.output_dim == expected["output_dim"] == 16
    assert head.use_batch_norm is expected["use_batch_norm"] is False
