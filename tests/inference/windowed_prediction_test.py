import keras
import numpy as np
import pytest

from keras_ecg.inference.windowed_prediction import predict_records
from keras_ecg.inference.windowed_prediction import window_lengths
from keras_ecg.models.ecg_classifier import ECGClassifier
from tests.inference.toy_records import toy_backbone
from tests.inference.toy_records import toy_dataset

_dataset = toy_dataset
_backbone = toy_backbone


def _starts(length, window, stride):
    """Independent restatement of the window grid (+ end-aligned tail)."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def test_predict_records_aggregates_sigmoid_windows():
    data = _dataset(num_records=5, lengths=(100, 90, 120))
    model = ECGClassifier(_backbone(), num_classes=2)
    windows, owner = [], []
    for i, signal in enumerate(data.signals):
        for start in _starts(len(signal), 40, 25):
            windows.append(signal[start : start + 40])
            owner.append(i)
    owner = np.asarray(owner)
    logits = keras.ops.convert_to_numpy(model(np.stack(windows), training=False))
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    for aggregation, reduce in (("mean", np.mean), ("max", np.max)):
        actual = predict_records(
            model,
            data,
            window_seconds=0.4,
            stride_seconds=0.25,
            batch_size=7,
            aggregation=aggregation,
        )
        expected = np.stack(
            [reduce(probabilities[owner == i], axis=0) for i in range(len(data))]
        )
        assert actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate, window, stride", [(100, 40, 20), (500, 200, 100)])
def test_windows_are_seconds_at_any_sampling_rate(rate, window, stride):
    data = _dataset(num_records=4, lengths=(rate,))
    data.sampling_rate = rate
    assert window_lengths(data, 0.4, None) == (window, stride)
