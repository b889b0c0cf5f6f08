"""Tests of JEPA: loss, EMA, training, saving, downstream use."""

import keras
import numpy as np
import pytest

from keras_ecg.layers import JEPAPredictor
from keras_ecg.models import JEPA
from keras_ecg.models.encoders import ECGTransformer
from keras_ecg.models.method_factory import build_method
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests import transformer_numpy as ref

ENCODER = dict(patch_size=4, hidden_dim=8, num_layers=1, num_heads=2, num_registers=1)
PREDICTOR = dict(hidden_dim=4, num_layers=1, num_heads=2)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _model(**kwargs):
    settings = dict(min_block_size=2, seed=0)
    settings.update(kwargs)
    return JEPA(
        ECGTransformer(input_leads=3, name="encoder", **ENCODER),
        JEPAPredictor(name="predictor", **PREDICTOR),
        **settings,
    )


def _weights(variables):
    return [_np(v).copy() for v in variables]


def _numpy_loss(model, x, masks, target_weights):
    """The reference JEPA loss, one sample at a time and without padding."""
    context_indices, context_valid, target_indices, target_valid = masks
    encoder_config = dict(ENCODER, layer_norm_epsilon=1e-6)
    predictor_config = dict(PREDICTOR, layer_norm_epsilon=1e-6)
    online = ref.weights(model.encoder)
    predictor = ref.weights(model.predictor)
    errors = []
    for b in range(len(x)):
        context = context_indices[b][context_valid[b]][None]
        targets = target_indices[b][target_valid[b]][None]
        z, _ = ref.encoder(x[b : b + 1], online, encoder_config, indices=context)
        z = ref.predictor(z, context, targets, predictor, predictor_config)
        h, _ = ref.encoder(x[b : b + 1], target_weights, encoder_config)
        errors.append(np.abs(z - h[:, targets[0]]).ravel())
    return np.concatenate(errors).mean()


def _fixed_masks(model, monkeypatch):
    """Hand-built masks (padded slots included) instead of random ones."""
    # 12 tokens; sample 0 keeps 3, sample 1 keeps 2: 3 context slots, the
    # others padding; 10 target slots.
    keep = np.zeros((2, 12), bool)
    keep[0, [0, 5, 11]] = True
    keep[1, [3, 4]] = True
    context_indices = np.array([[0, 5, 11], [3, 4, 0]], "int32")
    context_valid = np.array([[1, 1, 1], [1, 1, 0]], bool)
    target_indices = np.full((2, 10), 1, "int32")
    target_valid = np.zeros((2, 10), bool)
    for b in range(2):
        masked = np.flatnonzero(~keep[b])
        target_indices[b, : len(masked)] = masked
        target_valid[b, : len(masked)] = True
    masks = (context_indices, context_valid, target_indices, target_valid)
    monkeypatch.setattr(
        model,
        "sample_masks",
        lambda batch, tokens: tuple(keras.ops.convert_to_tensor(m) for m in masks),
    )
    return masks


def test_loss_and_ema_ordering_match_numpy(monkeypatch):
    model = _model(momentum=0.75, final_momentum=0.75)
    x = np.random.default_rng(0).normal(size=(2, 48, 3)).astype("float32")
    model.build(x.shape)
    rng = np.random.default_rng(1)
    for layer in (model.encoder, model.predictor, model.target_encoder):
        ref.randomize(layer, rng)
    masks = _fixed_masks(model, monkeypatch)
    online, target = ref.weights(model.encoder), ref.weights(model.target_encoder)

    outputs = model(x, training=False)
    assert tuple(outputs["predictions"].shape) == (2, 10, 8)
    loss = float(_np(model.compute_loss(x=x, y_pred=outputs, training=False)))
    np.testing.assert_allclose(loss, _numpy_loss(model, x, masks, target), rtol=1e-4)
    assert int(_np(model.ema_step)) == 0  # evaluation does not move the target

    # Training: the target first moves by the EMA, then gives the targets.
    loss = float(_np(model.compute_loss(x=x, y_pred=outputs, training=True)))
    moved = {k: 0.75 * target[k] + 0.25 * online[k] for k in target}
    np.testing.assert_allclose(loss, _numpy_loss(model, x, masks, moved), rtol=1e-4)
    for key, value in ref.weights(model.target_encoder).items():
        np.testing.assert_allclose(value, moved[key], rtol=1e-5, atol=1e-6)
    assert int(_np(model.ema_step)) == 1


def test_momentum_schedule_is_linear_as_the_reference():
    model = _model(momentum=0.9, final_momentum=0.99, total_steps=10)
    model.build((None, 48, 3))
    for k in (0, 1, 5, 10, 20):
        expected = 0.9 + 0.09 * min(k / 10, 1.0)
        np.testing.assert_allclose(
            float(_np(model.momentum_at(k))), expected, rtol=1e-6
        )
    model.total_steps_variable.assign(0.0)  # unknown K: the initial momentum
    np.testing.assert_allclose(float(_np(model.momentum_at(7))), 0.9, rtol=1e-6)


