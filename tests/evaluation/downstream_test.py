import keras
import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.evaluation.downstream import RecordAUCCheckpoint
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import predict_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.models.ecg_classifier import ECGClassifier
from tests.inference.toy_records import LEADS
from tests.inference.toy_records import toy_backbone
from tests.inference.toy_records import toy_dataset

_dataset = toy_dataset
_backbone = toy_backbone


def test_evaluate_records_needs_labels():
    data = _dataset(num_records=4)
    data.labels = None
    with pytest.raises(ValueError, match="labelled"):
        evaluate_records(ECGClassifier(_backbone(), 2), data)


class _SetHeadEachEpoch(keras.callbacks.Callback):
    """Epoch 0 runs with a perfect head, later epochs with its negation."""

    def __init__(self, kernel):
        super().__init__()
        self.kernel = kernel

    def on_epoch_begin(self, epoch, logs=None):
        sign = 1.0 if epoch == 0 else -1.0
        self.model.head_denses[0].kernel.assign(sign * self.kernel)


def test_checkpoint_restores_best_epoch_and_logs_auc():
    data = _dataset(num_records=12)
    identity = keras.Sequential(
        [keras.Input((None, LEADS)), keras.layers.GlobalAveragePooling1D()]
    )
    model = ECGClassifier(identity, num_classes=2)
    model.build((None, 40, LEADS))
    # Logit k = mean of lead k: a perfect classifier on this data.
    kernel = np.eye(LEADS, 2, dtype="float32") * 5.0
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    checkpoint = RecordAUCCheckpoint(data, window_seconds=0.4, stride_seconds=0.2)
    history = model.fit(
        data.to_array()[:, :40],
        data.labels,
        epochs=3,
        batch_size=12,
        verbose=0,
        callbacks=[_SetHeadEachEpoch(kernel), checkpoint],
    )
    np.testing.assert_allclose(checkpoint.history, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(history.history["val_macro_auc"], [1.0, 0.0, 0.0])
    assert checkpoint.best_epoch == 0 and checkpoint.best_auc == 1.0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.head_denses[0].kernel), kernel
    )
    assert evaluate_records(model, data, window_seconds=0.4, stride_seconds=0.2)[
        "macro_auc"
    ] == pytest.approx(1.0)


def _backbone_weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.backbone.weights]


def _changed(before, after):
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


@pytest.mark.parametrize(
    "mode, discriminative_lr", [("linear", None), ("scratch", None), ("finetune", 0)]
)
def test_train_downstream_modes(mode, discriminative_lr):
    train, val = _dataset(num_records=16, seed=1), _dataset(num_records=8, seed=2)
    backbone = _backbone()
    backbone(np.zeros((1, 40, LEADS), "float32"))
    before = [keras.ops.convert_to_numpy(w).copy() for w in backbone.weights]
    trainable = [id(w) for w in backbone.trainable_weights]
    result = train_downstream(
        backbone,
        train,
        val,
        mode=mode,
        epochs=2,
        patience=0,
        linear_probe_epochs=1,
        batch_size=8,
        learning_rate=1e-2,
        window_seconds=0.4,
        verbose=0,
        discriminative_lr=discriminative_lr,
    )
    model = result["model"]
    after = _backbone_weights(model)
    changed = dict(
        zip([id(w) for w in model.backbone.weights], _changed(before, after))
    )
    stages = [(s["name"], s["epochs_run"]) for s in result["stages"]]
    if mode == "finetune":
        assert stages == [("linear_probe", 1), ("finetune", 2)]
    else:
        assert stages == [(mode, 2)]
    assert len(result["val_auc"]) == sum(n for _, n in stages)
    last = result["val_auc"][-2:]
    assert result["best_val_auc"] == max(last)
    assert result["best_epoch"] == int(np.argmax(last))
    assert all(0.0 <= auc <= 1.0 for auc in result["val_auc"])
    assert result["options"]["window_seconds"] == 0.4
    if mode == "linear":
        # Frozen incl. BatchNorm moving statistics.
        assert not any(changed.values())
        assert model.freeze_backbone
    elif discriminative_lr == 0:
        # Backbone learning rate 0: trainable weights fixed, BN statistics move.
        assert not any(changed[i] for i in trainable)
        assert any(changed[i] for i in changed if i not in trainable)
        assert isinstance(model.optimizer, keras.optimizers.MultiOptimizer)
        assert not model.freeze_backbone
    else:
        assert all(changed[i] for i in trainable)


