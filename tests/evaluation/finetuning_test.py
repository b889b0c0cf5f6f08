import keras
import numpy as np
import pytest

from keras_ecg.evaluation.finetuning import discriminative_optimizer
from keras_ecg.evaluation.finetuning import split_classifier_variables
from keras_ecg.models.ecg_classifier import ECGClassifier
from keras_ecg.models.method_factory import build_method


def _classifier(method="cpc", seed=0):
    keras.utils.set_random_seed(seed)
    if method == "cpc":
        backbone = build_method(method, size="tiny", input_leads=3).backbone
    else:  # a small convolutional encoder
        inputs = keras.Input((None, 3))
        x = keras.layers.Conv1D(4, 3, padding="same", name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
        backbone = keras.Model(inputs, x, name="conv_backbone")
    model = ECGClassifier(backbone, num_classes=2)
    model.build((None, 32, 3))
    return model


def _values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def test_apply_uses_the_group_learning_rates():
    model = _classifier("cpc")
    optimizer = discriminative_optimizer(
        model,
        backbone_lr=0.01,
        head_lr=0.1,
        context_lr=0.001,
        weight_decay=0.0,
        optimizer="sgd",
    )
    variables = model.trainable_variables
    groups = split_classifier_variables(model)
    assert groups["context"] and groups["backbone"] and groups["head"]
    assert all("lstm" in v.path for v in groups["context"])
    assert all("head_output" in v.path for v in groups["head"])
    assert sum(len(g) for g in groups.values()) == len(model.weights)
    expected_lr = {}
    for name, lr in (("backbone", 0.01), ("context", 0.001), ("head", 0.1)):
        for v in groups[name]:
            expected_lr[id(v)] = lr
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    before = _values(variables)
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    after = _values(variables)
    for v, g, b, a in zip(variables, grads, before, after):
        # SGD: w_new = w - lr * grad exactly.
        np.testing.assert_allclose(b - a, expected_lr[id(v)] * g, atol=1e-6)


def test_fit_step_matches_plain_sgd_scaled(tmp_path):
    x = np.random.default_rng(1).normal(size=(8, 32, 3)).astype("float32")
    y = (np.random.default_rng(2).random((8, 2)) > 0.5).astype("float32")
    loss = keras.losses.BinaryCrossentropy(from_logits=True)

    reference = _classifier("conv", seed=3)
    reference.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss)
    model = _classifier("conv", seed=3)
    model.set_weights(reference.get_weights())
    model.compile(
        optimizer=discriminative_optimizer(
            model, backbone_lr=0.01, head_lr=0.5, weight_decay=0.0, optimizer="sgd"
        ),
        loss=loss,
    )
    groups = split_classifier_variables(model)
    head_ids = {id(v) for v in groups["head"]}
    start = _values(model.trainable_variables)
    reference.train_on_batch(x, y)
    model.train_on_batch(x, y)
    for v, v_ref, w0 in zip(
        model.trainable_variables, reference.trainable_variables, start
    ):
        grad = w0 - keras.ops.convert_to_numpy(v_ref)  # lr 1: delta == grad
        lr = 0.5 if id(v) in head_ids else 0.01
        np.testing.assert_allclose(
            w0 - keras.ops.convert_to_numpy(v), lr * grad, atol=2e-5
        )
    # The MultiOptimizer and its learning rates are saved with the model.
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.optimizer, keras.optimizers.MultiOptimizer)
    rates = sorted(
        float(keras.ops.convert_to_numpy(o.learning_rate))
        for o in restored.optimizer.optimizers
    )
    np.testing.assert_allclose(rates, [0.01, 0.5], rtol=1e-6)


def test_bad_arguments():
    model = _classifier("conv")
    with pytest.raises(ValueError, match="unknown optimizer"):
        discriminative_optimizer(model, 1e-4, 1e-3, optimizer="lamb")
    with pytest.raises(ValueError, match="backbone_lr"):
        discriminative_optimizer(model, -1.0, 1e-3)
    unbuilt = ECGClassifier(model.backbone, 2)
    with pytest.raises(ValueError, match="built"):
        discriminative_optimizer(unbuilt, 1e-4, 1e-3)
