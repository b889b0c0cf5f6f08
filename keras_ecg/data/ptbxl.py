"""Reader for PTB-XL in its PhysioNet layout, with the benchmark's label sets."""

import ast
import functools
import logging
import os
import pathlib
import warnings

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import SCP
from keras_ecg.data.ecg_dataset import SCP_SUBDIAGNOSTIC
from keras_ecg.data.ecg_dataset import SCP_SUPERDIAGNOSTIC
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.errors import FailureLog
from keras_ecg.data.errors import check_on_error
from keras_ecg.data.errors import warn_skipped
from keras_ecg.data.record_stream import read_records
from keras_ecg.data.signal_cache import SignalCache
from keras_ecg.data.signal_cache import resolve_cache_dir
from keras_ecg.data.wfdb_folder import read_wfdb_record

logger = logging.getLogger(__name__)

# The recommended PTB-XL split used by the paper and the benchmark.
TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_FOLDS = (9,)
TEST_FOLDS = (10,)

PTBXL_SAMPLING_RATES = (100, 500)
# Label sets of Strodthoff et al. 2020 (`utils.compute_label_aggregations`).
LABEL_SETS = (
    "all",
    "diagnostic",
    "subdiagnostic",
    "superdiagnostic",
    "form",
    "rhythm",
)

# scp_statements.csv columns each label set reads (beyond the statement index).
STATEMENT_COLUMNS = {
    "all": (),
    "diagnostic": ("diagnostic",),
    "subdiagnostic": ("diagnostic", "diagnostic_subclass"),
    "superdiagnostic": ("diagnostic", "diagnostic_class"),
    "form": ("form",),
    "rhythm": ("rhythm",),
}

# The vocabulary of each label set's class names: statement-level sets are SCP
# codes, the aggregated sets PTB-XL's diagnostic (sub)class names.
LABEL_VOCABULARY = {
    "all": SCP,
    "diagnostic": SCP,
    "subdiagnostic": SCP_SUBDIAGNOSTIC,
    "superdiagnostic": SCP_SUPERDIAGNOSTIC,
    "form": SCP,
    "rhythm": SCP,
}

# The superclasses as PTB-XL names them (Wagner et al. 2020, Sci. Data 7:154).
SUPERCLASS_DESCRIPTIONS = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}


def _missing_columns_problem(missing):
    """`"column 'x' missing (needed by ...)"`, one clause per need.

    Args:
        missing: dict column -> what needs it, e.g. "label_set='rhythm'".
    """
    by_need = {}
    for column, need in missing.items():
        by_need.setdefault(need, []).append(column)
    parts = []
    for need, columns in by_need.items():
        quoted = ", ".join(repr(c) for c in columns)
        noun = "column" if len(columns) == 1 else "columns"
        parts.append(f"{noun} {quoted} missing (needed by {need})")
    return "; ".join(parts)


def check_statement_columns(scp_statements, label_set, path=None):
    """Raises `ECGDataError` when `scp_statements` lacks a column `label_set` reads.

    Args:
        scp_statements: the `scp_statements.csv` table.
        label_set: one of `LABEL_SETS`.
        path: optional path of the file, for the message.
    """
    missing = {
        column: f"label_set={label_set!r}"
        for column in STATEMENT_COLUMNS[label_set]
        if column not in scp_statements.columns
    }
    if missing:
        problem = _missing_columns_problem(missing)
        if path is None:
            problem = f"scp_statements.csv: {problem}"
        raise ECGDataError(None, problem, path)


