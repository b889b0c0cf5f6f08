"""Bootstrap confidence intervals for macro AUROC / AUPRC, and paired differences.

Test records are resampled with replacement; every resample scores each model
on the same records, so a difference between two models (or two protocols) is
judged on paired resamples, not on two independent intervals.

A class counts in the full-set macro average when it has positives and
negatives among the test records (as `macro_auc`); within a resample, such a
class that drew no positive (or no negative) is left out of that resample's
mean instead of rejecting the resample, which rare classes would make
near-certain (`resampling="conditional"` rejects them instead).

Which interval. Average precision is not symmetric under resampling: a
resample that misses a rare class's positive drops that (usually hard,
low-AP) class from its mean, and a positive drawn again raises precision at
its rank, so the resampled macro AUPRC sits above the full-set value. On the
PTB-XL subset's test fold (245 records, 49 scored classes, 9 with a single
positive) the percentile interval of macro AUPRC lay wholly above its point
estimate. The plug-in macro AP is itself biased upwards on such a fold: with
one positive a class's AP is 1 / its rank, far above the population AP of a
class with prevalence 1/245. `benchmarks/bootstrap_coverage.py` measured the
coverage of the population value (200 simulated test folds shaped like that
fold, 1000 resamples; benchmarks/README.md, "Bootstrap interval coverage"):

| interval | AUROC coverage | AUROC width | AUPRC coverage | AUPRC width |
|---|---|---|---|---|
| percentile | 96.5% | 0.059 | 0.0% | 0.086 |
| basic | 82.5% | 0.059 | 75.0% | 0.086 |
| shifted percentile | 94.0% | 0.059 | 17.5% | 0.086 |
| BCa | 86.5% | 0.058 | 7.0% | 0.046 |
| percentile, conditional resampling | 83.0% | 0.048 | 0.5% | 0.074 |

(The plug-in macro AUPRC there averaged 0.275 against a population 0.214:
+0.061, 2.6 of its standard deviations; the macro AUROC, -0.001.) Hence the
per-metric defaults `DEFAULT_INTERVALS`: the percentile interval for AUROC
(96.5%; the shifted percentile's 94.0% is as close within the simulation's
standard errors), the basic interval `(2 value - q_high, 2 value -
q_low)` for AUPRC, which reflects the resampling shift and so moves the
interval down towards the population value. It is the best measured, at the
percentile's width, but still covers only about 3 times in 4 (it misses
above): read AUPRC intervals of small test sets with rare classes as
optimistic, and the point estimate as biased upwards; a basic AUPRC interval
may lie below its point estimate. BCa fails here because its bias correction
cannot reach beyond the resamples' range (nearly all lie above the estimate);
its jackknife acceleration, where leaving out a single positive drops a
class, probably distorts it too (its AUROC intervals under-cover as well).
"""

import warnings
from statistics import NormalDist

import numpy as np

from keras_ecg.evaluation.metrics import _validate

METRICS = ("macro_auroc", "macro_auprc")
INTERVALS = ("percentile", "basic", "shifted", "bca")
RESAMPLINGS = ("all", "conditional")
# Chosen by benchmarks/bootstrap_coverage.py (module docstring): the interval
# whose simulated coverage came closest to 95% per metric.
DEFAULT_INTERVALS = {"macro_auroc": "percentile", "macro_auprc": "basic"}


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


