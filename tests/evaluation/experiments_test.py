import keras
import numpy as np
import pytest

from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.experiments import add_physiological_noise
from keras_ecg.evaluation.experiments import label_fraction_subset
from keras_ecg.evaluation.experiments import robustness_table
from keras_ecg.layers.augmentation.presets import physiological_noise
from keras_ecg.models.ecg_classifier import ECGClassifier


@pytest.fixture(scope="module")
def data():
    return make_synthetic_ecg(num_records=12, duration_s=2.0, seed=0)


@pytest.mark.backend_agnostic
def test_label_fraction_subsets_are_nested(data):
    ids = {
        f: label_fraction_subset(data, f, seed=3).record_ids
        for f in (0.05, 0.25, 0.5, 1.0)
    }
    assert [len(ids[f]) for f in (0.05, 0.25, 0.5, 1.0)] == [1, 3, 6, 12]
    for small, large in ((0.05, 0.25), (0.25, 0.5), (0.5, 1.0)):
        assert set(ids[small]) <= set(ids[large])
    assert ids[1.0] == data.record_ids
    again = label_fraction_subset(data, 0.5, seed=3)
    assert again.record_ids == ids[0.5]
    # Records keep their own labels and signals, in dataset order.
    positions = [data.record_ids.index(r) for r in again.record_ids]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(again.labels, data.labels[positions])
    np.testing.assert_array_equal(again.signals[0], data.signals[positions[0]])
    others = {
        tuple(label_fraction_subset(data, 0.5, seed=s).record_ids) for s in (0, 1, 2)
    }
    assert len(others) > 1
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            label_fraction_subset(data, bad)


def test_physiological_noise_applies_the_noise_stack(data):
    original = [s.copy() for s in data.signals]
    noisy = add_physiological_noise(data, level=3, seed=7)
    expected = physiological_noise(3, sampling_rate=data.sampling_rate, seed=7)(
        np.stack(original)
    )
    np.testing.assert_allclose(
        np.stack(noisy.signals), keras.ops.convert_to_numpy(expected), atol=1e-5
    )
    assert noisy.record_ids == data.record_ids
    np.testing.assert_array_equal(noisy.labels, data.labels)
    np.testing.assert_array_equal(noisy.folds, data.folds)
    for before, after in zip(original, data.signals):
        np.testing.assert_array_equal(before, after)  # input left untouched
    residual = np.stack(noisy.signals) - np.stack(original)
    assert np.abs(residual).mean() > 1e-3
    with pytest.raises(ValueError, match="level"):
        add_physiological_noise(data, level=7)


@pytest.mark.filterwarnings("ignore:.*excluded from the macro AUC")
def test_robustness_table(data):
    backbone = keras.Sequential(
        [keras.Input((None, 12)), keras.layers.GlobalAveragePooling1D()]
    )
    model = ECGClassifier(backbone, num_classes=data.num_classes)
    standardizer = LeadStandardizer().fit(data)
    kwargs = dict(window_seconds=1.0, stride_seconds=0.5)
    rows = robustness_table(model, data, standardizer=standardizer, seed=1, **kwargs)
    assert [row["noise_level"] for row in rows] == list(range(7))
    assert all(0.0 <= row["macro_auc"] <= 1.0 for row in rows)
    clean = evaluate_records(model, standardizer.transform(data), **kwargs)
    assert rows[0]["macro_auc"] == pytest.approx(clean["macro_auc"], abs=1e-12)
    noisy = evaluate_records(
        model,
        standardizer.transform(add_physiological_noise(data, 4, seed=1)),
        **kwargs,
    )
    assert rows[4]["macro_auc"] == pytest.approx(noisy["macro_auc"], abs=1e-12)
    assert len({row["macro_auc"] for row in rows}) > 1
