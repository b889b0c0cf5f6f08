"""Reader for folders of WFDB records (PhysioNet / CinC 2020-2021 layout)."""

import dataclasses
import fractions
import functools
import logging
import math
import os
import pathlib
import re
import tempfile
import warnings

import numpy as np
import pandas as pd
from scipy import signal as scipy_signal

from keras_ecg.data.ecg_dataset import SNOMED
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.errors import check_on_error
from keras_ecg.data.errors import warn_skipped
from keras_ecg.data.leads import lead_key
from keras_ecg.data.record_stream import read_records
from keras_ecg.data.signal_cache import SignalCache
from keras_ecg.data.signal_cache import resolve_cache_dir
from keras_ecg.data.snomed import class_codes
from keras_ecg.data.snomed import scored_snomed_classes
from keras_ecg.data.snomed import snomed_descriptions

logger = logging.getLogger(__name__)

# Larger up/down factors mean a sampling frequency that is not a sensible
# rational multiple of the target (e.g. 333.333 Hz): refuse rather than build
# a huge polyphase filter.
MAX_RESAMPLE_FACTOR = 1000

_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
_DATA_SUFFIXES = (".hea", ".dat", ".mat")

# Label sets of a folder of SNOMED-labelled records: every code found, or the
# PhysioNet/CinC Challenge 2021's scored classes (equivalent codes merged).
WFDB_LABEL_SETS = ("all", "scored")


@dataclasses.dataclass
class WFDBRecord:
    """One decoded WFDB record.

    Args:
        signal: `(num_timesteps, num_leads)` float32 array in mV.
        sampling_rate: samples per second of `signal`.
        lead_names: names of the columns of `signal`.
        comments: header comment lines, without the leading `#`.
        original_sampling_rate: the header's sampling frequency.
        original_length: the header's number of samples.
        source_format: the file format (`"WFDB"`, or a clinical format of
            `keras_ecg.data.ecg_formats.CLINICAL_FORMATS`).
        derived_leads: returned leads the file does not store, computed
            from the two leads `derived_from` (clinical exports only).
        derived_from: see `derived_leads`; `()` when nothing was derived.
    """

    signal: np.ndarray
    sampling_rate: float
    lead_names: tuple
    comments: list
    original_sampling_rate: float
    original_length: int
    source_format: str = "WFDB"
    derived_leads: tuple = ()
    derived_from: tuple = ()


def resolve_leads(requested, available, record, path=None):
    """Indices of the `requested` lead names in `available`.

    Names match by `keras_ecg.data.leads.lead_key`: case, blanks and the
    prefixes "ECG" / "Lead" are ignored (`aVR` matches `AVR` and `Lead aVR`).

    Raises:
        ECGDataError: a requested lead is absent or `available` has duplicates.
    """
    keys = [lead_key(name) for name in available]
    indices = []
    missing = []
    for name in requested:
        key = lead_key(name)
        if keys.count(key) > 1:
            raise ECGDataError(
                record, f"lead {name!r} appears more than once in the header", path
            )
        if key not in keys:
            missing.append(str(name))
        else:
            indices.append(keys.index(key))
    if missing:
        raise ECGDataError(
            record,
            f"lead(s) {missing} not found: the record has {len(available)} "
            f"lead(s) {list(available)}",
            path,
        )
    return indices


def resample_ratio(source_rate, target_rate, record=None, path=None):
    """`(up, down)` integers with `target / source == up / down`.

    Raises:
        ECGDataError: the rates are not positive, or their ratio is not a
            rational number with factors up to `MAX_RESAMPLE_FACTOR`.
    """
    if not (source_rate and math.isfinite(source_rate) and source_rate > 0) or not (
        target_rate and math.isfinite(target_rate) and target_rate > 0
    ):
        raise ECGDataError(
            record,
            f"unsupported sampling rate: cannot resample {source_rate} Hz to "
            f"{target_rate} Hz",
            path,
        )
    source = fractions.Fraction(source_rate).limit_denominator(MAX_RESAMPLE_FACTOR)
    target = fractions.Fraction(target_rate).limit_denominator(MAX_RESAMPLE_FACTOR)
    ratio = target / source
    exact = abs(float(source) - source_rate) <= 1e-9 * source_rate and abs(
        float(target) - target_rate
    ) <= 1e-9 * max(target_rate, 1)
    if (
        not exact
        or ratio.numerator > MAX_RESAMPLE_FACTOR
        or ratio.denominator > MAX_RESAMPLE_FACTOR
    ):
        raise ECGDataError(
            record,
            f"unsupported sampling rate: {source_rate} Hz cannot be resampled to "
            f"{target_rate} Hz with a rational factor up/down <= "
            f"{MAX_RESAMPLE_FACTOR}",
            path,
        )
    return ratio.numerator, ratio.denominator


