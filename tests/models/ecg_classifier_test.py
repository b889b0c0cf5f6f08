import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import wfdb

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.models.ecg_classifier import ECGClassifier
from keras_ecg.models.ecg_preprocessor import ECGPreprocessor
from keras_ecg.models.encoders.xresnet1d import XResNet1D
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from keras_ecg.testing.test_case import subprocess_env
from tests.models.record_helpers import PTBXL_IDS
from tests.models.record_helpers import link_record
from tests.models.record_helpers import ptbxl_header

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
    with pytest.raises(ValueError, match="2 dropout rates for 1 head layers"):
        ECGClassifier(_sequence_backbone(), num_classes=2, dropout=(0.1, 0.2))
    with pytest.raises(ValueError, match="dropout must be in"):
        ECGClassifier(_sequence_backbone(), num_classes=2, dropout=1.0)


def test_config_and_saved_model_round_trip(tmp_path):
    backbone = XResNet1D(pooling=None, **TINY)
    model = ECGClassifier(
        backbone,
        num_classes=3,
        pooling="concat_last",
        head_hidden_dims=(5,),
        dropout=(0.25, 0.5),
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
    # One rate per head layer: half before the hidden layer (fastai's head).
    assert [d.rate for d in rebuilt.head_dropouts] == [0.25, 0.5]
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


# ---------------------------------------------------------------------------
# Metadata, preprocessor and predict_records
# ---------------------------------------------------------------------------

CLASS_NAMES = ["NORM", "MI", "STTC"]


def _dense_backbone(leads=12, name="proj"):
    """Per-time-step Dense `(B, T, leads) -> (B, T, 4)`: computable in numpy."""
    inputs = keras.Input((None, leads))
    return keras.Model(inputs, keras.layers.Dense(4, name=name)(inputs))


def _with_metadata(backbone, preprocessor, **kwargs):
    return ECGClassifier(
        backbone,
        num_classes=3,
        preprocessor=preprocessor,
        class_names=CLASS_NAMES,
        class_descriptions=["normal ECG", "myocardial infarction", "ST/T change"],
        label_set="superdiagnostic",
        label_vocabulary="scp",
        **kwargs,
    )


def test_metadata_validation():
    backbone = _sequence_backbone()
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        ECGClassifier(backbone, num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        ECGClassifier(backbone, num_classes=2, class_names=["a", "a"])
    with pytest.raises(ValueError, match="class_descriptions has 1"):
        ECGClassifier(backbone, num_classes=2, class_descriptions=["x"])
    with pytest.raises(ValueError, match="label_vocabulary"):
        ECGClassifier(backbone, num_classes=2, label_vocabulary="icd10")
    with pytest.raises(ValueError, match="ECGPreprocessor"):
        ECGClassifier(backbone, num_classes=2, preprocessor={"sampling_rate": 100})
    # The preprocessor's leads must match the model's input.
    model = ECGClassifier(backbone, num_classes=2, preprocessor=ECGPreprocessor())
    with pytest.raises(ValueError, match="3 leads but the preprocessor names 12"):
        model(np.zeros((1, 20, 3), "float32"))


def test_saved_model_round_trip_with_preprocessor(tmp_path):
    rng = np.random.default_rng(4)
    preprocessor = ECGPreprocessor(
        sampling_rate=500,
        lead_names=("II", "V1", "aVR"),
        mean=rng.normal(size=3),
        std=rng.uniform(0.5, 1.5, size=3),
        window_seconds=2.0,
        stride_seconds=0.5,
        aggregation="max",
    )
    model = _with_metadata(
        XResNet1D(pooling=None, **TINY), preprocessor, use_batch_norm=True
    )
    x = rng.normal(size=(2, 40, 3)).astype("float32")
    model(x)
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    rebuilt = assert_config_round_trip(model)
    restored = assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)
    for other in (rebuilt, restored):
        assert isinstance(other.preprocessor, ECGPreprocessor)
        assert other.preprocessor.get_config() == preprocessor.get_config()
        assert other.class_names == tuple(CLASS_NAMES)
        assert other.class_descriptions[1] == "myocardial infarction"
        assert (other.label_set, other.label_vocabulary) == ("superdiagnostic", "scp")
    assert restored.preprocessor.window_length == 1000


def test_configs_without_metadata_still_load(tmp_path):
    model = ECGClassifier(_sequence_backbone(), num_classes=2)
    config = model.get_config()
    for key in (
        "preprocessor",
        "class_names",
        "class_descriptions",
        "label_set",
        "label_vocabulary",
    ):
        assert config.pop(key) is None
    rebuilt = ECGClassifier.from_config(config)
    assert rebuilt.preprocessor is None and rebuilt.class_names is None
    assert rebuilt.column_names() == ["class_0", "class_1"]


def _ptbxl(ptbxl_dir, rate, ids=PTBXL_IDS):
    return [ptbxl_header(ptbxl_dir, i, rate) for i in ids]


def _np_predict_records(model, signals, preprocessor):
    """Windows -> numpy forward pass -> sigmoid -> mean/max, all in numpy."""
    kernel, bias = model.backbone.get_layer("proj").get_weights()
    head_kernel, head_bias = model.head_denses[0].get_weights()
    mean, std = np.asarray(preprocessor.mean), np.asarray(preprocessor.std)
    reduce = {"mean": np.mean, "max": np.max}[preprocessor.aggregation]
    rows = []
    for signal in signals:
        x = (signal - mean) / std
        starts = range(0, len(x) - 250 + 1, 125)
        windows = np.stack([x[s : s + 250] for s in starts])  # (7, 250, 12)
        h = windows @ kernel + bias
        pooled = np.concatenate([h.max(1), h.mean(1)], -1)  # concat pooling
        probabilities = 1.0 / (1.0 + np.exp(-(pooled @ head_kernel + head_bias)))
        rows.append(reduce(probabilities, axis=0))
    return np.stack(rows)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_predict_records_matches_numpy_at_100_and_500_hz(ptbxl_dir, aggregation):
    signals = [wfdb.rdsamp(str(h.with_suffix("")))[0] for h in _ptbxl(ptbxl_dir, 100)]
    stacked = np.concatenate(signals)
    preprocessor = ECGPreprocessor(
        100, mean=stacked.mean(0), std=stacked.std(0), aggregation=aggregation
    )
    model = _with_metadata(_dense_backbone(), preprocessor)
    scores = model.predict_records(_ptbxl(ptbxl_dir, 100), batch_size=5)
    assert list(scores.columns) == ["record_id", *CLASS_NAMES]
    assert list(scores["record_id"]) == [f"{i}_lr" for i in PTBXL_IDS]
    expected = _np_predict_records(model, signals, preprocessor)
    np.testing.assert_allclose(scores[CLASS_NAMES], expected, rtol=1e-5, atol=1e-6)

    # The same records at 500 Hz are resampled to 100 Hz first. PTB-XL's own
    # 100 Hz files come from a different downsampling filter (see
    # ecg_preprocessor_test), so the probabilities agree closely but not
    # exactly. Measured over 40 records and 3 random models: |diff| <= 0.032
    # (mean 0.004) with "mean" aggregation; "max" follows the single most
    # extreme window and reaches 0.12 (mean 0.007). Feeding the 500 Hz samples
    # as if they were 100 Hz moves them by 0.09 ("mean") / 0.16 ("max") on
    # average, which the last check guards.
    at_500 = model.predict_records(_ptbxl(ptbxl_dir, 500))
    diff = np.abs(at_500[CLASS_NAMES].to_numpy() - expected)
    max_tol, mean_tol = {"mean": (0.05, 0.01), "max": (0.15, 0.02)}[aggregation]
    assert diff.max() < max_tol and diff.mean() < mean_tol, diff
    hr_signals = [
        wfdb.rdsamp(str(h.with_suffix("")))[0] for h in _ptbxl(ptbxl_dir, 500)
    ]
    wrong_rate = ECGDataset(hr_signals, list(PTBXL_IDS), sampling_rate=100)
    control = model.predict_records(wrong_rate)[CLASS_NAMES].to_numpy()
    assert np.abs(control - expected).mean() > 5 * diff.mean()


def test_predict_records_threshold_and_column_names(ptbxl_dir):
    model = _with_metadata(_dense_backbone(), ECGPreprocessor(100))
    records = _ptbxl(ptbxl_dir, 100, PTBXL_IDS[:2])
    scores = model.predict_records(records)
    probabilities = scores[CLASS_NAMES].to_numpy()
    thresholded = model.predict_records(records, threshold=0.5)
    assert list(thresholded.columns) == (
        ["record_id", *CLASS_NAMES] + [f"{c}_pred" for c in CLASS_NAMES]
    )
    np.testing.assert_array_equal(thresholded[CLASS_NAMES], probabilities)
    positives = thresholded[[f"{c}_pred" for c in CLASS_NAMES]].to_numpy()
    assert positives.dtype == bool
    np.testing.assert_array_equal(positives, probabilities >= 0.5)
    per_class = [0.0, 1.0, float(probabilities[0, 2])]
    positives = model.predict_records(records, threshold=per_class).iloc[:, 4:]
    np.testing.assert_array_equal(positives.iloc[:, 0], [True, True])
    np.testing.assert_array_equal(positives.iloc[:, 1], probabilities[:, 1] >= 1.0)
    assert positives.iloc[0, 2]  # >= is inclusive
    for bad in (1.5, [0.5, 0.5], np.nan):
        with pytest.raises(ValueError, match="threshold"):
            model.predict_records(records, threshold=bad)

    unnamed = ECGClassifier(_dense_backbone(), 2, preprocessor=ECGPreprocessor(100))
    columns = list(unnamed.predict_records(records).columns)
    assert columns == ["record_id", "class_0", "class_1"]


def test_predict_records_needs_a_preprocessor_and_logits(ptbxl_dir):
    records = _ptbxl(ptbxl_dir, 100, PTBXL_IDS[:1])
    with pytest.raises(ValueError, match="no preprocessor|has none"):
        ECGClassifier(_dense_backbone(), 2).predict_records(records)
    sigmoid = ECGClassifier(
        _dense_backbone(), 2, activation="sigmoid", preprocessor=ECGPreprocessor()
    )
    with pytest.raises(ValueError, match="logits"):
        sigmoid.predict_records(records)


_FRESH_PROCESS = r"""
import json, sys
import keras
import numpy as np
import keras_ecg  # registers the serializable classes

path, folder, out = json.loads(sys.argv[1])
model = keras.saving.load_model(path)
assert isinstance(model, keras_ecg.ECGClassifier)
assert isinstance(model.preprocessor, keras_ecg.ECGPreprocessor)
scores = model.predict_records(folder)
np.savez(out, ids=np.asarray(scores["record_id"], dtype=str),
         columns=np.asarray(scores.columns[1:], dtype=str),
         probabilities=scores.iloc[:, 1:].to_numpy())
print("PREDICTED", keras.backend.backend())
"""

# Each backend's pass loads under the next one: every pair is covered once.
_OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_trained_classifier_predicts_in_a_fresh_process_under_another_backend(
    ptbxl_dir, tmp_path
):
    folder = tmp_path / "records"
    for header in _ptbxl(ptbxl_dir, 100, PTBXL_IDS[:3]):
        link_record(header, folder)
    standardizer = LeadStandardizer().fit(ECGPreprocessor(100).prepare(folder))
    preprocessor = ECGPreprocessor.from_standardizer(standardizer, 100)
    # A Dense backbone keeps JAX's compile short; the head's BatchNorm brings
    # trained moving statistics into the file.
    model = _with_metadata(_dense_backbone(), preprocessor, use_batch_norm=True)
    train = preprocessor.prepare(folder)
    x = np.stack([s[:250] for s in train.signals] + [s[-250:] for s in train.signals])
    y = np.tile(np.eye(3, dtype="float32"), (2, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=3, epochs=2, verbose=0)
    expected = model.predict_records(folder)
    path = str(tmp_path / "classifier.keras")
    model.save(path)

    backend = _OTHER_BACKEND[keras.backend.backend()]
    out = str(tmp_path / "scores.npz")
    process = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, json.dumps([path, str(folder), out])],
        env=subprocess_env(backend),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    assert f"PREDICTED {backend}" in process.stdout
    loaded = np.load(out)
    assert list(loaded["ids"]) == ["00001_lr", "00002_lr", "00003_lr"]
    assert list(loaded["columns"]) == CLASS_NAMES
    np.testing.assert_allclose(
        loaded["probabilities"], expected[CLASS_NAMES], rtol=1e-4, atol=1e-5
    )
