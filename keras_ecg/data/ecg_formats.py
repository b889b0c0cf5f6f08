"""Clinical ECG exports, read through ecgdatakit, and the record files of a folder.

Hospitals export GE MUSE XML, Philips Sierra XML, HL7 aECG, DICOM waveform,
EDF/EDF+ and SCP-ECG. `read_ecg_file` reads one such file with ecgdatakit
(an optional extra: `pip install "keras-ecg[formats]"`), whose `FileParser`
recognises the format from the file's content; the signal then goes through
the same checks, lead selection by name and resampling as a WFDB record.
`read_record` dispatches between the two readers, and `list_record_files`
lists the records of a folder: WFDB headers plus every other file ecgdatakit
recognises.
"""

import dataclasses
import logging
import os
import pathlib
import warnings

import numpy as np

from keras_ecg.data import wfdb_folder
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import FormatsExtraMissingError
from keras_ecg.data.leads import LIMB_LEAD_COEFFICIENTS
from keras_ecg.data.leads import assemble_leads
from keras_ecg.data.leads import lead_key
from keras_ecg.data.wfdb_folder import WFDBRecord
from keras_ecg.data.wfdb_folder import resample_signal

logger = logging.getLogger(__name__)

# ecgdatakit's names of the formats keras-ecg reads and tests. It knows
# others (ISHNE and EDAN Holter, MFER, Mortara, XLE, AliveCor): those are
# refused with a clear error rather than read untested.
CLINICAL_FORMATS = (
    "GE MUSE XML",
    "Philips Sierra XML",
    "HL7 aECG",
    "DICOM Waveform",
    "EDF/EDF+",
    "SCP-ECG",
)
INSTALL_HINT = 'pip install "keras-ecg[formats]"'
# Without ecgdatakit nothing can be sniffed; files with these suffixes in a
# folder are then reported as records that need the extra.
_CLINICAL_SUFFIXES = (".xml", ".dcm", ".dicom", ".edf", ".scp")
# Files beside a `.hea` with its stem belong to that WFDB record.
_WFDB_SUFFIX = ".hea"


@dataclasses.dataclass
class ECGFileRecord(WFDBRecord):
    """One decoded record of a clinical export (the fields of `WFDBRecord`).

    `comments` is empty; `source_format` names the format (one of
    `CLINICAL_FORMATS`) and `derived_leads` the requested limb leads that
    were computed from `derived_from` because the file does not store them.
    """


def _ecgdatakit(path=None, record=None):
    """The ecgdatakit module, or a `FormatsExtraMissingError` naming the file."""
    try:
        import ecgdatakit
    except ImportError:
        raise FormatsExtraMissingError(
            record,
            "not a WFDB record; reading clinical ECG exports (GE MUSE XML, "
            "Philips Sierra XML, HL7 aECG, DICOM waveform, EDF/EDF+, SCP-ECG) "
            f"needs ecgdatakit: {INSTALL_HINT}",
            path,
        ) from None
    return ecgdatakit


def detect_format(path):
    """The ecgdatakit format name of `path` from its content, or `None`.

    Raises:
        FormatsExtraMissingError: ecgdatakit is not installed.
    """
    ecgdatakit = _ecgdatakit(path, pathlib.Path(path).name)
    found = ecgdatakit.FileParser.detect_format(path)
    return None if found is None else found["name"]


def _exact_rate(parsed, lead):
    """The lead's sampling rate as the file states it.

    ecgdatakit rounds rates to integers on `Lead.sampling_rate` and keeps
    the exact value in its per-format metadata: resampling needs the exact
    one (a 333.33 Hz EDF signal is not a 333 Hz one).
    """
    meta = parsed.raw_metadata
    exact = None
    if isinstance(meta.get("exact_sampling_rates"), dict):  # EDF
        exact = meta["exact_sampling_rates"].get(lead.label)
    elif isinstance(meta.get("rhythm_time"), dict):  # HL7 aECG
        exact = meta["rhythm_time"].get("sampling_rate_exact")
    elif isinstance(meta.get("multiplex_groups"), list):  # DICOM
        words = ("MEDIAN", "REPRESENTATIVE", "AVERAGE")
        rhythm = [
            g
            for g in meta["multiplex_groups"]
            if not any(w in str(g.get("label", "")).upper() for w in words)
        ]
        if rhythm:
            exact = rhythm[0].get("sampling_frequency")
    if exact and np.isfinite(float(exact)) and abs(exact - lead.sampling_rate) < 1:
        return float(exact)
    return float(lead.sampling_rate)