def resample_signal(signal, source_rate, target_rate, record=None, path=None):
    """Anti-aliased polyphase resampling along axis 0 (`scipy.signal.resample_poly`).

    The output has `ceil(len(signal) * up / down)` samples.
    """
    if float(source_rate) == float(target_rate):
        return np.asarray(signal, dtype=np.float32)
    up, down = resample_ratio(source_rate, target_rate, record, path)
    out = scipy_signal.resample_poly(
        np.asarray(signal, dtype=np.float64), up, down, axis=0
    )
    return out.astype(np.float32)


def _fix_record_line(text):
    """Strips a file extension from the record name (`E00271.mat 12 ...`).

    The original CinC 2020 Georgia headers name the record with its `.mat`
    suffix, which wfdb rejects; WFDB record names cannot contain a dot, so
    everything after the first dot of the first token is dropped.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        first, _, rest = stripped.partition(" ")
        name, slash, segments = first.partition("/")
        if "." in name:
            lines[i] = f"{name.split('.', 1)[0]}{slash}{segments} {rest}".rstrip()
            return "\n".join(lines) + "\n", True
        return text, False
    return text, False


_FORMAT_SPEC = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_SPEC = re.compile(
    r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(\S+))?$"
)
_FS_SPEC = re.compile(r"^((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:/.*)?$")


@dataclasses.dataclass
class _Header:
    record_name: str
    n_sig: int
    fs: float
    sig_len: "int | None"
    file_name: list
    fmt: list
    samps_per_frame: list
    skew: list
    byte_offset: list
    adc_gain: list
    baseline: list
    units: list
    sig_name: list
    comments: list


def _parse_header(text, record, path):
    """Parses a single-segment WFDB header (the subset ECG records use).

    A small own parser rather than wfdb's: wfdb's parses each field through
    pandas lookups and costs ~10 ms per header, which dominated loading.
    Field defaults follow the WFDB header specification.
    """
    lines, comments = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            comments.append(line.strip(" \t#"))
        elif line:
            lines.append(line)
    if not lines:
        raise ECGDataError(record, "malformed header: it is empty", path)
    tokens = lines[0].split()
    if "/" in tokens[0]:
        raise ECGDataError(record, "multi-segment records are not supported", path)
    try:
        n_sig = int(tokens[1])
    except (IndexError, ValueError):
        raise ECGDataError(
            record, f"malformed header record line {lines[0]!r}", path
        ) from None
    fs = None
    if len(tokens) > 2:
        match = _FS_SPEC.match(tokens[2])
        if match is None:
            raise ECGDataError(
                record, f"malformed sampling frequency {tokens[2]!r}", path
            )
        fs = float(match.group(1))
    if not fs:
        raise ECGDataError(record, "header has no sampling frequency", path)
    sig_len = None
    if len(tokens) > 3:
        try:
            sig_len = int(tokens[3])
        except ValueError:
            raise ECGDataError(
                record, f"malformed signal length {tokens[3]!r}", path
            ) from None
    signal_lines = lines[1:]
    if n_sig <= 0 or len(signal_lines) != n_sig:
        raise ECGDataError(
            record,
            f"malformed header: declares {n_sig} signal(s) but has "
            f"{len(signal_lines)} signal line(s)",
            path,
        )
    header = _Header(tokens[0], n_sig, fs, sig_len, *([] for _ in range(9)), comments)
    for line in signal_lines:
        fields = line.split(maxsplit=8)
        format_match = _FORMAT_SPEC.match(fields[1]) if len(fields) > 1 else None
        gain_match = _GAIN_SPEC.match(fields[2]) if len(fields) > 2 else None
        if format_match is None or (len(fields) > 2 and gain_match is None):
            raise ECGDataError(record, f"malformed signal line {line!r}", path)
        try:
            adc_zero = int(fields[4]) if len(fields) > 4 else 0
        except ValueError:
            raise ECGDataError(
                record, f"malformed signal line {line!r}", path
            ) from None
        gain, baseline, units = (None, None, None)
        if gain_match is not None:
            gain, baseline, units = gain_match.groups()
        gain = float(gain) if gain is not None else 0.0
        header.file_name.append(fields[0])
        header.fmt.append(format_match.group(1))
        header.samps_per_frame.append(int(format_match.group(2) or 1))
        header.skew.append(int(format_match.group(3) or 0))
        header.byte_offset.append(int(format_match.group(4) or 0))
        # An ADC gain of 0 means the default of 200 per the WFDB specification.
        header.adc_gain.append(gain if gain != 0 else 200.0)
        header.baseline.append(int(baseline) if baseline is not None else adc_zero)
        header.units.append(units or "mV")
        header.sig_name.append(fields[8].strip() if len(fields) > 8 else None)
    return header


def _is_fast_format(header):
    """True for the common layout: one 16-bit file, one sample per frame."""
    files = set(header.file_name)
    return (
        len(files) == 1
        and all(fmt == "16" for fmt in header.fmt)
        and all(spf == 1 for spf in header.samps_per_frame)
        and all(skew == 0 for skew in header.skew)
        and len(set(header.byte_offset)) == 1
    )


def _read_fast(header, directory, record, header_path):
    data_path = directory / header.file_name[0]
    if not data_path.is_file():
        raise ECGDataError(record, f"signal file {data_path.name} not found", data_path)
    offset = header.byte_offset[0]
    n_sig = header.n_sig
    raw = np.fromfile(data_path, dtype="<i2", offset=offset)
    sig_len = header.sig_len
    if sig_len is None:
        sig_len = raw.size // n_sig
    expected = sig_len * n_sig
    if raw.size < expected:
        raise ECGDataError(
            record,
            f"truncated or corrupt signal file {data_path.name}: expected "
            f"{sig_len} x {n_sig} samples, found {raw.size}",
            data_path,
        )
    digital = raw[:expected].reshape(sig_len, n_sig)
    gain = np.asarray(header.adc_gain, dtype=np.float64)
    baseline = np.asarray(header.baseline, dtype=np.float64)
    if not np.all(np.isfinite(gain)):
        raise ECGDataError(record, f"invalid ADC gain {list(gain)}", header_path)
    physical = (digital - baseline) / gain
    # -32768 is WFDB's "invalid sample" code for format 16.
    physical[digital == -32768] = np.nan
    return physical


def _read_with_wfdb(header, header_path, text, renamed, record):
    # Imported here: the fast path above reads the common formats without it.
    import wfdb

    directory = header_path.parent
    try:
        if not renamed:
            return wfdb.rdrecord(str(header_path.with_suffix(""))).p_signal
        # The renamed header goes into a temporary folder next to links to the
        # data files; the data itself is never copied.
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            name = header.record_name
            (tmp / f"{name}.hea").write_text(text)
            for file_name in set(header.file_name):
                os.symlink(directory / file_name, tmp / file_name)
            return wfdb.rdrecord(str(tmp / name)).p_signal
    except ECGDataError:
        raise
    except FileNotFoundError as error:
        raise ECGDataError(
            record, f"signal file not found: {error}", header_path
        ) from error
    except Exception as error:
        raise ECGDataError(
            record,
            f"unreadable signal file: {type(error).__name__}: {error}",
            header_path,
        ) from error


def _unit_scales(header, record, path):
    scales = []
    for unit in header.units:
        key = unit.strip().lower()
        if key not in _UNIT_SCALE_TO_MV:
            raise ECGDataError(record, f"unsupported signal units {unit!r}", path)
        scales.append(_UNIT_SCALE_TO_MV[key])
    return np.asarray(scales, dtype=np.float64)


def read_wfdb_record(
    header_path, record_id=None, leads=STANDARD_LEADS, sampling_rate=None
):
    """Reads and validates one WFDB record.

    Accepts both the standard header (`E00271 12 500 5000`) and the original
    CinC Georgia form whose record name carries the `.mat` suffix. 16-bit
    single-file records (PTB-XL `.dat`, CinC `.mat`) are decoded with numpy,
    other formats through `wfdb.rdrecord`.

    Args:
        header_path: path of the `.hea` file.
        record_id: identifier used in error messages (default: the file stem).
        leads: lead names to return, in this order (case-insensitive match
            against the header), or `None` for all leads in header order.
        sampling_rate: resample to this rate (polyphase, anti-aliased);
            `None` keeps the header's rate.

    Returns:
        A `WFDBRecord` whose signal is float32 in mV.

    Raises:
        ECGDataError: missing or truncated files, malformed header, NaN/inf
            samples, missing leads, unsupported units or sampling rate.
    """
    header_path = pathlib.Path(header_path)
    record = record_id if record_id is not None else header_path.stem
    try:
        text = header_path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError as error:
        raise ECGDataError(record, "header file not found", header_path) from error
    except OSError as error:
        raise ECGDataError(
            record, f"unreadable header: {error}", header_path
        ) from error
    text, renamed = _fix_record_line(text)
    header = _parse_header(text, record, header_path)
    names = tuple(header.sig_name)
    if any(name is None for name in names):
        raise ECGDataError(
            record, "header signal lines have no lead names", header_path
        )
    indices = (
        list(range(header.n_sig))
        if leads is None
        else resolve_leads(leads, names, record, header_path)
    )
    if _is_fast_format(header):
        physical = _read_fast(header, header_path.parent, record, header_path)
    else:
        physical = _read_with_wfdb(header, header_path, text, renamed, record)
    physical = physical[:, indices] * _unit_scales(header, record, header_path)[indices]
    bad = ~np.isfinite(physical)
    if bad.any():
        raise ECGDataError(
            record,
            f"{int(bad.sum())} non-finite (NaN/inf or invalid) sample(s)",
            header_path,
        )
    if physical.shape[0] == 0:
        raise ECGDataError(record, "record has no samples", header_path)
    fs = float(header.fs)
    if sampling_rate is not None and fs != float(sampling_rate):
        signal = resample_signal(physical, fs, sampling_rate, record, header_path)
        rate = sampling_rate
    else:
        signal = physical.astype(np.float32)
        rate = fs
    return WFDBRecord(
        signal=signal,
        sampling_rate=rate,
        lead_names=tuple(names[i] for i in indices),
        comments=list(header.comments),
        original_sampling_rate=fs,
        original_length=int(physical.shape[0]),
    )


def parse_comments(comments):
    """`{"dx": [codes], "age": float, "sex": str}` from CinC header comments."""
    info = {"dx": [], "age": np.nan, "sex": None}
    for line in comments:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "dx":
            info["dx"] = [code.strip() for code in value.split(",") if code.strip()]
        elif key == "age":
            try:
                info["age"] = float(value)
            except ValueError:
                info["age"] = np.nan  # "Unknown", "NaN"
        elif key == "sex":
            info["sex"] = value if value and value.lower() != "unknown" else None
    return info


def _code_sort_key(code):
    return (0, int(code), "") if code.isdigit() else (1, 0, code)


def _canonical_leads(leads):
    if leads is None:
        return None
    if isinstance(leads, str):
        raise ValueError(f"leads must be a sequence of lead names, got {leads!r}.")
    leads = tuple(str(name) for name in leads)
    if not leads:
        raise ValueError("leads must name at least one lead.")
    lowered = [lead_key(name) for name in leads]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"leads contains duplicates: {leads}.")
    return leads


def _list_sources(root, recursive):
    """`[(record_id, file)]` of a folder's records, or of one record file."""
    # Imported here: ecg_formats builds on this module.
    from keras_ecg.data import ecg_formats

    if root.is_file():
        return [ecg_formats.record_source(root)]
    return ecg_formats.list_record_files(root, recursive)