def conditional_resamples(y_true, num_resamples=1000, seed=0, max_draws=None):
    """Resamples in which every class keeps a positive and a negative record.

    Draws `bootstrap_resamples`-style resamples in batches from one seeded
    generator and keeps those where every column of `y_true` has at least one
    positive and one negative record, until `num_resamples` are kept or
    `max_draws` were drawn (then warns and returns the ones kept).

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets of the scored
            classes (each with both outcomes).
        num_resamples: resamples to keep.
        seed: seed of the numpy generator.
        max_draws: cap on the resamples drawn (default `1000 *
            num_resamples`).

    Returns:
        `(resamples, num_draws)`: `(kept, num_samples)` indices and how many
        resamples were drawn to keep them.

    Example:

    ```python
    resamples, draws = conditional_resamples(test.labels[:, scored], 1000)
    ```
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    num_samples = len(y_true)
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be >= 1, got {num_resamples}.")
    max_draws = 1000 * num_resamples if max_draws is None else int(max_draws)
    rng = np.random.default_rng(seed)
    batch = max(num_resamples, 2**21 // max(num_samples, 1))
    kept, num_kept, draws = [], 0, 0
    while num_kept < num_resamples and draws < max_draws:
        size = min(batch, max_draws - draws)
        drawn = rng.integers(0, num_samples, size=(size, num_samples))
        draws += size
        counts = _counts(drawn, num_samples)
        positives = counts @ y_true
        negatives = counts.sum(axis=1, keepdims=True) - positives
        accepted = drawn[((positives > 0) & (negatives > 0)).all(axis=1)]
        kept.append(accepted[: num_resamples - num_kept])
        num_kept += len(kept[-1])
    resamples = np.concatenate(kept)
    if len(resamples) == 0:
        raise ValueError(
            f"None of {draws} resamples kept a positive and a negative record "
            "of every class; use resampling='all'."
        )
    if len(resamples) < num_resamples:
        warnings.warn(
            f"Conditional resampling kept {len(resamples)} of the "
            f"{num_resamples} requested resamples after the cap of {draws} "
            f"draws (acceptance {len(resamples) / draws:.2%}); the interval "
            "uses the ones kept.",
            RuntimeWarning,
            stacklevel=2,
        )
    return resamples, draws


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


def _weighted_metric(metric, y_true, scores, counts, chunk_size):
    """Metric per row of `counts` `(R,)` (record weights), in chunks of rows."""
    values = []
    for start in range(0, len(counts), chunk_size):
        values.append(
            _macro(metric, y_true, scores, counts[start : start + chunk_size])
        )
    return np.concatenate(values)


def _resampled_metric(metric, y_true, scores, resamples, chunk_size):
    """Metric per resample `(R,)`, averaged over the runs in `scores`."""
    values = []
    for start in range(0, len(resamples), chunk_size):
        counts = _counts(resamples[start : start + chunk_size], len(y_true))
        values.append(_macro(metric, y_true, scores, counts))
    return np.concatenate(values)


def _point(metric, y_true, scores):
    return float(_macro(metric, y_true, scores, np.ones((1, len(y_true))))[0])


def _jackknife(metric, y_true, scores, chunk_size):
    """Leave-one-record-out metric `(n,)`: record i weighted 0, the rest 1 (a
    class whose only positive or negative is left out drops from that mean,
    as in a resample)."""
    counts = 1.0 - np.eye(len(y_true))
    return _weighted_metric(metric, y_true, scores, counts, chunk_size)


def _bca_interval(theta_hat, theta_star, jackknife, confidence):
    """Efron's bias-corrected and accelerated (BCa) percentile interval.

    Efron & Tibshirani (1993), 14.3: `z0 = Phi^-1(share of theta_star below
    theta_hat, ties counted one half)`; acceleration `a = sum(d^3) / (6
    sum(d^2)^1.5)` with `d = mean(jackknife) - jackknife`; the bounds are the
    `Phi(z0 + (z0 + z) / (1 - a (z0 + z)))` quantiles (linear interpolation)
    of `theta_star` for `z = Phi^-1((1 -/+ confidence) / 2)`. NaN resamples and
    jackknife values are left out. As `scipy.stats.bootstrap(method="BCa")`
    except that a share of 0 or 1 is clipped to `[1/(2B), 1 - 1/(2B)]` (scipy
    returns NaN) and a constant jackknife gives `a = 0`.

    Returns:
        `(low, high)`.
    """
    theta_star = np.asarray(theta_star, dtype=np.float64)
    theta_star = theta_star[np.isfinite(theta_star)]
    jackknife = np.asarray(jackknife, dtype=np.float64)
    jackknife = jackknife[np.isfinite(jackknife)]
    num = len(theta_star)
    if num == 0:
        return float("nan"), float("nan")
    share = (np.sum(theta_star < theta_hat) + np.sum(theta_star <= theta_hat)) / (
        2 * num
    )
    share = min(max(share, 0.5 / num), 1 - 0.5 / num)
    normal = NormalDist()
    z0 = normal.inv_cdf(share)
    d = jackknife.mean() - jackknife if len(jackknife) else np.zeros(1)
    denominator = np.sum(d**2) ** 1.5
    acceleration = np.sum(d**3) / (6 * denominator) if denominator > 0 else 0.0
    quantiles = []
    for z in (
        normal.inv_cdf((1 - confidence) / 2),
        normal.inv_cdf((1 + confidence) / 2),
    ):
        shifted = z0 + z
        quantiles.append(normal.cdf(z0 + shifted / (1 - acceleration * shifted)))
    low, high = np.percentile(theta_star, [100 * q for q in quantiles])
    return float(low), float(high)


def _interval(
    method, theta_hat, theta_star, confidence, jackknife=None, bounds=(0.0, 1.0)
):
    """`(low, high)` of `method` from the point estimate and the resampled
    values (NaN resamples left out); `jackknife` only for `"bca"`. The
    reflected (`"basic"`) and shifted intervals are clipped to `bounds`, the
    range of the statistic (quantiles of the resamples already lie in it)."""
    if method == "bca":
        return _bca_interval(theta_hat, theta_star, jackknife, confidence)
    theta_star = np.asarray(theta_star, dtype=np.float64)
    theta_star = theta_star[np.isfinite(theta_star)]
    if len(theta_star) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(theta_star, [tail, 100 - tail])
    if method == "basic":
        low, high = 2 * theta_hat - high, 2 * theta_hat - low
    elif method == "shifted":
        shift = theta_hat - np.median(theta_star)
        low, high = low + shift, high + shift
    low, high = np.clip([low, high], *bounds)
    return float(low), float(high)


def _methods(interval, resampling, metrics):
    """`{metric: interval method}`, validated: `None` gives
    `DEFAULT_INTERVALS`, a name applies to every metric, a dict per metric."""
    if interval is None:
        interval = DEFAULT_INTERVALS
    if isinstance(interval, str):
        interval = {metric: interval for metric in metrics}
    methods = {}
    for metric in metrics:
        method = interval.get(metric, DEFAULT_INTERVALS.get(metric))
        if method not in INTERVALS:
            raise ValueError(
                f"Unknown interval {method!r}; choose from {INTERVALS} "
                "(percentile, basic, percentile shifted by the bootstrap "
                "median's bias, BCa), a dict of them per metric, or None "
                f"(the per-metric defaults {DEFAULT_INTERVALS})."
            )
        methods[metric] = method
    if resampling not in RESAMPLINGS:
        raise ValueError(
            f"Unknown resampling {resampling!r}; choose from {RESAMPLINGS}."
        )
    if resampling == "conditional" and "bca" in methods.values():
        raise ValueError(
            "interval='bca' needs resampling='all': its leave-one-out "
            "jackknife drops classes that conditional resampling keeps."
        )
    return methods


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


def _setup(
    y_true,
    y_scores,
    num_resamples,
    confidence,
    seed,
    metrics,
    interval,
    resampling,
    max_draws,
):
    """Validated targets and `(runs, n, C)` scores of the classes with both
    outcomes, the resamples, and the result's header."""
    _check_confidence(confidence)
    for metric in metrics:
        if metric not in _PER_CLASS:
            raise ValueError(f"Unknown metric {metric!r}; choose from {METRICS}.")
    methods = _methods(interval, resampling, metrics)
    stacked = []
    for y_score in y_scores:
        checked, scores = _stack_scores(y_true, y_score)
        stacked.append(scores)
    keep = _classes_with_both(checked)
    header = {
        "num_resamples": int(num_resamples),
        "confidence": float(confidence),
        "num_classes": int(keep.sum()),
        "interval": methods,
        "resampling": resampling,
    }
    if resampling == "conditional":
        resamples, draws = conditional_resamples(
            checked[:, keep], num_resamples, seed, max_draws
        )
        header["num_resamples"] = len(resamples)
        header["num_draws"] = int(draws)
    else:
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
    interval=None,
    resampling="all",
    max_draws=None,
):
    """Macro AUROC / AUPRC with bootstrap confidence intervals.

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
        interval: how the resampled values become an interval: `None`
            (default) for `DEFAULT_INTERVALS`, `"percentile"` for AUROC and
            `"basic"` for AUPRC, the methods whose simulated coverage came
            closest to 95% (module docstring); or one of `"percentile"`,
            `"basic"` (`2 * value - q_high`, `2 * value - q_low`),
            `"shifted"` (percentiles shifted by `value - median(resampled
            values)`), `"bca"` (Efron's bias-corrected and accelerated
            percentiles, acceleration from the leave-one-record-out
            jackknife) for every metric; or a `{metric: method}` dict.
        resampling: `"all"` (every resample; a class that drew no positive or
            no negative is left out of that resample's mean) or
            `"conditional"` (only resamples in which every scored class has
            a positive and a negative, `conditional_resamples`; not with
            `"bca"`).
        max_draws: cap on the resamples drawn by conditional resampling
            (default `1000 * num_resamples`); warns if reached.

    Returns:
        `{metric: {"value", "low", "high", "interval"}}` (`"interval"`: the
        method of that metric's bounds) plus `"num_resamples"` (those used),
        `"confidence"`, `"num_classes"` (classes with positives and negatives,
        the ones averaged), `"interval"` (`{metric: method}`),
        `"resampling"`, and `"num_draws"` with conditional resampling.

    Example:

    ```python
    result = bootstrap_macro_metrics(test.labels, scores, seed=0)
    auc = result["macro_auroc"]
    print(f"{auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]")
    ```
    """
    y_true, (scores,), resamples, result = _setup(
        y_true,
        (y_score,),
        num_resamples,
        confidence,
        seed,
        metrics,
        interval,
        resampling,
        max_draws,
    )
    for metric in metrics:
        point = _point(metric, y_true, scores)
        values = _resampled_metric(metric, y_true, scores, resamples, chunk_size)
        method, jackknife = result["interval"][metric], None
        if method == "bca":
            jackknife = _jackknife(metric, y_true, scores, chunk_size)
        low, high = _interval(method, point, values, confidence, jackknife)
        result[metric] = {
            "value": float(point),
            "low": float(low),
            "high": float(high),
            "interval": method,
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
    interval=None,
    resampling="all",
    max_draws=None,
):
    """Difference A - B of macro metrics with a paired bootstrap interval.

    Both models are scored on the same resamples of the test records, so the
    interval reflects the difference itself, not two overlapping intervals
    (with `"bca"`, the jackknife of the difference too).

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
        interval: how the resampled values become an interval: `None`
            (default) for `DEFAULT_INTERVALS`, `"percentile"` for AUROC and
            `"basic"` for AUPRC, the methods whose simulated coverage came
            closest to 95% (module docstring); or one of `"percentile"`,
            `"basic"` (`2 * value - q_high`, `2 * value - q_low`),
            `"shifted"` (percentiles shifted by `value - median(resampled
            values)`), `"bca"` (Efron's bias-corrected and accelerated
            percentiles, acceleration from the leave-one-record-out
            jackknife) for every metric; or a `{metric: method}` dict.
        resampling: `"all"` (every resample; a class that drew no positive or
            no negative is left out of that resample's mean) or
            `"conditional"` (only resamples in which every scored class has
            a positive and a negative, `conditional_resamples`; not with
            `"bca"`).
        max_draws: cap on the resamples drawn by conditional resampling
            (default `1000 * num_resamples`); warns if reached.

    Returns:
        `{metric: {"difference", "low", "high", "excludes_zero",
        "interval"}}` plus `"num_resamples"`, `"confidence"`,
        `"num_classes"`, `"interval"` (`{metric: method}`) and
        `"resampling"` (and `"num_draws"` with conditional resampling).

    Example:

    ```python
    diff = paired_bootstrap(test.labels, finetuned_scores, scratch_scores)
    if diff["macro_auroc"]["excludes_zero"]:
        print("finetuning differs from scratch beyond resampling noise")
    ```
    """
    y_true, (scores_a, scores_b), resamples, result = _setup(
        y_true,
        (y_score_a, y_score_b),
        num_resamples,
        confidence,
        seed,
        metrics,
        interval,
        resampling,
        max_draws,
    )
    for metric in metrics:
        point = _point(metric, y_true, scores_a) - _point(metric, y_true, scores_b)
        values = _resampled_metric(
            metric, y_true, scores_a, resamples, chunk_size
        ) - _resampled_metric(metric, y_true, scores_b, resamples, chunk_size)
        method, jackknife = result["interval"][metric], None
        if method == "bca":
            jackknife = _jackknife(metric, y_true, scores_a, chunk_size) - _jackknife(
                metric, y_true, scores_b, chunk_size
            )
        low, high = _interval(
            method, point, values, confidence, jackknife, bounds=(-1.0, 1.0)
        )
        result[metric] = {
            "difference": float(point),
            "low": float(low),
            "high": float(high),
            "excludes_zero": bool(low > 0 or high < 0),
            "interval": method,
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