def test_fit_moves_the_target_by_the_ema_and_round_trips(tmp_path):
    steps_per_execution = 1 if keras.backend.backend() == "torch" else 2
    model = build_method("jepa", size="tiny", momentum=0.5, final_momentum=0.9)
    x = np.random.default_rng(2).normal(size=(8, 1000, 12)).astype("float32")
    model.build(x.shape)
    # Start away from the ViT initialisation, the target apart from the
    # online encoder, so that the EMA check below can fail.
    rng = np.random.default_rng(3)
    for layer in (model.encoder, model.target_encoder, model.predictor):
        ref.randomize(layer, rng, scale=0.3)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), steps_per_execution=steps_per_execution
    )
    history = model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    # K inferred from fit: 1 epoch of 2 steps.
    assert float(_np(model.total_steps_variable)) == 2.0
    online_before = _weights(model.online_weights)
    target_before = _weights(model.target_weights)
    history = model.fit(x[:4], batch_size=4, epochs=1, shuffle=False, verbose=0).history
    assert set(history) == {"loss", "momentum"}
    assert np.isfinite(history["loss"][0])
    assert int(_np(model.ema_step)) == 3
    # Step k = 2 of K = 3 (the second fit extends K by its one step).
    momentum = 0.5 + 0.4 * 2 / 3
    np.testing.assert_allclose(history["momentum"][0], momentum, rtol=1e-5)
    for o, t, new in zip(online_before, target_before, _weights(model.target_weights)):
        np.testing.assert_allclose(new, momentum * t + (1 - momentum) * o, atol=1e-5)
    online_after = _weights(model.online_weights)
    assert max(np.abs(a - b).max() for a, b in zip(online_after, online_before)) > 1e-4
    # Only the context encoder and the predictor train.
    trainable = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in trainable for v in model.target_weights)
    assert len(model.trainable_variables) == len(model.encoder.weights) + len(
        model.predictor.weights
    )

    restored = assert_config_round_trip(model)
    assert restored.momentum == 0.5 and restored.min_block_size == 10
    loaded = assert_saved_model_round_trip(
        model, x[:2], tmp_path, atol=1e-5, call=lambda m, v: m.backbone(v)
    )
    assert int(_np(loaded.ema_step)) == 3
    assert not any(v.trainable for v in loaded.target_weights)


def test_backbone_is_the_target_encoder_and_finetunes(ptbxl_signals):
    from keras_ecg.data.ecg_dataset import ECGDataset
    from keras_ecg.evaluation import train_downstream

    model = build_method("jepa", size="tiny")
    model.build((None, 1000, 12))
    backbone = model.backbone
    assert backbone is model.target_encoder and not backbone.trainable_weights
    labels = (np.arange(32) % 2)[:, None].astype("float32")
    labels = np.concatenate([labels, 1 - labels], axis=1)
    data = ECGDataset(
        signals=list(ptbxl_signals[:32]),
        record_ids=[str(i) for i in range(32)],
        sampling_rate=100,
        labels=labels,
        classes=["A", "B"],
    )
    before = _weights(backbone.weights)
    # Plain finetuning (no linear stage): the EMA target's frozen weights
    # must train too.
    result = train_downstream(
        backbone,
        data,
        data,
        mode="finetune",
        epochs=1,
        linear_probe_epochs=0,
        batch_size=16,
        verbose=0,
    )
    assert np.isfinite(result["best_val_auc"])
    moved = max(np.abs(a - b).max() for a, b in zip(before, _weights(backbone.weights)))
    assert moved > 1e-5


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="min_keep_ratio"):
        _model(min_keep_ratio=0.3, max_keep_ratio=0.2)
    with pytest.raises(ValueError, match="momentum"):
        _model(momentum=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        _model(total_steps=0)
    model = _model(min_block_size=12)
    with pytest.raises(ValueError, match="min_block_size=12"):
        model(np.zeros((2, 48, 3), "float32"))
    with pytest.raises(ValueError, match="not a multiple"):
        _model()(np.zeros((2, 50, 3), "float32"))


def test_s4_jepa_fits_moves_its_target_and_round_trips(tmp_path):
    from keras_ecg.models.encoders import S4TokenEncoder

    keras.utils.set_random_seed(0)
    model = build_method(
        "jepa", size="tiny", encoder="s4", momentum=0.5, final_momentum=0.5
    )
    x = np.random.default_rng(5).normal(size=(4, 1000, 12)).astype("float32")
    model.build(x.shape)
    assert isinstance(model.backbone, S4TokenEncoder)
    # At the reference's initialisation (std 0.02 projections) the predictor
    # passes the encoder gradients of ~1e-7; larger weights let SGD move it.
    ref.randomize(model.predictor, np.random.default_rng(6), scale=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    initial = _weights(model.online_weights)
    # Two one-step fits (one compiled train function).
    model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after_one = _weights(model.online_weights)
    history = model.fit(x, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][0]) and int(_np(model.ema_step)) == 2
    assert max(np.abs(a - b).max() for a, b in zip(after_one, initial)) > 1e-4
    # Step 1 averages the initialisation with itself; step 2 moves the target
    # halfway to the context encoder of that step (after one update).
    for start, middle, target in zip(
        initial, after_one, _weights(model.target_weights), strict=True
    ):
        np.testing.assert_allclose(target, 0.5 * start + 0.5 * middle, atol=1e-6)
    # Only the context encoder (A, B, dt included at tiny size) and the
    # predictor train.
    assert len(model.trainable_variables) == len(model.encoder.weights) + len(
        model.predictor.weights
    )
    assert not any(v.trainable for v in model.target_weights)
    loaded = assert_saved_model_round_trip(
        model, x[:2], tmp_path, atol=1e-5, call=lambda m, v: m.backbone(v)
    )
    assert isinstance(loaded.encoder, S4TokenEncoder)
    assert int(_np(loaded.ema_step)) == 2