def _cache_files(root, files):
    """The files a folder read depends on: records and WFDB signal files."""
    out = []
    for header in files:
        out.append(header)
        if header.suffix != ".hea":
            continue
        for suffix in _DATA_SUFFIXES[1:]:
            candidate = header.with_suffix(suffix)
            if candidate.exists():
                out.append(candidate)
    return out


def load_wfdb_folder(
    path,
    sampling_rate=100,
    leads=STANDARD_LEADS,
    classes=None,
    unknown_labels="ignore",
    recursive=True,
    cache_dir=None,
    on_error="raise",
    min_duration_s=None,
    label_set="all",
    progress=False,
    workers=None,
):
    """Loads a folder of WFDB records (`.hea` + `.dat`/`.mat`), e.g. CinC 2021.

    Labels are SNOMED-CT codes from the `#Dx:` header comment. Every record is
    resampled to `sampling_rate` with `scipy.signal.resample_poly` and its leads
    selected/reordered by name. Records may differ in length.

    The folder may also hold clinical ECG exports (GE MUSE XML, Philips Sierra
    XML, HL7 aECG, DICOM waveform, EDF/EDF+, SCP-ECG), recognised from their
    content and read with `keras_ecg.data.ecg_formats.read_ecg_file` (the
    `formats` extra, ecgdatakit): limb leads they do not store are derived.
    They carry no `#Dx` labels (their `dx` is empty: attach labels with
    `keras_ecg.data.label_table.apply_label_table`).

    The steps: list the headers, then read and resample the records chunk by
    chunk in `workers` processes (`keras_ecg.data.record_stream`), straight
    into the cache when there is one, then assemble labels and metadata.

    Args:
        path: folder holding the records, or one record file (a `.hea` or a
            clinical export).
        sampling_rate: target samples per second (int).
        leads: lead names to keep, in order (case-insensitive: `aVR` matches
            `AVR`); `None` keeps the header order, which must then be the same
            for every record.
        classes: label codes (str) for the multi-hot columns. `None` uses the
            classes of `label_set`; `[]` loads without labels (`labels=None`),
            e.g. for pretraining. A class may name several codes joined with
            "|" (`"713427006|59118001"`): it is positive when any of them is.
        unknown_labels: with `classes` (or `label_set="scored"`), `"ignore"`
            drops codes outside the classes; `"error"` raises an
            `ECGDataError` naming the record.
        recursive: also search sub-folders.
        cache_dir: folder of the `SignalCache`; `None` (default) is
            `keras_ecg.data.signal_cache.default_cache_dir()`
            (`$KERAS_ECG_CACHE_DIR`, else `~/.cache/keras-ecg/signals`);
            `False` or `"none"` decodes into RAM instead (each record held
            once, float32). The decoded records are written into the cache
            chunk by chunk as they are read (memory does not grow with the
            number of records) and come back memory-mapped; a second call
            with the same files and settings skips decoding, an interrupted
            build resumes after its last finished chunk, and processes
            loading the same data at once share the decoding.
        on_error: `"raise"` raises the first `ECGDataError`; `"skip"` skips bad
            records and emits one `ECGDataWarning` summarising them.
        min_duration_s: drop records shorter than this many seconds.
        progress: print reading progress (records done / total).
        label_set: one of `WFDB_LABEL_SETS`, used when `classes` is `None`.
            `"all"`: every code found, sorted (numerically for numeric codes).
            `"scored"`: the 26 classes the PhysioNet/CinC Challenge 2021
            scores (its 30 scored codes, with the 4 pairs its evaluation
            treats as one diagnosis merged, e.g. `"713427006|59118001"`),
            whether or not any record has them.
        workers: processes decoding records; `None` uses `min(cpu_count, 4)`,
            1 decodes in this process. The result does not depend on it.

    Returns:
        An `ECGDataset` with `label_vocabulary="snomed"` and
        `class_descriptions` from the Challenge's SNOMED tables (`None` for a
        code they lack). `record_ids` are record names (the header path
        relative to `path`, without suffix; a clinical export's path relative
        to `path`, with its suffix); `metadata` is a DataFrame indexed by
        record id with columns `path`, `age`, `sex`, `dx` (all codes),
        `original_sampling_rate`, `original_length`, `format` (`"WFDB"` or
        the clinical format) and `derived_leads` (limb leads computed from
        two stored ones, `[]` for none).

    Raises:
        ValueError: `label_set` is not one of `WFDB_LABEL_SETS` (PTB-XL's
            label sets such as `"diagnostic"` apply to PTB-XL folders), or
            both `classes` and `label_set="scored"` are given.

    Example:

    ```python
    dataset = keras_ecg.data.load_wfdb_folder("cinc2021/", sampling_rate=100)
    in_ram = keras_ecg.data.load_wfdb_folder("cinc2021/", cache_dir=False)
    ```
    """
    root = pathlib.Path(path).expanduser()
    sampling_rate, leads, classes = _check_folder_arguments(
        root, sampling_rate, leads, classes, unknown_labels, on_error, label_set
    )
    # Step 1: list the records.
    sources = _list_sources(root, recursive)
    if not sources:
        raise ECGDataError(
            root,
            "no ECG records found (no .hea files, no recognised clinical exports)",
            root,
        )
    settings = {
        "reader": "load_wfdb_folder",
        # Records read through ecgdatakit keep their format in the metadata.
        "formats": 1,
        "sampling_rate": sampling_rate,
        "leads": None if leads is None else list(leads),
        "classes": classes,
        "unknown_labels": unknown_labels,
        "label_set": label_set,
        "recursive": recursive,
        "on_error": on_error,
        "min_duration_s": min_duration_s,
    }
    cache, key = None, None
    cache_dir = resolve_cache_dir(cache_dir)
    if cache_dir is not None:
        cache = SignalCache(cache_dir)
        key = cache.key(root, settings, _cache_files(root, [f for _, f in sources]))
    # Step 2: read and resample, chunk by chunk (into the cache if any).
    known_codes = None
    if classes is not None and unknown_labels == "error":
        known_codes = {code for name in classes for code in class_codes(name)}
    tasks = [(str(file), record_id) for record_id, file in sources]
    keeper = _FolderKeeper(sampling_rate, min_duration_s)
    result = read_records(
        tasks,
        functools.partial(
            _decode_folder_record,
            leads=leads,
            sampling_rate=sampling_rate,
            known_codes=known_codes,
            keep_lead_names=leads is None,
        ),
        keeper,
        on_error=on_error,
        cache=cache,
        key=key,
        index_fields={"source": str(root.resolve()), **settings},
        workers=workers,
        progress=progress,
        what="reading ECG records",
        check=_LeadOrderCheck if leads is None else None,
    )
    warn_skipped(result.failures, str(root))
    _warn_short(result.counts.get("short", 0), min_duration_s)
    if not result.signals:
        raise ECGDataError(root, "no readable records", root)
    # Step 3: labels and metadata from the kept records' header info.
    dataset = _assemble_folder_dataset(result, sampling_rate, leads, classes)
    logger.info("loaded %d records from %s", len(dataset), root)
    return dataset


