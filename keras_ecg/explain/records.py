"""Which leads and which part of the beat drove a classifier's prediction.

Integrated gradients over the same sliding windows `predict_records` scores,
mapped back onto the record's time axis.
"""

import dataclasses

import numpy as np

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.pipelines import window_starts
from keras_ecg.explain.attributions import DEFAULT_STEPS
from keras_ecg.explain.attributions import integrated_gradients
from keras_ecg.explain.attributions import pad_batch
from keras_ecg.explain.gradients import TARGETS

DEFAULT_TOP_K = 3
BASELINES = ("zero", "mean")


@dataclasses.dataclass
class Explanation:
    """Integrated-gradients attributions of one record's prediction.

    Everything is at the model's sampling rate and in its lead order: the
    record after the preprocessor's resampling and lead selection, in mV.

    Attributes:
        record_id: the record's identifier.
        signal: `(timesteps, leads)` float32, the record as the model saw it,
            in mV (before standardisation).
        sampling_rate: samples per second of `signal` (the model's rate).
        lead_names: the model's lead order.
        class_names: the `K` explained classes, highest probability first
            unless chosen explicitly.
        class_indices: their output indices, `(K,)` int.
        probabilities: `(num_classes,)` float32, the record's probabilities
            for every class, as `predict_records` computes them.
        attributions: `(K, timesteps, leads)` float32, attribution of every
            sample to each explained class, in units of `target`; positive
            values pushed the output up from the baseline's.
        lead_shares: `(K, leads)` float32, each lead's share of the absolute
            attribution of a class (rows sum to 1; NaN when a record equals
            its baseline and every attribution is 0).
        outputs: `(K,)` the record-level `target` at the record.
        baseline_outputs: `(K,)` the record-level `target` at the baseline;
            `attributions[k].sum()` approximates `outputs[k] -
            baseline_outputs[k]` (completeness; exact as `steps` grows).
        target: `"probability"` or `"logit"`.
        steps: integration steps used.
    """

    record_id: str
    signal: np.ndarray
    sampling_rate: float
    lead_names: tuple
    class_names: list
    class_indices: np.ndarray
    probabilities: np.ndarray
    attributions: np.ndarray
    lead_shares: np.ndarray
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    target: str
    steps: int


