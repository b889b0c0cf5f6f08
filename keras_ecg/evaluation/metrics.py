"""Macro-averaged ROC AUC, the paper's downstream metric on PTB-XL."""

import warnings

import numpy as np
from scipy import stats


def _validate(y_true, y_score):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_score.ndim == 1:
        y_score = y_score[:, None]
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(
            f"`y_true` {y_true.shape} and `y_score` {y_score.shape} must both be "
            "(num_samples, num_classes)."
        )
    if len(y_true) == 0:
        raise ValueError("Empty `y_true`: no samples to score.")
    bad = ~np.isfinite(y_score)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"`y_score` holds {int(bad.sum())} NaN/infinite value(s) (first at "
            f"sample {row}, class {col}); the model diverged or the predictions "
            "are corrupt."
        )
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("`y_true` must be multi-hot (only 0 and 1).")
    return y_true.astype(bool), y_score


def per_class_auc(y_true, y_score):
    """ROC AUC of every class, NaN where a class lacks positives or negatives.

    Computed as the Mann-Whitney U statistic (ties counted one half), which
    equals the area under the ROC curve.

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets.
        y_score: `(num_samples, num_classes)` scores (probabilities or logits).

    Returns:
        A float64 numpy array `(num_classes,)`.

    Example:

    ```python
    per_class_auc([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.1, 0.8], [0.8, 0.3]])
    ```
    """
    y_true, y_score = _validate(y_true, y_score)
    num_pos = y_true.sum(axis=0)
    num_neg = len(y_true) - num_pos
    ranks = stats.rankdata(y_score, axis=0)  # average ranks for ties
    rank_sum = np.where(y_true, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)
    return np.where((num_pos > 0) & (num_neg > 0), auc, np.nan)


def macro_auc(y_true, y_score, classes=None, return_details=False):
    """Mean per-class ROC AUC over the classes present in `y_true`.

    Classes with no positive or no negative sample have no defined AUC; they
    are excluded from the mean (with a warning naming how many) and listed in
    the details.

    Args:
        y_true: `(num_samples, num_classes)` multi-hot targets.
        y_score: `(num_samples, num_classes)` scores.
        classes: optional class names, used in the details and the warning.
        return_details: also return a dict with `per_class` (AUCs, NaN when
            excluded), `included` and `excluded` (class indices) and
            `excluded_classes` (names, when `classes` is given).

    Returns:
        The macro AUC as a float, or `(macro_auc, details)`.

    Example:

    ```python
    auc = macro_auc(test.labels, aggregate_windows(scores, record_index))
    ```
    """
    aucs = per_class_auc(y_true, y_score)
    if classes is not None and len(classes) != len(aucs):
        raise ValueError(f"{len(classes)} class names for {len(aucs)} label columns.")
    included = np.flatnonzero(~np.isnan(aucs))
    excluded = np.flatnonzero(np.isnan(aucs))
    excluded_names = [classes[i] for i in excluded] if classes is not None else None
    if len(included) == 0:
        raise ValueError(
            "No class has both positive and negative samples; macro AUC is undefined."
        )
    if len(excluded):
        names = excluded_names if excluded_names is not None else excluded.tolist()
        warnings.warn(
            f"{len(excluded)} of {len(aucs)} classes have only positives or only "
            f"negatives in `y_true` and are excluded from the macro AUC: "
            f"{names[:10]}{'...' if len(names) > 10 else ''}",
            stacklevel=2,
        )
    value = float(aucs[included].mean())
    if not return_details:
        return value
    details = {
        "per_class": aucs,
        "included": included,
        "excluded": excluded,
        "excluded_classes": excluded_names,
    }
    return value, details
