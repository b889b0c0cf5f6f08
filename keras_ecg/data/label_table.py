"""Labels from a CSV table, for records whose files carry none.

Clinical exports (GE MUSE XML, HL7 aECG, DICOM, ...) hold a device's or a
physician's free-text statements, not PTB-XL statements or SNOMED CT codes,
so evaluating a classifier on them needs the labels from elsewhere: a CSV
with one row per record.
"""

import dataclasses
import re

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import SCP
from keras_ecg.data.ecg_dataset import SNOMED
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.snomed import snomed_descriptions

RECORD_COLUMN = "record_id"
CODES_COLUMN = "labels"
# Codes in the `labels` column are separated by semicolons, commas or blanks.
_CODE_SEPARATORS = re.compile(r"[;,\s]+")


def _code_sort_key(code):
    return (0, int(code), "") if code.isdigit() else (1, 0, code)


def read_label_table(path):
    """`(record_ids, classes, labels)` of a label CSV.

    The CSV has a `record_id` column (the ids keras-ecg gives the records,
    as in the `record_id` column of `keras-ecg predict`'s output: a WFDB
    record's path without suffix, a clinical export's path with its
    suffix, both relative to the folder read) and either
    - a `labels` column of codes separated by `;`, `,` or blanks (an
      empty cell: no label), the classes being every code found; or
    - one column per class holding 0 or 1.

    Raises:
        ECGDataError: (naming the file) unreadable, no `record_id` column,
            duplicate records, other columns next to `labels`, class
            columns with values other than 0/1, or no class at all.
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        problem = " ".join(str(error).split())
        raise ECGDataError(None, f"unreadable label table: {problem}", path) from error
    table.columns = [str(c).strip() for c in table.columns]
    if RECORD_COLUMN not in table.columns:
        raise ECGDataError(
            None,
            f"label table has no {RECORD_COLUMN!r} column (columns: "
            f"{list(table.columns)})",
            path,
        )
    record_ids = [r.strip() for r in table[RECORD_COLUMN]]
    duplicates = sorted({r for r in record_ids if record_ids.count(r) > 1})
    if duplicates:
        raise ECGDataError(
            None, f"label table lists record(s) {duplicates[:5]} more than once", path
        )
    others = [c for c in table.columns if c != RECORD_COLUMN]
    if CODES_COLUMN in table.columns:
        if len(others) > 1:
            raise ECGDataError(
                None,
                f"label table has a {CODES_COLUMN!r} column and other columns "
                f"{[c for c in others if c != CODES_COLUMN]}: give codes in "
                f"{CODES_COLUMN!r} or one 0/1 column per class, not both",
                path,
            )
        codes = [
            [c for c in _CODE_SEPARATORS.split(cell.strip()) if c]
            for cell in table[CODES_COLUMN]
        ]
        classes = sorted({c for row in codes for c in row}, key=_code_sort_key)
        column = {name: j for j, name in enumerate(classes)}
        labels = np.zeros((len(record_ids), len(classes)), dtype=np.float32)
        for i, row in enumerate(codes):
            labels[i, [column[c] for c in row]] = 1.0
    else:
        classes = others
        values = table[others].apply(lambda col: col.str.strip())
        bad = ~values.isin(["0", "1", "0.0", "1.0"])
        if bad.to_numpy().any():
            row, col = np.argwhere(bad.to_numpy())[0]
            raise ECGDataError(
                None,
                f"label table: class column {others[col]!r} holds "
                f"{values.iat[row, col]!r} for record {record_ids[row]!r}; class "
                "columns hold 0 or 1",
                path,
            )
        labels = values.astype(float).to_numpy(dtype=np.float32)
    if not classes:
        raise ECGDataError(None, "label table names no class", path)
    return record_ids, [str(c) for c in classes], labels


def table_vocabulary(classes, model_vocabulary=None):
    """The vocabulary of a label table's classes.

    SNOMED CT codes are digits, which no SCP-ECG statement is (`1AVB` has
    letters): all-digit classes are SNOMED, others are in the model's
    vocabulary (SCP statements or PTB-XL's aggregated classes), or SCP
    statements for a SNOMED model (mapped through the packaged table).
    """
    if all(c.replace("|", "").isdigit() for c in classes):
        return SNOMED
    if model_vocabulary in (None, SNOMED):
        return SCP
    return model_vocabulary


def apply_label_table(data, path, model_vocabulary=None):
    """`data` labelled from a label CSV (see `read_label_table`).

    Every record of `data` needs a row; rows of records that are not in
    `data` (e.g. skipped as unreadable) are returned, not used.

    Args:
        data: an `ECGDataset`; its own labels, if any, are replaced.
        path: the CSV.
        model_vocabulary: the vocabulary of the model the labels are for,
            used to name the table's (see `table_vocabulary`).

    Returns:
        `(labelled, unused_record_ids)`.

    Raises:
        ECGDataError: a malformed table, or records of `data` without a row.

    Example:

    ```python
    data = keras_ecg.data.load_wfdb_folder("exports/", sampling_rate=100)
    data, unused = apply_label_table(data, "exports_labels.csv", "scp")
    ```
    """
    record_ids, classes, labels = read_label_table(path)
    row_of = {r: i for i, r in enumerate(record_ids)}
    missing = [r for r in data.record_ids if str(r) not in row_of]
    if missing:
        raise ECGDataError(
            None,
            f"label table has no row for {len(missing)} of the {len(data)} "
            f"record(s) (first: {missing[:5]}); its {RECORD_COLUMN!r} column "
            "must name every record as keras-ecg does (the record_id column of "
            "`keras-ecg predict`'s output)",
            path,
        )
    rows = [row_of[str(r)] for r in data.record_ids]
    vocabulary = table_vocabulary(classes, model_vocabulary)
    used = set(map(str, data.record_ids))
    labelled = dataclasses.replace(
        data,
        labels=labels[rows],
        classes=classes,
        class_descriptions=snomed_descriptions(classes)
        if vocabulary == SNOMED
        else None,
        label_vocabulary=vocabulary,
    )
    return labelled, [r for r in record_ids if r not in used]
