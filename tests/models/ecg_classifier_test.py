import keras
import numpy as np
import pytest

from keras_ecg.models.ecg_classifier import ECGClassifier
from keras_ecg.models.encoders.xresnet1d import XResNet1D
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip

TINY = dict(
    block_depths=(1,),
    widths=(4,),
    expansion=1,
    stem_filters=(3, 4, 4),
    kernel_size=3,
    input_leads=3,
)


def _sequence_backbone():
    """Per-time-step Dense: `(B, T, 3) -> (B, T, 4)`."""
    inputs = keras.Input((None, 3))
    return keras.Model(inputs, keras.layers.Dense(4, name="proj")(inputs))


def _np_sequence_features(backbone, x):
    kernel, bias = backbone.get_layer("proj").get_weights()
    return x.astype("float64") @ kernel + bias


NP_POOLING = {
    "avg": lambda h: h.mean(1),
    "max": lambda h: h.max(1),
    "last": lambda h: h[:, -1],
    "concat": lambda h: np.concatenate([h.max(1), h.mean(1)], -1),
    "concat_last": lambda h: np.concatenate([h.max(1), h.mean(1), h[:, -1]], -1),
}


@pytest.mark.parametrize("pooling", sorted(NP_POOLING))
def test_sequence_backbone_pooling_matches_numpy(pooling):
    rng = np.random.default_rng(0)
    backbone = _sequence_backbone()
    model = ECGClassifier(backbone, num_classes=2, pooling=pooling)
    x = rng.normal(size=(3, 9, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    pooled = NP_POOLING[pooling](_np_sequence_features(backbone, x))
    kernel, bias = model.head_denses[0].get_weights()
    assert kernel.shape == (pooled.shape[-1], 2)
    np.testing.assert_allclose(logits, pooled @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_vector_backbone_ignores_pooling_and_mlp_head_matches_numpy():
    rng = np.random.default_rng(1)
    inputs = keras.Input((None, 3))
    vector = keras.layers.GlobalAveragePooling1D()(inputs)
    backbone = keras.Model(inputs, keras.layers.Dense(5, name="proj")(vector))
    model = ECGClassifier(
        backbone,
        num_classes=3,
        pooling="last",
        head_hidden_dims=(4,),
        dropout=0.5,
        use_batch_norm=True,
        activation="sigmoid",
    )
    x = rng.normal(size=(2, 11, 3)).astype("float32")
    model(x)
    for w in model.head_norms[0].weights + model.head_norms[1].weights:
        low = 0.5 if "moving_variance" in w.path else -1.0
        w.assign(rng.uniform(low, 1.5, tuple(w.shape)).astype("float32"))
    out = keras.ops.convert_to_numpy(model(x, training=False))

    def bn(h, layer):
        gamma, beta, mean, var = layer.get_weights()
        return gamma * (h - mean) / np.sqrt(var + 1e-5) + beta

    kernel, bias = backbone.get_layer("proj").get_weights()
    h = x.astype("float64").mean(1) @ kernel + bias  # pooling ignored for vectors
    k1, b1 = model.head_denses[0].get_weights()
    h = np.maximum(bn(h, model.head_norms[0]) @ k1 + b1, 0.0)
    k2, b2 = model.head_denses[1].get_weights()
    expected = 1.0 / (1.0 + np.exp(-(bn(h, model.head_norms[1]) @ k2 + b2)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Dropout is active in training mode only.
    train_out = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(train_out, out)


def _fit_and_snapshot(freeze):
    rng = np.random.default_rng(2)
    backbone = XResNet1D(pooling="concat", **TINY)
    model = ECGClassifier(backbone, num_classes=2, freeze_backbone=freeze)
    x = rng.normal(2.0, 3.0, size=(16, 40, 3)).astype("float32")
    y = (rng.uniform(size=(16, 2)) > 0.5).astype("float32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    model(x[:1])
    snapshot = lambda ws: [keras.ops.convert_to_numpy(w).copy() for w in ws]  # noqa: E731
    before = (snapshot(backbone.weights), snapshot(model.head_denses[0].weights))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = (snapshot(backbone.weights), snapshot(model.head_denses[0].weights))
    moving = [i for i, w in enumerate(backbone.weights) if "moving_" in w.path]
    return model, before, after, moving


def test_freeze_backbone_keeps_backbone_and_bn_statistics_fixed():
    model, before, after, moving = _fit_and_snapshot(freeze=True)
    assert model.backbone.trainable is False
    assert len(model.trainable_weights) == 2  # only the output Dense
    assert moving
    for b, a in zip(before[0], after[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for b, a in zip(before[1], after[1], strict=True))

    # Control: unfrozen, the same fit moves the BN statistics and weights.
    _, before, after, moving = _fit_and_snapshot(freeze=False)
    assert all(not np.allclose(after[0][i], before[0][i]) for i in moving)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown pooling"):
        ECGClassifier(_sequence_backbone(), num_classes=2, pooling="mean")
    with pytest.raises(ValueError, match="num_classes"):
        ECGClassifier(_sequence_backbone(), num_classes=0)


def test_config_and_saved_model_round_trip(tmp_path):
    backbone = XResNet1D(pooling=None, **TINY)
    model = ECGClassifier(
        backbone,
        num_classes=3,
        pooling="concat_last",
        head_hidden_dims=(5,),
        use_batch_norm=True,
        freeze_backbone=True,
        output_initializer=keras.initializers.TruncatedNormal(stddev=0.01, seed=1),
    )
    x = np.random.default_rng(3).normal(size=(2, 40, 3)).astype("float32")
    model(x)
    # Only the output kernel takes the probe initializer (std 0.01 -> |w| <
    # 0.02); the hidden layer keeps Glorot's scale.
    output_kernel = keras.ops.convert_to_numpy(model.head_denses[-1].kernel)
    hidden_kernel = keras.ops.convert_to_numpy(model.head_denses[0].kernel)
    assert np.abs(output_kernel).max() <= 0.02
    assert np.abs(hidden_kernel).max() > 0.05
    rebuilt = assert_config_round_trip(model)
    assert isinstance(rebuilt.output_initializer, keras.initializers.TruncatedNormal)
    assert rebuilt.output_initializer.stddev == 0.01
    assert rebuilt.backbone.trainable is False
    assert isinstance(rebuilt.backbone, XResNet1D)
    restored = assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)
    assert restored.freeze_backbone and restored.backbone.trainable is False


def test_frozen_backbone_stays_frozen_after_reload(tmp_path):
    backbone = XResNet1D(
        block_depths=(1,), widths=(8,), expansion=1, stem_filters=(4, 4, 8)
    )
    model = ECGClassifier(backbone, num_classes=3, freeze_backbone=True)
    x = np.random.default_rng(0).standard_normal((2, 64, 12)).astype("float32")
    model(x)
    head_only = len(model.trainable_weights)
    assert head_only == 2  # the output Dense kernel and bias
    rebuilt = ECGClassifier.from_config(model.get_config())
    rebuilt(x)
    assert len(rebuilt.trainable_weights) == head_only
    path = tmp_path / "frozen.keras"
    model.save(path)
    assert len(keras.saving.load_model(path).trainable_weights) == head_only