class _HeadAtStart(keras.callbacks.Callback):
    """Copies the head's kernels when training starts (the model is built)."""

    def on_train_begin(self, logs=None):
        self.kernels = [
            keras.ops.convert_to_numpy(d.kernel).copy() for d in self.model.head_denses
        ]


def test_frozen_trains_an_mlp_head_and_leaves_the_backbone_unchanged():
    train, val = _dataset(num_records=16, seed=1), _dataset(num_records=8, seed=2)
    backbone = _backbone()
    backbone(np.zeros((1, 40, LEADS), "float32"))
    before = [keras.ops.convert_to_numpy(w).copy() for w in backbone.weights]
    head = _HeadAtStart()
    result = train_downstream(
        backbone,
        train,
        val,
        mode="frozen",
        epochs=1,
        patience=0,
        batch_size=8,
        window_seconds=0.4,
        verbose=0,
        callbacks=[head],
    )
    model = result["model"]
    assert [(s["name"], s["epochs_run"]) for s in result["stages"]] == [("frozen", 1)]
    assert result["options"]["learning_rate"] == 1e-3
    assert (model.head_hidden_dims, model.dropout) == ((512,), (0.25, 0.5))
    assert model.freeze_backbone and model.head_denses[0].activation.__name__ == "relu"
    # Every backbone weight, BatchNorm moving statistics included, is the
    # value it had before training.
    for b, a in zip(before, _backbone_weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    # Both head layers trained.
    for start, dense in zip(head.kernels, model.head_denses, strict=True):
        assert not np.allclose(start, keras.ops.convert_to_numpy(dense.kernel))


@pytest.mark.backend_agnostic
def test_frozen_head_settings_can_be_overridden():
    from keras_ecg.evaluation.downstream import _resolve_options

    resolve = _resolve_options
    assert resolve("frozen", {"head_hidden_dims": (64, 32)})["dropout"] == (
        0.25,
        0.25,
        0.5,
    )
    assert resolve("frozen", {"dropout": 0.1})["dropout"] == 0.1
    linear = resolve("linear", {})
    assert (linear["head_hidden_dims"], linear["dropout"]) == ((), 0.0)


def test_evaluate_records_bootstrap_intervals():
    data = _dataset(num_records=24, seed=3)
    model = ECGClassifier(_backbone(), num_classes=2)
    window = dict(window_seconds=0.4, stride_seconds=0.2)
    plain = evaluate_records(model, data, **window)
    assert plain["bootstrap"] is None and 0.0 <= plain["macro_auprc"] <= 1.0
    result = evaluate_records(model, data, bootstrap=200, bootstrap_seed=4, **window)
    intervals = result["bootstrap"]
    assert (intervals["num_resamples"], intervals["seed"]) == (200, 4)
    auroc, auprc = intervals["macro_auroc"], intervals["macro_auprc"]
    assert auroc["value"] == pytest.approx(result["macro_auc"])
    assert auprc["value"] == pytest.approx(plain["macro_auprc"])
    for entry in (auroc, auprc):
        assert entry["low"] <= entry["value"] <= entry["high"]
        assert entry["low"] < entry["high"]


class _BackboneSnapshots(keras.callbacks.Callback):
    """Copies the backbone's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(_backbone_weights(self.model))


def test_lp_ft_keeps_backbone_frozen_in_linear_stage_then_trains_it():
    train, val = _dataset(num_records=16, seed=1), _dataset(num_records=8, seed=2)
    backbone = _backbone()
    backbone(np.zeros((1, 40, LEADS), "float32"))
    initial = [keras.ops.convert_to_numpy(w).copy() for w in backbone.weights]
    snapshots = _BackboneSnapshots()
    train_downstream(
        backbone,
        train,
        val,
        mode="finetune",
        epochs=2,
        patience=0,
        linear_probe_epochs=2,
        batch_size=8,
        window_seconds=0.4,
        verbose=0,
        callbacks=[snapshots],
    )
    lp1, lp2, ft1, _ = snapshots.snapshots
    # Linear stage: every backbone weight, BatchNorm statistics included, fixed.
    for a, b, c in zip(initial, lp1, lp2):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # Finetuning stage: the backbone moves.
    assert any(not np.array_equal(a, b) for a, b in zip(lp2, ft1))


def test_frozen_batch_norm_keeps_statistics_while_backbone_trains():
    train, val = _dataset(num_records=16, seed=1), _dataset(num_records=8, seed=2)
    backbone = _backbone()
    backbone(np.zeros((1, 40, LEADS), "float32"))
    bn = backbone.get_layer("bn")
    bn_before = [keras.ops.convert_to_numpy(w).copy() for w in bn.weights]
    conv_before = keras.ops.convert_to_numpy(backbone.get_layer("conv").kernel).copy()
    result = train_downstream(
        backbone,
        train,
        val,
        mode="scratch",
        epochs=1,
        patience=0,
        batch_size=8,
        window_seconds=0.4,
        backbone_batch_norm="frozen",
        verbose=0,
    )
    model = result["model"]
    bn_after = model.backbone.get_layer("bn").weights
    for a, b in zip(bn_before, bn_after):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
    conv_after = keras.ops.convert_to_numpy(model.backbone.get_layer("conv").kernel)
    assert not np.array_equal(conv_before, conv_after)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from keras_ecg.evaluation.downstream import _learning_rate

    schedule = _learning_rate(1e-3, "cosine", 10, 4, warmup_epochs=2)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(41)]
    # Linear warm-up over 8 steps to the peak, then half a cosine over 32.
    np.testing.assert_allclose(rates[:9], np.linspace(0.0, 1e-3, 9), atol=1e-9)
    expected = [0.5e-3 * (1 + np.cos(np.pi * k / 32)) for k in range(33)]
    np.testing.assert_allclose(rates[8:], expected, atol=1e-9)
    assert _learning_rate(1e-3, "constant", 10, 4, 2) == 1e-3


@pytest.mark.parametrize("min_epochs, expected", [(0, 3), (4, 7)])
def test_early_stopping_on_val_auc(min_epochs, expected):
    # A head whose learning rate is 0 never improves after epoch 1: patience 2
    # stops 2 epochs after the first monitored one, which is epoch
    # `min_epochs` (0-based) when monitoring starts late.
    train, val = _dataset(num_records=16, seed=1), _dataset(num_records=8, seed=2)
    result = train_downstream(
        _backbone(),
        train,
        val,
        mode="linear",
        epochs=10,
        patience=2,
        min_epochs=min_epochs,
        learning_rate=0.0,
        batch_size=8,
        window_seconds=0.4,
        verbose=0,
    )
    assert result["stages"][0]["epochs_run"] == expected
    assert result["best_epoch"] == 0


def test_train_downstream_rejects_bad_mode():
    data = _dataset(num_records=4)
    with pytest.raises(ValueError, match="mode must be one of"):
        train_downstream(_backbone(), data, data, mode="probe")


def _offset_dataset(num_records, seed):
    """Frozen-feature regime of real encoders: a large shared offset.

    Lead k's mean is 10 + 0.5 * label_k: the class raises the feature, but
    the feature is dominated by an offset common to every record.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(num_records, 2)).astype("float32")
    signals = [
        (10.0 + 0.5 * y + 0.2 * rng.normal(size=(60, 2))).astype("float32")
        for y in labels
    ]
    return ECGDataset(
        signals=signals,
        record_ids=[f"r{i}" for i in range(num_records)],
        sampling_rate=100,
        lead_names=("I", "II"),
        labels=labels,
        classes=["A", "B"],
    )