def _read_metadata_csv(path, required, index=None):
    """Reads a PTB-XL metadata table, raising `ECGDataError` for a bad file.

    Messages read `"<path>: <problem>"`.

    Args:
        path: the csv file.
        required: dict column -> what needs it (quoted when it is missing).
        index: the column to index by (it must be in `required`); `None`
            indexes by the first column, as `scp_statements.csv` is laid out.
    """
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError as error:
        raise ECGDataError(None, "the file is empty", path) from error
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ECGDataError(
            None, f"unreadable csv: {type(error).__name__}: {error}", path
        ) from error
    missing = {c: need for c, need in required.items() if c not in table.columns}
    if missing:
        raise ECGDataError(None, _missing_columns_problem(missing), path)
    if len(table) == 0:
        raise ECGDataError(None, "the file has a header but no rows", path)
    if index is not None:
        return table.set_index(index)
    table = table.set_index(table.columns[0])
    if str(table.index.name).startswith("Unnamed"):
        table.index.name = None  # as `read_csv(index_col=0)` names a blank header
    return table


def ptbxl_class_descriptions(scp_statements, label_set, classes, mapping):
    """Human-readable names of `classes` (see `ptbxl_label_map`).

    Statement classes take their `description`; a diagnostic subclass that is
    also a statement takes that statement's, another one the descriptions of
    its statements joined with "; "; superclasses the names PTB-XL gives them.
    Entries are `None` where nothing applies (no `description` column).
    """
    if "description" not in scp_statements.columns:
        return [None] * len(classes)
    described = scp_statements["description"].dropna().to_dict()
    if label_set == "superdiagnostic":
        return [SUPERCLASS_DESCRIPTIONS.get(name) for name in classes]
    out = []
    for name in classes:
        if name in described:
            out.append(described[name])
            continue
        members = [described[c] for c, t in mapping.items() if t == name]
        out.append("; ".join(members) if members else None)
    return out


def ptbxl_label_map(scp_statements, label_set):
    """Maps each SCP statement to the label(s) it contributes in `label_set`.

    Args:
        scp_statements: the `scp_statements.csv` table indexed by statement.
        label_set: one of `LABEL_SETS`.

    Returns:
        `(classes, mapping)`: the sorted class list of the set (fixed by the
        statements table, so it does not depend on which records are loaded)
        and a dict statement -> class for the statements that count.
    """
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}.")
    check_statement_columns(scp_statements, label_set)
    table = scp_statements
    if label_set == "all":
        mapping = {code: code for code in table.index}
    elif label_set in ("diagnostic", "subdiagnostic", "superdiagnostic"):
        diagnostic = table[table["diagnostic"] == 1.0]
        column = {
            "diagnostic": None,
            "subdiagnostic": "diagnostic_subclass",
            "superdiagnostic": "diagnostic_class",
        }[label_set]
        mapping = {}
        for code, row in diagnostic.iterrows():
            target = code if column is None else row[column]
            if isinstance(target, str) and target:  # NaN aggregates are skipped
                mapping[code] = target
    else:
        mapping = {code: code for code in table.index[table[label_set] == 1.0]}
    classes = sorted(set(mapping.values()))
    return classes, mapping


def _parse_scp_codes(ecg_id, text, known, path):
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ECGDataError(ecg_id, f"malformed scp_codes {text!r}", path) from error
    if not isinstance(codes, dict):
        raise ECGDataError(ecg_id, f"malformed scp_codes {text!r}", path)
    unknown = sorted(code for code in codes if code not in known)
    if unknown:
        raise ECGDataError(
            ecg_id,
            f"unknown label(s) {unknown} in scp_codes (not in scp_statements.csv)",
            path,
        )
    return codes


def _resolve_ptbxl_leads(leads):
    if leads is None:
        return STANDARD_LEADS
    if isinstance(leads, str):
        raise ValueError(f"leads must be a sequence of lead names, got {leads!r}.")
    lookup = {name.lower(): name for name in STANDARD_LEADS}
    resolved = []
    for name in leads:
        canonical = lookup.get(str(name).strip().lower())
        if canonical is None:
            raise ValueError(
                f"unknown lead name {name!r}; PTB-XL leads are {list(STANDARD_LEADS)}."
            )
        resolved.append(canonical)
    if not resolved or len(set(resolved)) != len(resolved):
        raise ValueError(f"leads must be non-empty without duplicates, got {leads}.")
    return tuple(resolved)


