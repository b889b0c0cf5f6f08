"""Aggregation of sliding-window predictions back to one prediction per record."""

import numpy as np

_METHODS = ("mean", "max")


def aggregate_windows(
    window_predictions, record_index, method="mean", num_records=None
):
    """Reduces per-window predictions to per-record predictions.

    The paper evaluates downstream classifiers on windows of the test records
    (`keras_ecg.data.make_window_dataset`) and aggregates their outputs per
    record before scoring.

    Args:
        window_predictions: `(num_windows, ...)` predictions (numpy or any
            array convertible with `np.asarray`).
        record_index: `(num_windows,)` int array; the record position of each
            window (as returned by `make_window_dataset`). Need not be sorted.
        method: `"mean"` or `"max"` over the windows of a record.
        num_records: number of records; defaults to `max(record_index) + 1`.
            Every record must own at least one window.

    Returns:
        A float numpy array `(num_records, ...)` in record order.

    Example:

    ```python
    ds, record_index = make_window_dataset(test, window_length=250, stride=125)
    record_scores = aggregate_windows(model.predict(ds), record_index, "mean")
    ```
    """
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}; got {method!r}.")
    predictions = np.asarray(window_predictions)
    record_index = np.asarray(record_index)
    if record_index.ndim != 1 or not np.issubdtype(record_index.dtype, np.integer):
        raise ValueError(
            "`record_index` must be a 1-D integer array; got shape "
            f"{record_index.shape} and dtype {record_index.dtype}."
        )
    if len(predictions) != len(record_index):
        raise ValueError(
            f"{len(predictions)} window predictions but {len(record_index)} "
            "record indices."
        )
    if len(record_index) == 0:
        raise ValueError("No windows to aggregate.")
    if record_index.min() < 0:
        raise ValueError("`record_index` holds negative record positions.")
    if num_records is None:
        num_records = int(record_index.max()) + 1
    elif record_index.max() >= num_records:
        raise ValueError(
            f"`record_index` refers to record {int(record_index.max())} but "
            f"`num_records={num_records}`."
        )
    counts = np.bincount(record_index, minlength=num_records)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ValueError(
            f"{len(missing)} record(s) have no window (first: position "
            f"{int(missing[0])}); cannot aggregate them."
        )
    if not np.issubdtype(predictions.dtype, np.floating):
        predictions = predictions.astype(np.float64)

    # Group the windows by record with a stable sort, then reduce each segment.
    order = np.argsort(record_index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    grouped = predictions[order]
    if method == "max":
        return np.maximum.reduceat(grouped, starts, axis=0)
    sums = np.add.reduceat(grouped, starts, axis=0, dtype=np.float64)
    counts = counts.reshape((-1,) + (1,) * (predictions.ndim - 1))
    return (sums / counts).astype(predictions.dtype)