def test_linear_default_head_normalises_offset_dominated_features():
    train, val = _offset_dataset(64, seed=3), _offset_dataset(32, seed=4)
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.layers.GlobalAveragePooling1D()])
    result = train_downstream(
        backbone,
        train,
        val,
        mode="linear",
        epochs=2,
        batch_size=8,
        window_seconds=0.4,
        verbose=0,
    )
    model = result["model"]
    assert isinstance(model.head_norms[0], keras.layers.BatchNormalization)
    # lr 1e-2 at the start, decayed by the cosine schedule to 0 at the end.
    schedule = model.optimizer._learning_rate
    np.testing.assert_allclose(float(schedule(0)), 1e-2)
    # The probe starts near zero: |w| of a TruncatedNormal(0.01) is < 0.02,
    # and two epochs of steps of ~1e-2 cannot move it far.
    kernel = keras.ops.convert_to_numpy(model.head_denses[-1].kernel)
    assert np.abs(kernel).max() < 0.5, kernel
    # Each class is carried by one feature (corr > 0.99) under an offset of
    # 10: a normalised head ranks the validation records correctly at once.
    assert min(result["val_auc"]) > 0.95, result["val_auc"]


def _raw_dataset(num_records, seed):
    """`_dataset` in "mV" far from unit scale, so standardisation matters."""
    data = _dataset(num_records=num_records, seed=seed)
    scale = np.array([40.0, 0.02, 3.0], "float32")
    shift = np.array([200.0, -1.0, 7.0], "float32")
    data.signals = [(s * scale + shift).astype("float32") for s in data.signals]
    return data