def _check_folder_arguments(
    root, sampling_rate, leads, classes, unknown_labels, on_error, label_set
):
    """Validated `(sampling_rate, leads, classes)` of `load_wfdb_folder`."""
    if not root.exists():
        raise ECGDataError(root, "folder not found", root)
    check_on_error(on_error)
    if unknown_labels not in ("ignore", "error"):
        raise ValueError(
            f"unknown_labels must be 'ignore' or 'error', got {unknown_labels!r}."
        )
    if (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, (int, np.integer))
        or sampling_rate <= 0
    ):
        raise ECGDataError(
            root,
            f"unsupported sampling rate {sampling_rate!r}: use a positive integer",
            root,
        )
    leads = _canonical_leads(leads)
    if label_set not in WFDB_LABEL_SETS:
        raise ValueError(
            f"label_set for a WFDB folder must be one of {WFDB_LABEL_SETS}, got "
            f"{label_set!r}; PTB-XL label sets such as 'diagnostic' or "
            "'superdiagnostic' apply to PTB-XL folders (with ptbxl_database.csv)."
        )
    if label_set == "scored":
        if classes is not None:
            raise ValueError(
                "pass either `classes` or label_set='scored', not both "
                f"(got classes={classes!r})."
            )
        classes = scored_snomed_classes()
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes contains duplicates: {classes}.")
    return int(sampling_rate), leads, classes


