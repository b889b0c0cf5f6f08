"""Bootstrap confidence intervals for macro AUROC / AUPRC, and paired differences.

Test records are resampled with replacement; every resample scores each model
on the same records, so a difference between two models (or two protocols) is
judged on paired resamples, not on two independent intervals. Percentile
intervals, as the PTB-XL benchmarks report them (Strodthoff et al. 2021;
AI4HealthUOL/ecg-fm-benchmarking).

A class counts in the full-set macro average when it has positives and
negatives among the test records (as `macro_auc`); within a resample, such a
class that drew no positive (or no negative) is left out of that resample's
mean instead of rejecting the resample, which rare classes would make
near-certain.

Average precision is not symmetric under resampling: a resample repeats
some positives (a repeated record ties with itself, so precision at its rank
rises) and rare classes keep few distinct positives, both of which raise AP.
On small test sets (tens of records, classes with 1-3 positives) the
percentile interval of macro AUPRC can therefore lie above its point
estimate; AUROC, a rank statistic over positive-negative pairs, has no such
shift. Read AUPRC intervals of small test sets as indicative.
"""

import warnings

import numpy as np

from keras_ecg.evaluation.metrics import _validate

METRICS = ("macro_auroc", "macro_auprc")


def bootstrap_resamples(num_samples, num_resamples=1000, seed=0):
    """`(num_resamples, num_samples)` record indices drawn with replacement.

    Args:
        num_samples: number of test records.
        num_resamples: number of bootstrap resamples.
        seed: seed of the numpy generator; the same seed gives the same
            resamples, so intervals of different models are paired.

    Example:

    ```python
    indices = bootstrap_resamples(len(test), num_resamples=1000, seed=0)
    ```
    """
    if num_samples < 1:
        raise ValueError(f"No samples to resample (got {num_samples}).")
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be >= 1, got {num_resamples}.")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_samples, size=(num_resamples, num_samples))


def _counts(resamples, num_samples):
    """`(R, n)` multiplicity of every record in every resample."""
    num_resamples = len(resamples)
    offsets = num_samples * np.arange(num_resamples)[:, None]
    flat = np.bincount(
        (resamples + offsets).ravel(), minlength=num_resamples * num_samples
    )
    return flat.reshape(num_resamples, num_samples).astype(np.float64)


def _tie_groups(sorted_scores):
    """First and last sorted position of the tie group of every position."""
    n = len(sorted_scores)
    positions = np.broadcast_to(np.arange(n)[:, None], sorted_scores.shape)
    starts = np.ones(sorted_scores.shape, dtype=bool)
    starts[1:] = sorted_scores[1:] != sorted_scores[:-1]
    ends = np.ones(sorted_scores.shape, dtype=bool)
    ends[:-1] = starts[1:]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=0)
    last = np.flip(
        np.minimum.accumulate(np.flip(np.where(ends, positions, n - 1), 0), axis=0),
        0,
    )
    return first, last


def _sorted_weights(y_true, y_score, counts, descending):
    """Per-class sorted order; positive / all weights `(R, n, C)` in that order."""
    order = np.argsort(-y_score if descending else y_score, axis=0, kind="stable")
    scores = np.take_along_axis(y_score, order, axis=0)
    labels = np.take_along_axis(y_true, order, axis=0)
    weights = counts[:, order]  # (R, n, C)
    return scores, weights * labels, weights


def _gather(cumulative, index):
    index = np.broadcast_to(index[None], cumulative.shape[:1] + index.shape)
    return np.take_along_axis(cumulative, index, axis=1)


def _per_class_auroc(y_true, y_score, counts):
    """Weighted Mann-Whitney AUC `(R, C)`: each resample is the original records
    weighted by their multiplicity; ties count one half. NaN if undefined."""
    scores, positive, weights = _sorted_weights(y_true, y_score, counts, False)
    first, last = _tie_groups(scores)
    negative = weights - positive
    zeros = np.zeros(negative.shape[:1] + (1,) + negative.shape[2:])
    cumulative = np.concatenate([zeros, np.cumsum(negative, axis=1)], axis=1)
    below = _gather(cumulative, first)
    tied = _gather(cumulative, last + 1) - below
    num_pos, num_neg = positive.sum(axis=1), negative.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (positive * (below + 0.5 * tied)).sum(axis=1) / (num_pos * num_neg)
    return np.where((num_pos > 0) & (num_neg > 0), auc, np.nan)


