"""Per-record probabilities from sliding-window predictions.

Validation, test and `ECGClassifier.predict_records` all score a record the
same way: sliding windows (2.5 s, stride 1.25 s by default, a last
end-aligned window covering the tail) are predicted in batches, and the
sigmoid outputs of a record's windows are averaged (or maxed) per record, as
in Mehari & Strodthoff (2022). Every duration is given in seconds and
converted with the data's sampling rate.
"""

import numpy as np

from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.inference.window_aggregation import aggregate_windows

# The paper's input: 2.5 s windows, evaluated with a stride of half a window.
WINDOW_SECONDS = 2.5
STRIDE_SECONDS = 1.25


def window_lengths(data, window_seconds=None, stride_seconds=None):
    """`(window, stride)` in samples at `data`'s sampling rate.

    Args:
        data: an `ECGDataset` (its `sampling_rate` is read).
        window_seconds: window duration; default `WINDOW_SECONDS`.
        stride_seconds: stride between windows; default half a window.
    """
    window_seconds = WINDOW_SECONDS if window_seconds is None else window_seconds
    if stride_seconds is None:
        stride_seconds = window_seconds / 2
    rate = data.sampling_rate
    return (
        seconds_to_samples(window_seconds, rate, "window_seconds"),
        seconds_to_samples(stride_seconds, rate, "stride_seconds"),
    )


def window_batches(data, window_seconds, stride_seconds, batch_size, standardizer):
    """`(dataset, record_index)` of the sliding windows of `data`.

    Built once, the pipeline can be predicted on again and again
    (`predict_windows`), e.g. at every epoch.
    """
    # tf.data, imported on first use: `keras_ecg.models` (which imports this
    # module) must import without TensorFlow (tests/optional_dependencies_test).
    from keras_ecg.data.pipelines import make_window_dataset

    window_length, stride = window_lengths(data, window_seconds, stride_seconds)
    return make_window_dataset(
        data,
        labels=None,
        window_length=window_length,
        stride=stride,
        batch_size=batch_size,
        standardizer=standardizer,
    )


def predict_windows(model, windows, aggregation="mean"):
    """Per-record sigmoid probabilities of `model` on `window_batches(...)`.

    Returns:
        A `(num_records, num_classes)` float32 array.
    """
    dataset, record_index = windows
    logits = model.predict(dataset, verbose=0)
    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return aggregate_windows(probabilities, record_index, method=aggregation).astype(
        np.float32
    )


def predict_records(
    model,
    data,
    window_seconds=None,
    stride_seconds=None,
    batch_size=256,
    aggregation="mean",
    standardizer=None,
):
    """Per-record probabilities from sliding-window predictions.

    Args:
        model: a classifier returning logits for `(batch, window, leads)`.
        data: an `ECGDataset` at the model's rate and lead order, already
            standardised, or in mV with `standardizer`.
        window_seconds: window duration; default 2.5 s.
        stride_seconds: stride between windows; default half a window.
        batch_size: windows per prediction batch.
        aggregation: `"mean"` (the paper's) or `"max"` over a record's windows.
        standardizer: optional fitted `LeadStandardizer` (or
            `ECGPreprocessor`) applied to every window in the input pipeline,
            so that no standardised copy of `data` is made.

    Returns:
        A `(num_records, num_classes)` float32 array of sigmoid probabilities.
    """
    windows = window_batches(
        data, window_seconds, stride_seconds, batch_size, standardizer
    )
    return predict_windows(model, windows, aggregation)
