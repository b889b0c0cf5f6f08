"""Explanations beside a prediction CSV: what `keras-ecg predict --explain` writes."""

import os
import re

import pandas as pd

from keras_ecg.data.progress import ReadProgress
from keras_ecg.explain.records import explain_records

# A PNG name from a record id: ids may hold path separators (sub-folders).
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_explain_dir(output):
    """`predictions.csv` -> `predictions_explanations/` in the same folder."""
    stem, _ = os.path.splitext(os.path.abspath(output))
    return f"{stem}_explanations"


def check_explain_options(top_k, num_classes, folder, overwrite, steps):
    """Validates `--explain` and its companions before any record is read.

    Raises:
        ValueError: a one-line message naming the flag at fault.
    """
    if not 1 <= top_k <= num_classes:
        raise ValueError(
            f"--explain {top_k}: K must be between 1 and the model's number of "
            f"classes, {num_classes}."
        )
    if steps < 1:
        raise ValueError(f"--explain-steps {steps}: must be a positive integer.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--explain-dir {folder} is a file; give a folder.")
    if (
        os.path.isdir(folder)
        and any(name.endswith(".png") for name in os.listdir(folder))
        and not overwrite
    ):
        raise ValueError(
            f"--explain-dir {folder} already holds PNG files; pass --overwrite to "
            "replace them, or choose another folder."
        )
    try:
        from keras_ecg.plot import _import_matplotlib

        _import_matplotlib()
    except ImportError:
        raise ValueError(
            "--explain draws plots and needs matplotlib: pip install "
            "'keras-ecg[plot]' (or matplotlib)."
        ) from None


def explain_columns(explanation):
    """One CSV row's explanation columns, in order.

    For each rank `r` (1 = the most probable class): `explain_<r>_class`,
    then `explain_<r>_<lead>` per lead, the lead's share of that class's
    absolute attribution (the shares of a rank sum to 1).
    """
    row = {}
    for rank, name in enumerate(explanation.class_names):
        row[f"explain_{rank + 1}_class"] = name
        for lead, share in zip(
            explanation.lead_names, explanation.lead_shares[rank], strict=True
        ):
            row[f"explain_{rank + 1}_{lead}"] = float(share)
    return row


def write_explanations(frame, model, data, top_k, steps, folder, batch_size=256):
    """Explains every record of `data`, one PNG each, and adds CSV columns.

    Args:
        frame: the `predict_records` table of `data`, one row per record in
            `data`'s order.
        model: the `ECGClassifier`.
        data: the records as `predict` prepared them (an `ECGDataset` at the
            model's rate and leads, in mV).
        top_k: classes explained per record, the most probable first.
        steps: integration steps per window.
        folder: where the PNGs go (created).
        batch_size: path points per gradient call.

    Returns:
        `frame` with the `explain_columns` and `explain_plot` (the PNG's
        path) appended.
    """
    from keras_ecg.explain.plot import plot_explanation

    os.makedirs(folder, exist_ok=True)
    rows, used = [], set()
    # A line every 10 s or so in a log, a bar on a terminal; silent when fast.
    progress = ReadProgress(len(frame), "explaining records")
    for explanation in explain_records(
        model, data, top_k=top_k, steps=steps, batch_size=batch_size
    ):
        path = os.path.join(folder, _file_name(explanation.record_id, used))
        plot_explanation(explanation, path=path)
        rows.append({**explain_columns(explanation), "explain_plot": path})
        progress.update()
    progress.close()
    if len(rows) != len(frame):
        raise ValueError(
            f"{len(rows)} explanations for a table of {len(frame)} records."
        )
    columns = pd.DataFrame(rows, index=frame.index)
    return pd.concat([frame, columns], axis=1)


def _file_name(record_id, used):
    """A PNG name for `record_id`, unique among `used` (updated)."""
    stem = _UNSAFE.sub("_", str(record_id)).strip("._") or "record"
    name, count = f"{stem}.png", 1
    while name in used:
        count += 1
        name = f"{stem}_{count}.png"
    used.add(name)
    return name