def load_ptbxl(
    path,
    sampling_rate=100,
    label_set="all",
    folds=None,
    drop_unlabelled=True,
    cache_dir=None,
    on_error="raise",
    leads=None,
    progress=False,
    workers=None,
):
    """Loads PTB-XL from its PhysioNet layout.

    The folder holds `ptbxl_database.csv`, `scp_statements.csv` and
    `records100/` / `records500/` (paths in the `filename_lr` / `filename_hr`
    columns). Labels follow the PTB-XL benchmark (Strodthoff et al. 2020):
    every statement key of `scp_codes` counts, whatever its likelihood.

    | label_set         | classes | statements used                     |
    |-------------------|---------|-------------------------------------|
    | `all`             | 71      | all                                 |
    | `diagnostic`      | 44      | diagnostic == 1                     |
    | `subdiagnostic`   | 23      | their `diagnostic_subclass`         |
    | `superdiagnostic` | 5       | their `diagnostic_class`            |
    | `form`            | 19      | form == 1                           |
    | `rhythm`          | 12      | rhythm == 1                         |

    Records listed in the CSV whose header is absent on disk are skipped with
    one `ECGDataWarning` (count and first ids). The number of records dropped
    as unlabelled and missing is also in `metadata.attrs`
    (`"num_unlabelled_dropped"`, `"num_missing"`).

    Args:
        path: the PTB-XL folder.
        sampling_rate: 100 (`records100`) or 500 (`records500`).
        label_set: one of `LABEL_SETS`.
        folds: `strat_fold` values to keep (e.g. `TRAIN_FOLDS`); `None` keeps all.
        drop_unlabelled: drop records with no statement of `label_set` (as the
            benchmark does).
        cache_dir: folder of the `SignalCache`; `None` (default) is
            `keras_ecg.data.signal_cache.default_cache_dir()`
            (`$KERAS_ECG_CACHE_DIR`, else `~/.cache/keras-ecg/signals`);
            `False` or `"none"` decodes into RAM instead (each record held
            once, float32). The signals are written into the cache chunk by
            chunk as they are decoded (memory does not grow with the number
            of records); a second identical call reads them from a memory map
            instead of the WFDB files, an interrupted build resumes after its
            last finished chunk, and processes loading the same data at once
            share the decoding.
        on_error: `"raise"` raises the first `ECGDataError`; `"skip"` skips bad
            records with one `ECGDataWarning`.
        leads: optional lead names to keep, in this order (case-insensitive);
            default all 12 in the standard order.
        progress: print reading progress (records done / total).
        workers: processes decoding records; `None` uses `min(cpu_count, 4)`,
            1 decodes in this process. The result does not depend on it.

    Returns:
        An `ECGDataset` with float32 `(timesteps, leads)` signals in mV,
        `record_ids` the `ecg_id`s as `str`, multi-hot float32 `labels` over
        the sorted `classes`, `folds` the `strat_fold`s and `metadata` the
        CSV rows (indexed by integer `ecg_id`) of the kept records.
        `class_descriptions` come from `scp_statements.csv` (see
        `ptbxl_class_descriptions`); `label_vocabulary` is `"scp"` for the
        statement-level label sets and `"scp_subdiagnostic"` /
        `"scp_superdiagnostic"` for the aggregated ones.

    Raises:
        ECGDataError: a metadata csv is missing, unreadable, empty or lacks a
            column this call needs (the message names the file, the columns
            and what needs them); or a record is bad (see `on_error`).

    Example:

    ```python
    train = keras_ecg.data.load_ptbxl(
        "ptbxl/", label_set="superdiagnostic", folds=keras_ecg.data.TRAIN_FOLDS
    )
    ```
    """
    root = pathlib.Path(path).expanduser()
    sampling_rate, leads = _check_ptbxl_arguments(
        root, sampling_rate, label_set, on_error, leads
    )
    # Step 1: the metadata tables.
    database, statements, paths = _read_ptbxl_metadata(root, sampling_rate, label_set)
    file_column = _file_column(sampling_rate)
    # Step 2: select the records (folds, on disk, labelled).
    if folds is not None:
        folds = sorted({int(f) for f in np.atleast_1d(folds)})
        database = database[database["strat_fold"].isin(folds)]
    database, num_missing = _keep_on_disk(root, database, file_column, sampling_rate)
    log = FailureLog(on_error)
    classes, mapping = ptbxl_label_map(statements, label_set)
    label_rows, valid = _ptbxl_label_rows(
        database, statements, classes, mapping, log, paths[0]
    )
    num_unlabelled = 0
    if drop_unlabelled:
        labelled = label_rows.any(axis=1)
        num_unlabelled = int((valid & ~labelled).sum())
        valid &= labelled
    if num_unlabelled:
        logger.info(
            "dropped %d PTB-XL record(s) without a %r label", num_unlabelled, label_set
        )
    database = database[valid]
    label_rows = label_rows[valid]
    header_paths = [root / f"{name}.hea" for name in database[file_column]]
    # Step 3: read the signals, chunk by chunk (into the cache if any).
    cache, key, settings = None, None, None
    cache_dir = resolve_cache_dir(cache_dir)
    if cache_dir is not None:
        cache = SignalCache(cache_dir)
        settings = {
            "reader": "load_ptbxl",
            "sampling_rate": sampling_rate,
            "label_set": label_set,
            "folds": folds,
            "drop_unlabelled": drop_unlabelled,
            "on_error": on_error,
            "leads": list(leads),
        }
        files = list(paths)
        for header_path in header_paths:
            files += [header_path, header_path.with_suffix(".dat")]
        key = cache.key(root, settings, files)
    # Labels and metadata are rebuilt from the CSV on every load, so only the
    # decoded signals and the kept ids go into the cache.
    result = read_records(
        [(str(p), int(i)) for p, i in zip(header_paths, database.index, strict=True)],
        functools.partial(
            _decode_ptbxl_record, leads=leads, sampling_rate=sampling_rate
        ),
        _keep_ptbxl_record,
        on_error=on_error,
        cache=cache,
        key=key,
        index_fields=None
        if settings is None
        else {"source": str(root.resolve()), **settings},
        workers=workers,
        progress=progress,
        what="reading PTB-XL records",
    )
    failures = log.messages() + list(result.failures)
    warn_skipped(failures, str(root))
    # Step 4: the dataset of the kept records.
    kept = np.asarray(result.record_ids, dtype=np.int64)
    positions = database.index.get_indexer(kept)
    metadata = database.iloc[positions].copy()
    metadata.attrs["num_unlabelled_dropped"] = num_unlabelled
    metadata.attrs["num_missing"] = num_missing
    metadata.attrs["num_failed"] = len(failures)
    return ECGDataset(
        signals=result.signals,
        record_ids=[str(ecg_id) for ecg_id in kept],
        sampling_rate=sampling_rate,
        lead_names=leads,
        labels=label_rows[positions],
        classes=list(classes),
        folds=metadata["strat_fold"].to_numpy(dtype=np.int64),
        metadata=metadata,
        class_descriptions=ptbxl_class_descriptions(
            statements, label_set, classes, mapping
        ),
        label_vocabulary=LABEL_VOCABULARY[label_set],
    )