def _decode_folder_record(task, leads, sampling_rate, known_codes, keep_lead_names):
    """Decodes one record of a folder (runs in a worker process).

    Returns:
        `(signal, info)`, `info` the JSON-able header facts the dataset keeps.
    """
    from keras_ecg.data.ecg_formats import read_record

    header_path, record_id = task
    header_path = pathlib.Path(header_path)
    rec = read_record(header_path, record_id, leads, sampling_rate)
    info = parse_comments(rec.comments)
    if known_codes is not None:
        unknown = [c for c in info["dx"] if c not in known_codes]
        if unknown:
            raise ECGDataError(
                record_id, f"unknown label(s) {unknown} not in `classes`", header_path
            )
    info = {
        "path": str(header_path),
        "age": info["age"],
        "sex": info["sex"],
        "dx": info["dx"],
        "original_sampling_rate": rec.original_sampling_rate,
        "original_length": rec.original_length,
        "format": rec.source_format,
        "derived_leads": list(rec.derived_leads),
    }
    if keep_lead_names:
        info["lead_names"] = list(rec.lead_names)
    return rec.signal, info


class _FolderKeeper:
    """The per-record check of a folder read: the minimum duration."""

    def __init__(self, sampling_rate, min_duration_s):
        self.sampling_rate = sampling_rate
        self.min_duration_s = min_duration_s

    def __call__(self, task, value, counts):
        header_path, record_id = task
        signal, info = value
        duration = signal.shape[0] / self.sampling_rate
        if self.min_duration_s is not None and duration < self.min_duration_s:
            counts["short"] = counts.get("short", 0) + 1
            return None
        return record_id, signal, info