def _per_class_auprc(y_true, y_score, counts):
    """Weighted average precision `(R, C)`, as scikit-learn's
    `average_precision_score` on the resampled records (tied scores form one
    threshold). NaN where a class has no positive or no negative."""
    scores, positive, weights = _sorted_weights(y_true, y_score, counts, True)
    _, last = _tie_groups(scores)
    true_pos = _gather(np.cumsum(positive, axis=1), last)
    predicted = _gather(np.cumsum(weights, axis=1), last)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_pos / predicted, 0.0)
    num_pos = positive.sum(axis=1)
    num_neg = weights.sum(axis=1) - num_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = (positive * precision).sum(axis=1) / num_pos
    return np.where((num_pos > 0) & (num_neg > 0), ap, np.nan)


_PER_CLASS = {"macro_auroc": _per_class_auroc, "macro_auprc": _per_class_auprc}


def _stack_scores(y_true, y_score):
    """`(models, n, C)` float64 scores, validated against `y_true`."""
    y_score = np.asarray(y_score, dtype=np.float64)
    stacked = y_score[None] if y_score.ndim == 2 else y_score
    if stacked.ndim != 3:
        raise ValueError(
            "`y_score` must be (num_samples, num_classes) or (num_runs, "
            f"num_samples, num_classes), got shape {y_score.shape}."
        )
    for run in stacked:
        y_true_checked, _ = _validate(y_true, run)
    return y_true_checked, stacked


def _macro(metric, y_true, scores, counts):
    """Macro metric per resample `(R,)`, averaged over the runs in `scores`."""
    per_run = []
    for run in scores:
        with warnings.catch_warnings():
            # A resample of a tiny set may hold no class with both outcomes:
            # NaN there, and left out of the percentiles.
            warnings.simplefilter("ignore", RuntimeWarning)
            per_run.append(np.nanmean(_PER_CLASS[metric](y_true, run, counts), -1))
    return np.mean(per_run, axis=0)


def _resampled_metric(metric, y_true, scores, resamples, chunk_size):
    """Metric per resample `(R,)`, averaged over the runs in `scores`."""
    values = []
    for start in range(0, len(resamples), chunk_size):
        counts = _counts(resamples[start : start + chunk_size], len(y_true))
        values.append(_macro(metric, y_true, scores, counts))
    return np.concatenate(values)


def _point(metric, y_true, scores):
    return float(_macro(metric, y_true, scores, np.ones((1, len(y_true))))[0])


def _check_confidence(confidence):
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")


def _classes_with_both(y_true):
    num_pos = y_true.sum(axis=0)
    keep = (num_pos > 0) & (num_pos < len(y_true))
    if not keep.any():
        raise ValueError(
            "No class has both positive and negative samples; the macro "
            "metrics are undefined."
        )
    return keep


def macro_metrics(y_true, y_score, metrics=METRICS):
    """Point estimates of the macro metrics, with no resampling.

    The values `bootstrap_macro_metrics` reports as `"value"` (same classes,
    same definitions), for a caller that wants AUPRC beside AUROC without
    paying for the intervals.

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets.
        y_score: `(num_samples, num_classes)` scores, or `(num_runs,
            num_samples, num_classes)` (mean over runs).
        metrics: any of `"macro_auroc"`, `"macro_auprc"`.

    Returns:
        `{metric: value}` plus `"num_classes"` (classes with positives and
        negatives, the ones averaged).

    Example:

    ```python
    macro_metrics(test.labels, scores)["macro_auprc"]
    ```
    """
    y_true, scores = _stack_scores(y_true, y_score)
    keep = _classes_with_both(y_true)
    y_true, scores = y_true[:, keep], scores[..., keep]
    result = {"num_classes": int(keep.sum())}
    for metric in metrics:
        if metric not in _PER_CLASS:
            raise ValueError(f"Unknown metric {metric!r}; choose from {METRICS}.")
        result[metric] = _point(metric, y_true, scores)
    return result


def _setup(y_true, y_scores, num_resamples, confidence, seed, metrics):
    """Validated targets and `(runs, n, C)` scores of the classes with both
    outcomes, the resamples, and the result's header."""
    _check_confidence(confidence)
    for metric in metrics:
        if metric not in _PER_CLASS:
            raise ValueError(f"Unknown metric {metric!r}; choose from {METRICS}.")
    stacked = []
    for y_score in y_scores:
        checked, scores = _stack_scores(y_true, y_score)
        stacked.append(scores)
    keep = _classes_with_both(checked)
    header = {
        "num_resamples": int(num_resamples),
        "confidence": float(confidence),
        "num_classes": int(keep.sum()),
    }
    resamples = bootstrap_resamples(len(checked), num_resamples, seed)
    return checked[:, keep], [s[..., keep] for s in stacked], resamples, header