def _file_column(sampling_rate):
    return "filename_lr" if sampling_rate == 100 else "filename_hr"


def _check_ptbxl_arguments(root, sampling_rate, label_set, on_error, leads):
    """Validated `(sampling_rate, leads)` of `load_ptbxl`."""
    if (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, (int, np.integer))
        or int(sampling_rate) not in PTBXL_SAMPLING_RATES
    ):
        raise ECGDataError(
            root,
            f"unsupported sampling rate {sampling_rate!r}: PTB-XL provides "
            f"{PTBXL_SAMPLING_RATES} Hz",
            root,
        )
    check_on_error(on_error)
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}.")
    return int(sampling_rate), _resolve_ptbxl_leads(leads)


def _read_ptbxl_metadata(root, sampling_rate, label_set):
    """`(database, statements, (database_path, statements_path))`."""
    database_path = root / "ptbxl_database.csv"
    statements_path = root / "scp_statements.csv"
    for csv_path in (database_path, statements_path):
        if not csv_path.is_file():
            raise ECGDataError(root, f"{csv_path.name} not found", csv_path)
    file_column = _file_column(sampling_rate)
    database = _read_metadata_csv(
        database_path,
        {
            "ecg_id": "the record ids",
            "scp_codes": "the labels",
            "strat_fold": "the folds",
            file_column: f"sampling_rate={sampling_rate}",
        },
        index="ecg_id",
    )
    statements = _read_metadata_csv(
        statements_path,
        {c: f"label_set={label_set!r}" for c in STATEMENT_COLUMNS[label_set]},
    )
    return database, statements, (database_path, statements_path)


