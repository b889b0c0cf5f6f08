"""Plots of 12-lead ECG records and their augmented views, and training curves.

matplotlib is an optional dependency (`pip install keras-ecg[plot]`); it is
imported only when a plot is drawn, and figures are rendered with the Agg
backend through `matplotlib.figure.Figure`, so no display and no pyplot global
state are involved.
"""

import numpy as np

from keras_ecg.data.ecg_dataset import STANDARD_LEADS

# ECG paper: 1 mm = 40 ms x 0.1 mV, bold lines every 5 mm.
_MINOR_S, _MAJOR_S = 0.04, 0.2
_MINOR_MV, _MAJOR_MV = 0.1, 0.5
_GRID_MINOR = "#fbe3e3"
_GRID_MAJOR = "#f2b8b8"
_TRACE = "black"


def _import_matplotlib():
    try:
        # The Agg canvas directly: no pyplot, no change to the global backend.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_ecg.plot needs matplotlib: `pip install keras-ecg[plot]` "
            "(or `pip install matplotlib`)."
        ) from error
    return Figure, FigureCanvasAgg


def _to_numpy(array, name):
    """Accepts numpy arrays and backend tensors (TF, JAX, torch)."""
    if not isinstance(array, np.ndarray):
        try:
            import keras

            array = keras.ops.convert_to_numpy(array)
        except Exception:  # not a tensor keras knows: let numpy try
            array = np.asarray(array)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be one record of shape (timesteps, leads), got shape "
            f"{array.shape}."
        )
    return array


def _check_leads(array, lead_names, name):
    if array.shape[1] != len(lead_names):
        hint = (
            " It looks channels-first; keras_ecg uses (timesteps, leads)."
            if array.shape[0] == len(lead_names)
            else ""
        )
        raise ValueError(
            f"{name} has {array.shape[1]} leads (shape {array.shape}) but "
            f"{len(lead_names)} lead names were given.{hint}"
        )


def _locator(step):
    from matplotlib.ticker import MultipleLocator

    return MultipleLocator(step)


def _ecg_paper(axis, duration_s, low, high):
    """Draws the ECG-paper grid and fits the limits to whole big squares."""
    low = np.floor(min(low, -0.5) / _MAJOR_MV) * _MAJOR_MV
    high = np.ceil(max(high, 0.5) / _MAJOR_MV) * _MAJOR_MV
    axis.set_xlim(0.0, duration_s)
    axis.set_ylim(low, high)
    # Line collections, not ticks: thousands of tick objects are slow to build.
    for step, color, width in (
        (_MINOR_S, _GRID_MINOR, 0.4),
        (_MAJOR_S, _GRID_MAJOR, 0.8),
    ):
        axis.vlines(
            np.arange(0.0, duration_s + 1e-9, step),
            low,
            high,
            colors=color,
            linewidth=width,
            zorder=0,
        )
    for step, color, width in (
        (_MINOR_MV, _GRID_MINOR, 0.4),
        (_MAJOR_MV, _GRID_MAJOR, 0.8),
    ):
        axis.hlines(
            np.arange(low, high + 1e-9, step),
            0.0,
            duration_s,
            colors=color,
            linewidth=width,
            zorder=0,
        )
    # Locators build tick objects lazily, at draw time, and only once.
    axis.xaxis.set_major_locator(_locator(1.0 if duration_s > 2 else _MAJOR_S))
    axis.yaxis.set_major_locator(_locator(_MAJOR_MV))
    axis.tick_params(length=0, labelsize=6)
    for spine in axis.spines.values():
        spine.set_color(_GRID_MAJOR)