def explain_record(
    model,
    signal,
    sampling_rate,
    lead_names=STANDARD_LEADS,
    classes=None,
    top_k=None,
    steps=DEFAULT_STEPS,
    baseline="zero",
    target="probability",
    batch_size=256,
    record_id="record",
):
    """Integrated-gradients explanation of a classifier's prediction for a record.

    The record goes through the classifier's `ECGPreprocessor` as in
    `ECGClassifier.predict_records` (resampling to the model's rate, lead
    selection, standardisation) and is cut into the same sliding windows.
    With the preprocessor's `"mean"` aggregation, the record's probability is
    the mean of its windows' probabilities, and the straight path from the
    baseline record to the record passes through the straight paths of every
    window: the integrated gradients of the record's probability are exactly
    each window's integrated gradients, placed at the window's samples,
    summed where windows overlap and divided by the number of windows. They
    add up to the record's probability minus the baseline's. With `"max"`
    aggregation each class is attributed through the window that gives its
    probability at the record (the max over windows is not differentiable
    where the argmax changes along the path).

    The default baseline, `"zero"`, is a flat 0 mV signal on every lead (no
    electrical activity): an attribution says how much a sample's deviation
    from the isoelectric line moved the output. `"mean"` is each lead's
    training mean (zeros after standardisation), which for ECG is within a
    few hundredths of a mV of 0.

    Attributions are at the model's rate, not the record's original one: a
    resampled record is explained, and plotted, as the model saw it.

    Args:
        model: an `ECGClassifier` with a preprocessor and logit outputs (as
            for `predict_records`).
        signal: one raw record, `(timesteps, leads)` in mV.
        sampling_rate: samples per second of `signal`.
        lead_names: the names of `signal`'s leads (matched by name to the
            model's).
        classes: class names or output indices to explain, in that order;
            default: the `top_k` most probable classes of this record.
        top_k: how many of the most probable classes to explain (default 3,
            at most the number of classes); not with `classes`.
        steps: integration steps per window (midpoint rule). On a small
            XResNet trained on the synthetic data, 32 steps left
            `|attributions.sum() - (outputs - baseline_outputs)|` below 0.01
            (in probability; 64 steps: below 0.003).
        baseline: `"zero"` (0 mV), `"mean"` (the training mean of each lead)
            or an array in mV at the model's rate and lead order,
            broadcastable to the resampled record (`(leads,)` or
            `(timesteps, leads)`).
        target: `"probability"` (the sigmoid output `predict_records`
            reports) or `"logit"` (then the mean of the window logits).
        batch_size: windows per gradient call.
        record_id: a name for the record, kept in the result.

    Returns:
        An `Explanation`.

    Example:

    ```python
    model = keras.saving.load_model("classifier.keras")
    signal, fields = wfdb.rdsamp("records500/00000/00001_hr")
    explanation = keras_ecg.explain.explain_record(
        model, signal, fields["fs"], lead_names=fields["sig_name"], top_k=2
    )
    explanation.class_names, explanation.lead_shares.round(2)
    keras_ecg.explain.plot_explanation(explanation, path="00001.png")
    ```
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 2:
        raise ValueError(
            f"signal must be one record of shape (timesteps, leads), got shape "
            f"{signal.shape}."
        )
    data = ECGDataset(
        signals=[signal],
        record_ids=[record_id],
        sampling_rate=sampling_rate,
        lead_names=tuple(lead_names),
    )
    return next(
        explain_records(
            model,
            data,
            classes=classes,
            top_k=top_k,
            steps=steps,
            baseline=baseline,
            target=target,
            batch_size=batch_size,
        )
    )


def explain_records(
    model,
    records,
    classes=None,
    top_k=None,
    steps=DEFAULT_STEPS,
    baseline="zero",
    target="probability",
    batch_size=256,
    on_error="raise",
):
    """Explanations of a classifier's predictions for many records, lazily.

    The records are read and checked at the call; each explanation is
    computed as the returned iterator reaches it.

    Args:
        model: an `ECGClassifier` with a preprocessor and logit outputs.
        records: whatever `ECGClassifier.predict_records` takes: an
            `ECGDataset`, a folder, record files or a list of them.
        classes, top_k, steps, baseline, target, batch_size: as for
            `explain_record`.
        on_error: `"raise"` or `"skip"` unreadable records.

    Returns:
        An iterator of one `Explanation` per (kept) record, in input order.

    Example:

    ```python
    for explanation in explain_records(model, "new_records/", top_k=2):
        plot_explanation(explanation, path=f"{explanation.record_id}.png")
    ```
    """
    # Checked here, not at the first `next()`: a generator would defer them.
    preprocessor = _check_model(model)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}.")
    if isinstance(baseline, str) and baseline not in BASELINES:
        raise ValueError(
            f"baseline must be one of {BASELINES} or an array in mV, got {baseline!r}."
        )
    fixed = _class_indices(model, classes, top_k)
    k = min(DEFAULT_TOP_K if top_k is None else int(top_k), model.num_classes)
    data = preprocessor.prepare(records, on_error=on_error, standardize=False)
    settings = (fixed, k, int(steps), baseline, target, int(batch_size))
    return (
        _explain_prepared(
            model, np.asarray(signal, dtype=np.float32), str(record_id), *settings
        )
        for record_id, signal in zip(data.record_ids, data.signals, strict=True)
    )


def lead_shares(attributions):
    """Each lead's share of the absolute attribution, `(..., T, L) -> (..., L)`.

    NaN where every attribution is 0.
    """
    magnitude = np.abs(np.asarray(attributions, dtype=np.float64)).sum(axis=-2)
    total = magnitude.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (magnitude / total).astype(np.float32)


def _check_model(model):
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None or not hasattr(model, "num_classes"):
        raise ValueError(
            "keras_ecg.explain needs an ECGClassifier with a preprocessor (the "
            "rate, leads, statistics and windows it was trained with), as "
            "ECGClassifier.predict_records does."
        )
    if getattr(model, "activation", None) not in (None, "linear"):
        raise ValueError(
            "keras_ecg.explain applies the sigmoid itself and needs a classifier "
            f"that outputs logits, not activation={model.activation!r}."
        )
    return preprocessor


def _class_indices(model, classes, top_k):
    """The fixed output indices to explain, or None to rank per record."""
    num_classes = model.num_classes
    if classes is None:
        if top_k is not None and not 1 <= int(top_k) <= num_classes:
            raise ValueError(
                f"top_k must be in 1..{num_classes} (the model's number of "
                f"classes), got {top_k}."
            )
        return None
    if top_k is not None:
        raise ValueError("pass `classes` or `top_k`, not both.")
    names = list(model.column_names())
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]
    indices = []
    for item in classes:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < num_classes:
                raise ValueError(
                    f"class index {item} is out of range 0..{num_classes - 1}."
                )
            indices.append(int(item))
        elif str(item) in names:
            indices.append(names.index(str(item)))
        else:
            raise ValueError(f"unknown class {item!r}; the model's classes: {names}.")
    if not indices:
        raise ValueError("`classes` is empty.")
    if len(set(indices)) != len(indices):
        raise ValueError(f"`classes` names a class twice: {list(classes)}.")
    return np.asarray(indices, dtype=np.int64)


def _baseline_record(baseline, preprocessor, shape):
    if isinstance(baseline, str):
        if baseline == "zero" or (baseline == "mean" and preprocessor.mean is None):
            return np.zeros(shape, dtype=np.float32)
        if baseline == "mean":
            return np.broadcast_to(
                np.asarray(preprocessor.mean, dtype=np.float32), shape
            ).copy()
        raise ValueError(
            f"baseline must be one of {BASELINES} or an array in mV, got {baseline!r}."
        )
    values = np.asarray(baseline, dtype=np.float32)
    try:
        return np.broadcast_to(values, shape).copy()
    except ValueError:
        raise ValueError(
            f"a baseline array must broadcast to the record at the model's rate "
            f"and leads, {shape}; got shape {values.shape}."
        ) from None


def _probabilities(model, windows, batch_size):
    """Sigmoid of the window logits, `(num_windows, num_classes)` float64."""
    logits = []
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        outputs = model.predict_on_batch(pad_batch(chunk, batch_size))
        logits.append(np.asarray(outputs)[: len(chunk)])
    logits = np.concatenate(logits).astype(np.float64)
    return logits, 1.0 / (1.0 + np.exp(-logits))


def _explain_prepared(
    model, signal, record_id, fixed, top_k, steps, baseline, target, batch_size
):
    """The explanation of one record already at the model's rate and leads (mV)."""
    preprocessor = model.preprocessor
    length, window = len(signal), preprocessor.window_length
    starts = window_starts(length, window, preprocessor.stride)
    reference = _baseline_record(baseline, preprocessor, signal.shape)
    # Standardised windows: the model's input space.
    cut = np.stack([signal[s : s + window] for s in starts])
    inputs = preprocessor.standardize(cut)
    baselines = preprocessor.standardize(
        np.stack([reference[s : s + window] for s in starts])
    )
    logits, window_probabilities = _probabilities(model, inputs, batch_size)
    baseline_logits, baseline_probabilities = _probabilities(
        model, baselines, batch_size
    )
    mean = preprocessor.aggregation == "mean"
    if mean:
        probabilities = window_probabilities.mean(axis=0)
    else:
        probabilities = window_probabilities.max(axis=0)
    if fixed is None:
        # Stable: ties keep the class order of the CSV columns.
        indices = np.argsort(-probabilities, kind="stable")[:top_k]
    else:
        indices = fixed
    num_windows, k = len(starts), len(indices)
    if mean:
        # Every window, for every class.
        chosen_windows = np.repeat(np.arange(num_windows), k)
        chosen_classes = np.tile(indices, num_windows)
    else:
        # The window giving the max, per class.
        chosen_windows = np.argmax(window_probabilities[:, indices], axis=0)
        chosen_classes = indices
    window_attributions = integrated_gradients(
        model,
        inputs[chosen_windows],
        chosen_classes,
        baselines=baselines[chosen_windows],
        steps=steps,
        target=target,
        batch_size=batch_size,
    )
    attributions = np.zeros((k,) + signal.shape, dtype=np.float64)
    rank = {int(c): r for r, c in enumerate(indices)}
    for row, (w, c) in enumerate(zip(chosen_windows, chosen_classes, strict=True)):
        start = starts[w]
        attributions[rank[int(c)], start : start + window] += window_attributions[row]
    if target == "probability":
        values, at_baseline = window_probabilities, baseline_probabilities
    else:
        values, at_baseline = logits, baseline_logits
    if mean:
        attributions /= num_windows
        outputs = values[:, indices].mean(axis=0)
        baseline_outputs = at_baseline[:, indices].mean(axis=0)
    else:
        columns = np.arange(k)
        outputs = values[chosen_windows][columns, indices]
        baseline_outputs = at_baseline[chosen_windows][columns, indices]
    names = model.column_names()
    return Explanation(
        record_id=record_id,
        signal=signal,
        sampling_rate=preprocessor.sampling_rate,
        lead_names=tuple(preprocessor.lead_names),
        class_names=[names[i] for i in indices],
        class_indices=np.asarray(indices, dtype=np.int64),
        probabilities=probabilities.astype(np.float32),
        attributions=attributions.astype(np.float32),
        lead_shares=lead_shares(attributions),
        outputs=np.asarray(outputs, dtype=np.float32),
        baseline_outputs=np.asarray(baseline_outputs, dtype=np.float32),
        target=target,
        steps=steps,
    )