def _keep_on_disk(root, database, file_column, sampling_rate):
    """The rows whose header is on disk, warning once about the others."""
    # Existence first: only the records on disk need their labels parsed.
    # One directory walk instead of ~20k stat calls (most records are absent).
    on_disk = set()
    for folder, _, names in os.walk(root / f"records{sampling_rate}"):
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        on_disk.update(f"{relative}/{n[:-4]}" for n in names if n.endswith(".hea"))
    present = np.array([name in on_disk for name in database[file_column]], dtype=bool)
    num_missing = int((~present).sum())
    if num_missing:
        missing_ids = database.index[~present][:10].tolist()
        warnings.warn(
            f"{num_missing} of {len(present)} PTB-XL record(s) listed in "
            f"ptbxl_database.csv are not in {root} at {sampling_rate} Hz and "
            f"were skipped (first ecg_ids: {missing_ids})",
            ECGDataWarning,
            stacklevel=3,
        )
    return database[present], num_missing


def _ptbxl_label_rows(database, statements, classes, mapping, log, database_path):
    """Multi-hot rows over `classes` and which rows parsed (`log` gets the rest)."""
    column_of = {name: j for j, name in enumerate(classes)}
    known = set(statements.index)
    label_rows = np.zeros((len(database), len(classes)), dtype=np.float32)
    valid = np.ones(len(database), dtype=bool)
    for i, (ecg_id, text) in enumerate(database["scp_codes"].items()):
        try:
            codes = _parse_scp_codes(ecg_id, text, known, database_path)
        except ECGDataError as error:
            log.record(error)
            valid[i] = False
            continue
        for code in codes:
            target = mapping.get(code)
            if target is not None:
                label_rows[i, column_of[target]] = 1.0
    return label_rows, valid


def _decode_ptbxl_record(task, leads, sampling_rate):
    """Decodes one PTB-XL record (runs in a worker process)."""
    header_path, ecg_id = task
    rec = read_wfdb_record(header_path, ecg_id, leads, sampling_rate=None)
    if rec.sampling_rate != sampling_rate:
        raise ECGDataError(
            ecg_id,
            f"unsupported sampling rate: header says "
            f"{rec.sampling_rate:g} Hz, expected {sampling_rate} Hz",
            header_path,
        )
    return rec.signal, None


def _keep_ptbxl_record(task, value, counts):
    return task[1], value[0], None


def split_ptbxl(dataset):
    """Splits a PTB-XL `ECGDataset` into the recommended folds.

    Returns:
        `(train, val, test)` for `TRAIN_FOLDS`, `VAL_FOLDS` and `TEST_FOLDS`
        (any may be empty when the folds are not loaded).
    """
    return tuple(
        dataset.select_folds(folds) for folds in (TRAIN_FOLDS, VAL_FOLDS, TEST_FOLDS)
    )