def _fresh_backbone():
    keras.utils.set_random_seed(7)
    backbone = _backbone()
    backbone.build((None, 40, LEADS))
    return backbone


def _no_transform(monkeypatch):
    """Makes a standardised copy of a dataset an error."""
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    def refuse(self, data):
        raise AssertionError("LeadStandardizer.transform copied the data")

    monkeypatch.setattr(LeadStandardizer, "transform", refuse)


def test_train_downstream_standardizer_matches_a_standardised_copy(monkeypatch):
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    train, val = _raw_dataset(16, seed=1), _raw_dataset(8, seed=2)
    standardizer = LeadStandardizer().fit(train)
    copies = standardizer.transform(train), standardizer.transform(val)
    options = dict(
        mode="finetune",
        epochs=2,
        patience=0,
        linear_probe_epochs=1,
        batch_size=8,
        window_seconds=0.4,
        verbose=0,
    )
    expected = train_downstream(_fresh_backbone(), *copies, **options)
    _no_transform(monkeypatch)
    actual = train_downstream(
        _fresh_backbone(), train, val, standardizer=standardizer, **options
    )
    unstandardised = train_downstream(_fresh_backbone(), train, val, **options)
    np.testing.assert_allclose(actual["val_auc"], expected["val_auc"], atol=1e-6)
    window = dict(window_seconds=0.4, stride_seconds=0.2)
    scores = predict_records(actual["model"], val, standardizer=standardizer, **window)
    reference = predict_records(expected["model"], copies[1], **window)
    np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-5)
    # The standardisation is applied once: the model trained on raw records
    # without it differs.
    raw_scores = predict_records(unstandardised["model"], val, **window)
    assert not np.allclose(raw_scores, reference, rtol=1e-4, atol=1e-5)


def test_evaluate_records_standardizer_matches_a_standardised_copy(monkeypatch):
    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    data = _raw_dataset(6, seed=3)
    standardizer = LeadStandardizer().fit(_raw_dataset(10, seed=4))
    model = ECGClassifier(_fresh_backbone(), num_classes=2)
    window = dict(window_seconds=0.4, stride_seconds=0.25, batch_size=5)
    expected = evaluate_records(model, standardizer.transform(data), **window)
    preprocessor = ECGPreprocessor.from_standardizer(
        standardizer, sampling_rate=100, lead_names=data.lead_names
    )
    _no_transform(monkeypatch)
    # A `LeadStandardizer` or an `ECGPreprocessor` carrying its statistics.
    for given in (standardizer, preprocessor):
        actual = evaluate_records(model, data, standardizer=given, **window)
        np.testing.assert_allclose(
            actual["scores"], expected["scores"], rtol=1e-5, atol=1e-6
        )
        assert actual["macro_auc"] == pytest.approx(expected["macro_auc"], abs=1e-6)
    raw = evaluate_records(model, data, **window)
    assert not np.allclose(raw["scores"], expected["scores"], rtol=1e-5, atol=1e-6)


def test_checkpoint_standardizer_scores_raw_validation_records():
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    val = _raw_dataset(8, seed=5)
    standardizer = LeadStandardizer().fit(val)
    model = ECGClassifier(_fresh_backbone(), num_classes=2)
    model.build((None, 40, LEADS))
    window = dict(window_seconds=0.4, stride_seconds=0.2)
    on_the_fly = RecordAUCCheckpoint(val, standardizer=standardizer, **window)
    copied = RecordAUCCheckpoint(standardizer.transform(val), **window)
    for callback in (on_the_fly, copied):
        callback.set_model(model)
        callback.on_epoch_end(0, {})
    assert on_the_fly.history == pytest.approx(copied.history, abs=1e-6)
    # The windows it scores are the standardised ones.
    windows = [
        np.concatenate([np.asarray(x) for x, _ in callback._windows[0]])
        for callback in (on_the_fly, copied)
    ]
    np.testing.assert_allclose(windows[0], windows[1], rtol=1e-6, atol=1e-6)
    assert abs(windows[0].mean()) < 1.0 < np.abs(np.concatenate(val.signals)).max()
