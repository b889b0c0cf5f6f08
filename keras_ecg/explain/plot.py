"""ECG-paper plots of integrated-gradients explanations."""

import numpy as np

from keras_ecg.plot import _import_matplotlib
from keras_ecg.plot import _save
from keras_ecg.plot import _trace

# Red: the sample pushed the class's output up from the baseline's; blue: down.
_FOR = np.array([0.80, 0.10, 0.10])
_AGAINST = np.array([0.10, 0.30, 0.85])
_MAX_ALPHA = 0.75


def plot_explanation(explanation, path=None, smooth_seconds=0.04, title=None, dpi=100):
    """Draws a record's 12 leads on ECG paper under its attributions.

    One figure per record: one column per explained class (highest
    probability first), one row per lead, each panel the whole record on
    ECG paper (40 ms x 0.1 mV small squares, bold every 0.2 s x 0.5 mV) with
    the attribution as a shading behind the trace: red where the samples
    raised the class's output above the baseline's, blue where they lowered
    it, opacity proportional to the magnitude (scaled per class, so that the
    leads of a class compare). Each lead's label gives its share of the
    class's absolute attribution.

    Args:
        explanation: a `keras_ecg.explain.Explanation`.
        path: if given, the figure is saved there as a PNG.
        smooth_seconds: width of a moving average applied to the attribution
            for display only (integrated gradients are ragged from sample to
            sample); 0 draws them as they are. The shares are unaffected.
        title: figure title; default: the record id and the method.
        dpi: resolution.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    ```python
    explanation = keras_ecg.explain.explain_record(model, signal, 500, top_k=2)
    keras_ecg.explain.plot_explanation(explanation, path="explained.png")
    ```
    """
    figure_class, canvas_class = _import_matplotlib()
    from matplotlib.ticker import NullLocator

    signal = np.asarray(explanation.signal, dtype=np.float32)
    attributions = np.asarray(explanation.attributions, dtype=np.float64)
    rate = float(explanation.sampling_rate)
    names = list(explanation.lead_names)
    num_classes, num_leads = len(explanation.class_names), len(names)
    duration = len(signal) / rate
    shown = _smooth(attributions, int(round(smooth_seconds * rate)))
    width = max(4.0, 0.6 * duration)
    figure = figure_class(
        figsize=(width * num_classes + 0.3, 0.7 * num_leads + 0.9), dpi=dpi
    )
    # Not sharex: the panels' limits agree anyway, and shared locators would
    # give every panel the bottom row's ticks.
    axes = figure.subplots(num_leads, num_classes, squeeze=False)
    for column in range(num_classes):
        scale = np.abs(shown[column]).max()
        index = explanation.class_indices[column]
        axes[0, column].set_title(
            f"{explanation.class_names[column]}: p = "
            f"{float(explanation.probabilities[index]):.2f}",
            fontsize=10,
            fontweight="bold",
        )
        for lead in range(num_leads):
            axis = axes[lead, column]
            share = explanation.lead_shares[column, lead]
            label = names[lead] if np.isnan(share) else f"{names[lead]}  {share:.0%}"
            _trace(axis, signal[:, lead], rate, label, lead == num_leads - 1)
            _overlay(axis, shown[column, :, lead], scale)
            axis.texts[0].set_bbox(
                {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}
            )
            # Rows are too short for mV labels: the grid is the scale. No
            # tick objects where no label shows: they cost most of the time.
            axis.yaxis.set_major_locator(NullLocator())
            if lead != num_leads - 1:
                axis.xaxis.set_major_locator(NullLocator())
        axes[-1, column].set_xlabel("time (s)", fontsize=7)
    if title is None:
        title = (
            f"{explanation.record_id}: integrated gradients of the "
            f"{explanation.target} ({explanation.steps} steps); red raises it, "
            "blue lowers it; big squares 0.2 s x 0.5 mV"
        )
    figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(
        left=0.01, right=0.995, bottom=0.05, top=0.93, hspace=0.06, wspace=0.03
    )
    return _save(figure, canvas_class, path)


def _smooth(attributions, width):
    """Centred moving average along time of `(K, T, L)`."""
    if width <= 1:
        return attributions
    kernel = np.ones(width) / width
    return np.apply_along_axis(
        lambda row: np.convolve(row, kernel, mode="same"), 1, attributions
    )


def _overlay(axis, values, scale):
    """Shading behind the trace: color by sign, opacity by magnitude."""
    (left, right), (low, high) = axis.get_xlim(), axis.get_ylim()
    strength = np.zeros(len(values)) if scale <= 0 else np.abs(values) / scale
    colors = np.where(values[:, None] >= 0, _FOR, _AGAINST)
    image = np.concatenate([colors, _MAX_ALPHA * strength[:, None]], axis=1)
    axis.imshow(
        image[None],
        extent=(left, right, low, high),
        aspect="auto",
        interpolation="nearest",
        zorder=1,
    )
    # imshow re-fits the limits to its extent; keep the paper's.
    axis.set_xlim(left, right)
    axis.set_ylim(low, high)