def bootstrap_macro_metrics(
    y_true,
    y_score,
    num_resamples=1000,
    confidence=0.95,
    seed=0,
    metrics=METRICS,
    chunk_size=100,
):
    """Macro AUROC / AUPRC with percentile bootstrap confidence intervals.

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets, one row per
            test record.
        y_score: `(num_samples, num_classes)` scores, or `(num_runs,
            num_samples, num_classes)` for several runs (e.g. seeds) of one
            model on the same records: the metric is then the mean over runs,
            and the interval covers the resampling of test records.
        num_resamples: bootstrap resamples (at least 1000 for a reported
            interval).
        confidence: two-sided coverage of the interval.
        seed: seed of the resampling; use the same seed for every model of a
            table so that their intervals and differences are paired.
        metrics: any of `"macro_auroc"`, `"macro_auprc"`.
        chunk_size: resamples scored at once (bounds memory).

    Returns:
        `{metric: {"value", "low", "high"}}` plus `"num_resamples"`,
        `"confidence"` and `"num_classes"` (classes with positives and
        negatives, the ones averaged).

    Example:

    ```python
    result = bootstrap_macro_metrics(test.labels, scores, seed=0)
    auc = result["macro_auroc"]
    print(f"{auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]")
    ```
    """
    y_true, (scores,), resamples, result = _setup(
        y_true, (y_score,), num_resamples, confidence, seed, metrics
    )
    tail = 100 * (1 - confidence) / 2
    for metric in metrics:
        point = _point(metric, y_true, scores)
        values = _resampled_metric(metric, y_true, scores, resamples, chunk_size)
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        result[metric] = {
            "value": float(point),
            "low": float(low),
            "high": float(high),
        }
    return result


def paired_bootstrap(
    y_true,
    y_score_a,
    y_score_b,
    num_resamples=1000,
    confidence=0.95,
    seed=0,
    metrics=METRICS,
    chunk_size=100,
):
    """Difference A - B of macro metrics with a paired bootstrap interval.

    Both models are scored on the same resamples of the test records, so the
    interval reflects the difference itself, not two overlapping intervals.

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets.
        y_score_a: scores of model A, `(num_samples, num_classes)` or
            `(num_runs, num_samples, num_classes)` (mean over runs).
        y_score_b: scores of model B, same layout (the number of runs may
            differ).
        num_resamples: bootstrap resamples.
        confidence: two-sided coverage of the interval.
        seed: seed of the resampling.
        metrics: any of `"macro_auroc"`, `"macro_auprc"`.
        chunk_size: resamples scored at once.

    Returns:
        `{metric: {"difference", "low", "high", "excludes_zero"}}` plus
        `"num_resamples"`, `"confidence"` and `"num_classes"`.

    Example:

    ```python
    diff = paired_bootstrap(test.labels, finetuned_scores, scratch_scores)
    if diff["macro_auroc"]["excludes_zero"]:
        print("finetuning differs from scratch beyond resampling noise")
    ```
    """
    y_true, (scores_a, scores_b), resamples, result = _setup(
        y_true, (y_score_a, y_score_b), num_resamples, confidence, seed, metrics
    )
    tail = 100 * (1 - confidence) / 2
    for metric in metrics:
        point = _point(metric, y_true, scores_a) - _point(metric, y_true, scores_b)
        values = _resampled_metric(
            metric, y_true, scores_a, resamples, chunk_size
        ) - _resampled_metric(metric, y_true, scores_b, resamples, chunk_size)
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        result[metric] = {
            "difference": float(point),
            "low": float(low),
            "high": float(high),
            "excludes_zero": bool(low > 0 or high < 0),
        }
    return result


def format_interval(entry, digits=3):
    """`"0.912 [0.894, 0.929]"` from a `{"value"|"difference", "low", "high"}`."""
    value = entry["value"] if "value" in entry else entry["difference"]
    sign = "+" if "difference" in entry else ""
    return (
        f"{value:{sign}.{digits}f} [{entry['low']:{sign}.{digits}f}, "
        f"{entry['high']:{sign}.{digits}f}]"
    )