class _LeadOrderCheck:
    """With `leads=None`: every kept record has the first one's lead order.

    Run over the kept records in record order (`read_records`' `check`),
    after the chunks were decoded, possibly by several processes.
    """

    def __init__(self):
        self.lead_names = None

    def __call__(self, record_id, info):
        names = tuple(info["lead_names"])
        if self.lead_names is None:
            self.lead_names = names
        elif [lead_key(n) for n in names] != [lead_key(n) for n in self.lead_names]:
            raise ECGDataError(
                record_id,
                f"leads {list(names)} differ from the first record's "
                f"{list(self.lead_names)}; pass `leads=` to select them by name",
                info["path"],
            )


def _assemble_folder_dataset(result, sampling_rate, leads, classes):
    """The `ECGDataset` of the kept records: labels from their `#Dx` codes."""
    rows = [{"record_id": r, **i} for r, i in zip(result.record_ids, result.infos)]
    lead_names = leads
    if lead_names is None:
        lead_names = tuple(rows[0]["lead_names"])
        for row in rows:
            del row["lead_names"]
    if classes is None:
        found = {code for row in rows for code in row["dx"]}
        label_classes = sorted(found, key=_code_sort_key)
    else:
        label_classes = list(classes)
    column_of_code = {}
    for j, name in enumerate(label_classes):
        for code in class_codes(name) if classes is not None else (name,):
            column_of_code.setdefault(code, []).append(j)
    labels = None
    if label_classes:
        labels = np.zeros((len(rows), len(label_classes)), dtype=np.float32)
        for i, row in enumerate(rows):
            for code in row["dx"]:
                labels[i, column_of_code.get(code, [])] = 1.0
    metadata = pd.DataFrame(rows).set_index("record_id")
    return ECGDataset(
        signals=result.signals,
        record_ids=list(result.record_ids),
        sampling_rate=sampling_rate,
        lead_names=tuple(lead_names),
        labels=labels,
        classes=label_classes,
        folds=None,
        metadata=metadata,
        class_descriptions=snomed_descriptions(label_classes),
        label_vocabulary=SNOMED,
    )


def _warn_short(num_short, min_duration_s):
    if num_short:
        warnings.warn(
            f"dropped {num_short} record(s) shorter than {min_duration_s} s "
            "(min_duration_s)",
            ECGDataWarning,
            stacklevel=3,
        )