def _parse(path, record):
    """ecgdatakit's `ECGRecord` of `path` in mV, errors as `ECGDataError`."""
    ecgdatakit = _ecgdatakit(path, record)
    fmt = ecgdatakit.FileParser.detect_format(path)
    if fmt is None:
        raise ECGDataError(
            record,
            "not a recognised ECG file: neither a WFDB record (.hea) nor one of "
            f"{list(CLINICAL_FORMATS)}",
            path,
        )
    name = fmt["name"]
    if name not in CLINICAL_FORMATS:
        raise ECGDataError(
            record,
            f"{name} files are not supported (keras-ecg reads WFDB and "
            f"{', '.join(CLINICAL_FORMATS)})",
            path,
        )
    errors = (ecgdatakit.ECGDataKitError, ValueError, OSError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed = ecgdatakit.FileParser.parse(path, auto_scale=True, units="mV")
        except ImportError as error:
            # DICOM needs pydicom, ecgdatakit's `dicom` extra.
            raise FormatsExtraMissingError(
                record, f"reading {name} needs {error.name}: {INSTALL_HINT}", path
            ) from error
        except errors as error:
            problem = " ".join(str(error).split()) or type(error).__name__
            raise ECGDataError(
                record, f"unreadable {name} file: {problem}", path
            ) from error
    for warning in caught:
        message = " ".join(str(warning.message).split())
        # A checksum that does not match, or data records missing at the end
        # (ecgdatakit then reads the complete ones), mean a damaged file:
        # never predict on part of one.
        if isinstance(warning.message, ecgdatakit.ChecksumWarning) or (
            "file truncated" in message.lower()
        ):
            raise ECGDataError(record, f"corrupt {name} file: {message}", path)
        logger.info("%s (%s): %s", record, path, message)
    return name, parsed


def _stored_signal(parsed, name, needed, record, path):
    """`(signal, names, rate)` of the leads in `needed` (ecgdatakit `Lead`s)."""
    leads = parsed.leads
    used = [lead for lead in leads if lead_key(lead.label) in needed]
    if not used:
        # Nothing usable: assemble_leads names what is missing.
        return np.zeros((1, 0)), [], None
    for lead in used:
        if lead.is_raw or str(lead.units).lower() != "mv":
            unit = lead.units or lead.resolution_unit or "no unit"
            raise ECGDataError(
                record,
                f"lead {lead.label} has no amplitude calibration in a voltage unit "
                f"({unit}): its samples cannot be converted to mV",
                path,
            )
    rates = {lead.label: _exact_rate(parsed, lead) for lead in used}
    if len(set(rates.values())) > 1:
        raise ECGDataError(
            record,
            f"leads sampled at different rates in one {name} file: "
            + _grouped(rates, "{:g} Hz"),
            path,
        )
    lengths = {lead.label: len(lead.samples) for lead in used}
    if len(set(lengths.values())) > 1:
        raise ECGDataError(
            record,
            f"leads of different lengths in one {name} file: "
            + _grouped(lengths, "{} samples"),
            path,
        )
    signal = np.stack([np.asarray(lead.samples, np.float64) for lead in used], 1)
    return signal, [lead.label for lead in used], next(iter(rates.values()))


def _grouped(values, unit):
    """`"I II V2 at 500 Hz; V1 at 250 Hz"`: leads grouped by their value."""
    groups = {}
    for label, value in values.items():
        groups.setdefault(value, []).append(label)
    return "; ".join(f"{' '.join(v)} at {unit.format(k)}" for k, v in groups.items())


def read_ecg_file(path, record_id=None, leads=STANDARD_LEADS, sampling_rate=None):
    """Reads and validates one clinical ECG export (see `CLINICAL_FORMATS`).

    The format is recognised from the content by ecgdatakit's `FileParser`,
    which also converts the samples to mV from the unit and scale the file
    states. Leads are matched by name (`keras_ecg.data.leads.lead_key`);
    limb leads the file does not store (GE MUSE stores I, II, V1-V6) are
    derived from two stored ones (Einthoven / Goldberger). The signal is
    resampled like a WFDB record.

    Args:
        path: the file.
        record_id: identifier used in error messages (default: file name).
        leads: lead names to return, in this order, or `None` for the
            stored leads in file order (nothing derived).
        sampling_rate: resample to this rate; `None` keeps the file's.

    Returns:
        An `ECGFileRecord`, float32 signal in mV.

    Raises:
        ECGDataError: unrecognised, unsupported, truncated or corrupt file
            (checksum mismatch), leads that are missing and cannot be
            derived, uncalibrated leads, leads of different rates or lengths,
            NaN/inf samples, an unsupported sampling rate.
        FormatsExtraMissingError: ecgdatakit (or pydicom for DICOM) is not
            installed.

    Example:

    ```python
    record = read_ecg_file("muse_export.xml", sampling_rate=100)
    record.derived_leads  # ('III', 'aVR', 'aVL', 'aVF')
    ```
    """
    path = pathlib.Path(path)
    record = record_id if record_id is not None else path.name
    if not path.is_file():
        raise ECGDataError(record, "file not found", path)
    name, parsed = _parse(path, record)
    if leads is None:
        needed = {lead_key(lead.label) for lead in parsed.leads}
    else:
        # The requested leads and every limb lead, which derivation may use.
        needed = {lead_key(n) for n in leads} | set(LIMB_LEAD_COEFFICIENTS)
    stored, names, rate = _stored_signal(parsed, name, needed, record, path)
    requested = tuple(names) if leads is None else tuple(str(n) for n in leads)
    physical, derived, basis = assemble_leads(stored, names, requested, record, path)
    if physical.shape[0] == 0:
        raise ECGDataError(record, "record has no samples", path)
    bad = ~np.isfinite(physical)
    if bad.any():
        raise ECGDataError(
            record, f"{int(bad.sum())} non-finite (NaN/inf or padding) sample(s)", path
        )
    if sampling_rate is not None and rate != float(sampling_rate):
        signal = resample_signal(physical, rate, sampling_rate, record, path)
        out_rate = sampling_rate
    else:
        signal = physical.astype(np.float32)
        out_rate = int(rate) if float(rate).is_integer() else rate
    return ECGFileRecord(
        signal=signal,
        sampling_rate=out_rate,
        lead_names=requested,
        comments=[],
        original_sampling_rate=rate,
        original_length=int(physical.shape[0]),
        source_format=name,
        derived_leads=tuple(derived),
        derived_from=tuple(basis),
    )


def is_wfdb_path(path):
    """Whether `path` is read as a WFDB record: a `.hea` file."""
    return pathlib.Path(path).suffix.lower() == _WFDB_SUFFIX


def read_record(path, record_id=None, leads=STANDARD_LEADS, sampling_rate=None):
    """`read_wfdb_record` for a `.hea` file, `read_ecg_file` for anything else."""
    if is_wfdb_path(path):
        # Looked up on the module: tests replace it to prove a cache hit.
        return wfdb_folder.read_wfdb_record(path, record_id, leads, sampling_rate)
    return read_ecg_file(path, record_id, leads, sampling_rate)


def record_source(path):
    """`(record_id, file)` of a record given on the command line or in a list.

    A `.hea` path, or a path naming a WFDB record without suffix, is WFDB; a
    WFDB signal file (`.dat`, `.mat`) next to its header stands for it; any
    other existing file is a clinical export (recognised when read).
    """
    path = pathlib.Path(path)
    if is_wfdb_path(path):
        return path.stem, path
    header = path.with_suffix(_WFDB_SUFFIX)
    if path.is_file():
        if path.suffix.lower() in (".dat", ".mat") and header.is_file():
            return header.stem, header
        return path.name, path
    # No such file: a WFDB record named without its suffix (`records/00001`).
    return path.stem, header


def list_record_files(root, recursive=True):
    """The records of a folder, sorted by path: `[(record_id, file)]`.

    WFDB records are their `.hea` files (id: the path relative to `root`
    without suffix); the files beside a header with its stem (`.dat`, `.mat`,
    annotations) belong to it. Every other file whose content ecgdatakit
    recognises as an ECG (any format: those keras-ecg does not read fail
    when read, naming the file) is a record whose id is its path relative
    to `root`, suffix included. Hidden files and folders are skipped.
    Without ecgdatakit, files with a clinical export's usual suffix are
    listed (they fail when read, with the install hint) and others skipped.
    """
    root = pathlib.Path(root)
    sniffer = _Sniffer()
    found, ignored = [], 0
    # os.walk and plain strings: a folder may hold 100k files, and a stat or
    # a pathlib object per file would dominate listing them.
    for directory, folders, names in os.walk(root):
        folders[:] = [] if not recursive else [f for f in folders if f[0] != "."]
        stems = {n[:-4] for n in names if n.lower().endswith(_WFDB_SUFFIX)}
        for name in names:
            if name[0] == ".":
                continue
            stem, suffix = os.path.splitext(name)
            if suffix.lower() == _WFDB_SUFFIX:
                found.append((os.path.join(directory, name), False))
                continue
            if stem in stems:
                continue
            path = os.path.join(directory, name)
            if sniffer.is_ecg(path, suffix):
                found.append((path, True))
            else:
                ignored += 1
    if ignored:
        logger.info("%s: %d file(s) that are not ECG records ignored", root, ignored)
    prefix = str(root).rstrip(os.sep) + os.sep
    records = []
    for path, clinical in sorted(found, key=lambda f: pathlib.PurePath(f[0])):
        relative = path[len(prefix) :] if path.startswith(prefix) else path
        if not clinical:
            relative = relative[: -len(_WFDB_SUFFIX)]
        records.append((relative.replace(os.sep, "/"), pathlib.Path(path)))
    return records


class _Sniffer:
    """Whether a file is an ECG, importing ecgdatakit only when first asked
    (a folder of WFDB records alone never needs it)."""

    def __init__(self):
        self.parser = None
        self.available = None

    def is_ecg(self, path, suffix):
        if self.available is None:
            try:
                from ecgdatakit import FileParser
            except ImportError:
                self.available = False
            else:
                self.parser, self.available = FileParser, True
        if not self.available:
            return suffix.lower() in _CLINICAL_SUFFIXES
        return self.parser.detect_format(path) is not None