def _trace(axis, signal, sampling_rate, label, show_x_labels):
    time = np.arange(len(signal)) / float(sampling_rate)
    axis.plot(time, signal, color=_TRACE, linewidth=0.7)
    finite = signal[np.isfinite(signal)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    _ecg_paper(axis, max(time[-1] if len(time) else 0.0, _MINOR_S), low, high)
    axis.text(
        0.005,
        0.95,
        label,
        transform=axis.transAxes,
        fontsize=8,
        fontweight="bold",
        va="top",
    )
    if not show_x_labels:
        axis.tick_params(labelbottom=False)


def _save(figure, canvas_class, path):
    canvas_class(figure)
    if path is not None:
        figure.savefig(str(path), format="png", dpi=figure.dpi)
    return figure


def plot_ecg(
    signal,
    sampling_rate,
    lead_names=STANDARD_LEADS,
    title=None,
    path=None,
    dpi=100,
):
    """Draws one ECG record on ECG paper, one panel per lead.

    Twelve leads are laid out as a 6x2 grid (limb leads left, precordial leads
    right); any other lead count gets one row per lead. Time is in seconds and
    amplitude in mV on a light 40 ms x 0.1 mV grid (bold every 0.2 s x 0.5 mV).
    Each panel holds exactly one line, the lead's samples.

    Args:
        signal: one record, `(timesteps, leads)` array or backend tensor, mV.
        sampling_rate: samples per second.
        lead_names: names of the leads, in the order of the last axis.
        title: optional figure title.
        path: if given, the figure is saved there as a PNG.
        dpi: resolution; the figure is 14 x (1.3 * rows + 0.4) inches.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    ```python
    data = keras_ecg.data.make_synthetic_ecg(num_records=1)
    keras_ecg.plot.plot_ecg(data.signals[0], data.sampling_rate, path="ecg.png")
    ```
    """
    figure_class, canvas_class = _import_matplotlib()
    signal = _to_numpy(signal, "signal")
    lead_names = list(lead_names)
    _check_leads(signal, lead_names, "signal")
    num_leads = len(lead_names)
    rows, cols = (6, 2) if num_leads == 12 else (num_leads, 1)
    figure = figure_class(figsize=(14.0, 1.3 * rows + 0.4), dpi=dpi)
    axes = figure.subplots(rows, cols, squeeze=False, sharex=True)
    for lead in range(num_leads):
        # Column-major so each column reads as one group of leads.
        row, col = lead % rows, lead // rows
        _trace(
            axes[row, col],
            signal[:, lead],
            sampling_rate,
            lead_names[lead],
            show_x_labels=row == rows - 1,
        )
    for col in range(cols):
        axes[-1, col].set_xlabel("time (s)", fontsize=7)
    for row in range(rows):
        axes[row, 0].set_ylabel("mV", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(
        left=0.04, right=0.99, bottom=0.08, top=0.93 if title else 0.97, hspace=0.08
    )
    return _save(figure, canvas_class, path)


def plot_augmented_views(
    signal,
    views,
    sampling_rate,
    lead_names=STANDARD_LEADS,
    path=None,
    leads_to_show=("I", "II", "V1", "V5"),
    dpi=100,
):
    """Draws an ECG next to its augmented views, a few leads each.

    Columns are the original record followed by each view; rows are
    `leads_to_show`. Views may be shorter than the record (random crops) and
    each gets its own time axis starting at 0.

    Args:
        signal: the original record, `(timesteps, leads)`, mV.
        views: the augmented views: a sequence of `(timesteps_i, leads)` arrays
            or tensors, a `(num_views, timesteps, leads)` array, or a dict
            mapping a column title to a view.
        sampling_rate: samples per second of the record and the views.
        lead_names: names of the leads, in the order of the last axis.
        path: if given, the figure is saved there as a PNG.
        leads_to_show: the lead names drawn, one row each.
        dpi: resolution; each panel is 4.5 x 1.3 inches.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    ```python
    x = data.signals[0]
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape)
    keras_ecg.plot.plot_augmented_views(x, {"noise": noisy}, 100, path="v.png")
    ```
    """
    figure_class, canvas_class = _import_matplotlib()
    signal = _to_numpy(signal, "signal")
    lead_names = list(lead_names)
    _check_leads(signal, lead_names, "signal")
    if isinstance(views, dict):
        titles, views = list(views.keys()), list(views.values())
    else:
        if not isinstance(views, (list, tuple)):
            views = list(_to_numpy_stack(views))
        titles = [f"view {i + 1}" for i in range(len(views))]
    views = [_to_numpy(view, f"views[{i}]") for i, view in enumerate(views)]
    for i, view in enumerate(views):
        _check_leads(view, lead_names, f"views[{i}]")
    missing = [name for name in leads_to_show if name not in lead_names]
    if missing or not leads_to_show:
        raise ValueError(
            f"leads_to_show {list(leads_to_show)} must be a non-empty subset of "
            f"lead_names {lead_names}; missing {missing}."
        )
    columns = [signal] + views
    titles = ["original"] + [str(t) for t in titles]
    rows, cols = len(leads_to_show), len(columns)
    figure = figure_class(figsize=(4.5 * cols, 1.3 * rows + 0.6), dpi=dpi)
    axes = figure.subplots(rows, cols, squeeze=False)
    for col, (record, column_title) in enumerate(zip(columns, titles, strict=True)):
        axes[0, col].set_title(column_title, fontsize=9)
        for row, name in enumerate(leads_to_show):
            _trace(
                axes[row, col],
                record[:, lead_names.index(name)],
                sampling_rate,
                name,
                show_x_labels=row == rows - 1,
            )
        axes[-1, col].set_xlabel("time (s)", fontsize=7)
    figure.subplots_adjust(
        left=0.03, right=0.99, bottom=0.1, top=0.9, hspace=0.1, wspace=0.08
    )
    return _save(figure, canvas_class, path)


def _to_numpy_stack(views):
    if not isinstance(views, np.ndarray):
        import keras

        views = keras.ops.convert_to_numpy(views)
    views = np.asarray(views)
    if views.ndim != 3:
        raise ValueError(
            "views must be a list of (timesteps, leads) records or a "
            f"(num_views, timesteps, leads) array, got shape {views.shape}."
        )
    return views


def _read_training_log(path):
    """`(epochs, {column: values})` of a CSV log (empty cells are NaN)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return np.zeros(0), {}

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return np.nan

    epochs = np.asarray([number(r.get("epoch")) for r in rows])
    columns = {
        key: np.asarray([number(r.get(key)) for r in rows])
        for key in rows[0]
        if key != "epoch"
    }
    return epochs, columns


def plot_training_log(log, title=None, path=None, dpi=100):
    """Draws the curves of a training log: losses, AUCs, other metrics.

    One panel per kind of value present: every column named `*loss*`, every
    `*auc*` column (e.g. `probe_macro_auc` of the online probe, measured every
    few epochs, or `val_macro_auc`), then the remaining metrics. Values that
    were not measured at an epoch (empty CSV cells) are skipped, so a probe
    run every 4 epochs is a line through its own points.

    Args:
        log: a CSV file as `keras_ecg.training_logs.TrainingCSVLogger` writes
            it (an `epoch` column, one row per epoch), or a
            `{column: values}` dict with one value per epoch (a Keras
            `History.history`).
        title: optional figure title.
        path: if given, the figure is saved there as a PNG.
        dpi: resolution; each panel is 6 x 3.2 inches.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    ```python
    keras_ecg.plot.plot_training_log(
        "runs/simclr/training_log.csv", path="runs/simclr/curves.png"
    )
    ```
    """
    figure_class, canvas_class = _import_matplotlib()
    from matplotlib.ticker import MaxNLocator

    if isinstance(log, dict):
        columns = {k: np.asarray(v, dtype=np.float64) for k, v in log.items()}
        length = max((len(v) for v in columns.values()), default=0)
        epochs = np.arange(1, length + 1, dtype=np.float64)
    else:
        epochs, columns = _read_training_log(log)
    columns = {k: v for k, v in columns.items() if np.isfinite(v).any()}
    groups = [
        ("loss", [k for k in columns if "loss" in k]),
        ("macro AUC", [k for k in columns if "auc" in k and "loss" not in k]),
    ]
    grouped = {k for _, keys in groups for k in keys}
    groups.append(("other metrics", [k for k in columns if k not in grouped]))
    groups = [(label, sorted(keys)) for label, keys in groups if keys]
    panels = max(1, len(groups))
    figure = figure_class(figsize=(6.0 * panels, 3.2 + (0.3 if title else 0)), dpi=dpi)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for axis, (label, keys) in zip(axes, groups):
        for key in keys:
            values = columns[key]
            measured = np.isfinite(values)
            sparse = measured.sum() < len(values)
            axis.plot(
                epochs[measured],
                values[measured],
                marker="o" if sparse or measured.sum() == 1 else None,
                markersize=4,
                label=key,
            )
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        # Every panel spans the run's epochs, in whole epochs.
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs):
            axis.set_xlim(np.nanmin(epochs) - 0.2, np.nanmax(epochs) + 0.2)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if not groups:
        axes[0].text(0.5, 0.5, "no values logged", ha="center", va="center")
    if title:
        figure.suptitle(title, fontsize=10)
    # Fixed margins: tight_layout would draw the figure twice.
    figure.subplots_adjust(
        left=0.75 / (6.0 * panels),  # 0.75 inch for the y labels
        right=0.99,
        bottom=0.16,
        top=0.86 if title else 0.95,
        wspace=0.25,
    )
    return _save(figure, canvas_class, path)
