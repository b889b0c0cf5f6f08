"""Tests of the SwAV model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.layers import ProjectionHead
from keras_ecg.models import ECGClassifier
from keras_ecg.models import SwAV
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _tiny_swav(**kwargs):
    encoder = keras.Sequential(
        [
            keras.layers.Conv1D(8, 7, strides=4, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )
    head = ProjectionHead(hidden_dims=(8,), output_dim=6, use_batch_norm=False)
    kwargs.setdefault("num_prototypes", 5)
    return SwAV(encoder, head, **kwargs)


def _numpy_sinkhorn(scores, epsilon=0.05, iterations=3):
    q = np.exp(scores.astype("float64") / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


def _numpy_swav(scores, crops_for_assign=(0, 1), temperature=0.1, queue=None):
    total = 0.0
    for i, crop_id in enumerate(crops_for_assign):
        if queue is None:
            q = _numpy_sinkhorn(scores[crop_id])
        else:
            q = _numpy_sinkhorn(np.concatenate([queue[i], scores[crop_id]]))
            q = q[len(queue[i]) :]
        sub = 0.0
        for v, s in enumerate(scores):
            if v != crop_id:
                x = s.astype("float64") / temperature
                x = x - x.max(1, keepdims=True)
                log_p = x - np.log(np.exp(x).sum(1, keepdims=True))
                sub -= np.mean(np.sum(q * log_p, axis=1))
        total += sub / (len(scores) - 1)
    return total / len(crops_for_assign)


def _views(rng, batch=4):
    # Multi-crop: 2 global views of 64 steps, 2 small crops of 32 steps.
    return tuple(
        rng.normal(size=(batch, length, 12)).astype("float32")
        for length in (64, 64, 32, 32)
    )


def _normalized_prototypes(model):
    w = _np(model.prototypes.prototypes)
    return (w / np.linalg.norm(w, axis=0, keepdims=True)).T


def test_multi_crop_call_and_loss_match_numpy():
    views = _views(np.random.default_rng(0))
    model = _tiny_swav(crops_for_assign=(0, 1), temperature=0.2)
    y_pred = model(views)
    embeddings = [_np(z) for z in y_pred["embeddings"]]
    scores = [_np(s) for s in y_pred["scores"]]
    assert len(embeddings) == len(scores) == 4
    prototypes = _normalized_prototypes(model)
    for view, z, s in zip(views, embeddings, scores):
        h = _np(model.projection_head(model.encoder(view)))
        expected = h / np.linalg.norm(h, axis=1, keepdims=True)
        np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s, z @ prototypes.T, rtol=1e-5, atol=1e-6)
    loss = _np(model.compute_loss(x=views, y_pred=y_pred, training=False))
    expected = _numpy_swav(scores, (0, 1), temperature=0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert model.backbone is model.encoder


def test_queue_fills_and_is_used_from_queue_start_step():
    rng = np.random.default_rng(1)
    model = _tiny_swav(queue_length=6, queue_start_step=2)
    batch_1, batch_2 = _views(rng)[:2], _views(rng)[:2]
    y1 = model(batch_1)
    assert tuple(model.queue.shape) == (2, 6, 6)
    model.compute_loss(x=batch_1, y_pred=y1, training=True)
    queue = _np(model.queue)
    for i in range(2):
        np.testing.assert_allclose(queue[i, :4], _np(y1["embeddings"][i]), atol=1e-7)
    np.testing.assert_array_equal(queue[:, 4:], 0.0)
    y2 = model(batch_2)
    scores_2 = [_np(s) for s in y2["scores"]]
    # Step 1 < queue_start_step: the queue is not used in Sinkhorn.
    loss = model.compute_loss(x=batch_2, y_pred=y2, training=True)
    np.testing.assert_allclose(_np(loss), _numpy_swav(scores_2), rtol=1e-5)
    queue = _np(model.queue)
    for i in range(2):
        # Newest first, oldest dropped once full.
        np.testing.assert_allclose(queue[i, :4], _np(y2["embeddings"][i]), atol=1e-7)
        np.testing.assert_allclose(
            queue[i, 4:], _np(y1["embeddings"][i])[:2], atol=1e-7
        )
    assert int(_np(model.train_step_counter)) == 2
    # Step 2 >= queue_start_step: the queue's scores join the Sinkhorn batch.
    loss = model.compute_loss(x=batch_2, y_pred=y2, training=False)
    prototypes = _normalized_prototypes(model)
    expected = _numpy_swav(
        scores_2, queue=[queue[0] @ prototypes.T, queue[1] @ prototypes.T]
    )
    np.testing.assert_allclose(_np(loss), expected, rtol=1e-5)
    assert not np.isclose(expected, _numpy_swav(scores_2))
    # Evaluation does not touch the queue or the step counter.
    np.testing.assert_array_equal(_np(model.queue), queue)
    assert int(_np(model.train_step_counter)) == 2


def _weights(layer):
    return [_np(w).copy() for w in layer.trainable_weights]


def test_prototypes_frozen_for_the_first_steps(ptbxl_signals):
    x = ptbxl_signals[:8]
    model = _tiny_swav(freeze_prototypes_steps=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    views = tf.data.Dataset.from_tensor_slices((x[:, :500], x[:, 500:])).batch(4)
    dataset = views.map(lambda a, b: ((a, b),))
    model.build(((None, 500, 12), (None, 500, 12)))
    prototypes_0 = _np(model.prototypes.prototypes).copy()
    encoder_0 = _weights(model.encoder)
    model.fit(dataset, epochs=1, verbose=0)  # steps 0 and 1: frozen
    assert int(_np(model.train_step_counter)) == 2
    np.testing.assert_array_equal(_np(model.prototypes.prototypes), prototypes_0)
    assert not np.allclose(_weights(model.encoder)[0], encoder_0[0])
    model.fit(dataset, epochs=1, verbose=0)  # steps 2 and 3: trained
    assert not np.allclose(_np(model.prototypes.prototypes), prototypes_0)


def test_trains_on_ptbxl_with_steps_per_execution(ptbxl_signals):
    x = ptbxl_signals[:8]
    model = _tiny_swav(temperature=0.1)
    steps_per_execution = 1 if keras.backend.backend() == "torch" else 2
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        steps_per_execution=steps_per_execution,
    )
    # Fixed views of a fixed batch: 2 halves and 2 small crops, repeated.
    views = (x[:, :500], x[:, 500:], x[:, 100:350], x[:, 600:850])
    dataset = tf.data.Dataset.from_tensors((views,)).repeat(2)
    losses = model.fit(dataset, epochs=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0] - 0.05, losses
    classifier = ECGClassifier(model.backbone, num_classes=3)
    assert tuple(classifier(x[:2]).shape) == (2, 3)


def test_augmenter_views_under_mixed_precision(ptbxl_signals):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _tiny_swav(augmenter=keras.layers.GaussianNoise(0.1), num_views=3)
        model.compile(optimizer="adam")
        x = ptbxl_signals[:4, :256]
        history = model.fit(x, batch_size=2, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])
        y_pred = model(x)
        assert len(y_pred["scores"]) == 3
        # Different noise per view.
        assert not np.allclose(_np(y_pred["scores"][0]), _np(y_pred["scores"][1]))
        assert all(w.dtype == "float32" for w in model.trainable_weights)
    finally:
        keras.config.set_dtype_policy("float32")


def test_single_view_without_augmenter_raises():
    model = _tiny_swav()
    x = np.zeros((2, 64, 12), "float32")
    with pytest.raises(ValueError, match="at least 2"):
        model.compute_loss(x=x, y_pred=model(x))


def test_with_tiny_xresnet1d():
    from keras_ecg.models.encoders import XResNet1D

    encoder = XResNet1D(
        block_depths=(1, 1),
        widths=(4, 8),
        expansion=1,
        kernel_size=3,
        stem_filters=(4, 4, 4),
        stem_kernel_size=3,
    )
    model = SwAV(
        encoder, ProjectionHead(hidden_dims=(8,), output_dim=4), num_prototypes=3
    )
    views = _views(np.random.default_rng(2), batch=2)[:2]
    y_pred = model(views)
    loss = _np(model.compute_loss(x=views, y_pred=y_pred, training=False))
    expected = _numpy_swav([_np(s) for s in y_pred["scores"]])
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_config_and_saved_model_round_trips(tmp_path):
    model = _tiny_swav(
        queue_length=4, queue_start_step=10, freeze_prototypes_steps=3, name="swav"
    )
    views = _views(np.random.default_rng(3))[:2]
    y_pred = model(views)
    model.compute_loss(x=views, y_pred=y_pred, training=True)  # fills the queue
    rebuilt = assert_config_round_trip(model)
    assert rebuilt.queue_start_step == 10 and rebuilt.freeze_prototypes_steps == 3
    restored = assert_saved_model_round_trip(model, views, tmp_path)
    np.testing.assert_array_equal(_np(restored.queue), _np(model.queue))
    assert int(_np(restored.train_step_counter)) == 1
