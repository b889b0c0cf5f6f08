"""Clinical exports written from a real PTB-XL record read back like the record.

The files are written by tests/data/format_writers.py (GE MUSE XML, Philips
Sierra XML, HL7 aECG, SCP-ECG from their specifications; DICOM with pydicom,
EDF+ with edfio). The reference is the WFDB original read with `wfdb` itself.
"""

import json
import re
import shutil
import sys
import warnings

import numpy as np
import pytest
import wfdb
from scipy import signal as scipy_signal

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_formats import CLINICAL_FORMATS
from keras_ecg.data.ecg_formats import list_record_files
from keras_ecg.data.ecg_formats import read_ecg_file
from keras_ecg.data.ecg_formats import record_source
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.errors import FormatsExtraMissingError
from keras_ecg.data.wfdb_folder import load_wfdb_folder
from keras_ecg.data.wfdb_folder import read_wfdb_record
from keras_ecg.models.ecg_preprocessor import ECGPreprocessor
from tests.data.format_writers import EXPORTS
from tests.data.format_writers import write_dicom_ecg
from tests.data.format_writers import write_edf_plus
from tests.data.format_writers import write_export
from tests.data.format_writers import write_sierra_xml
from tests.models.record_helpers import link_record
from tests.models.record_helpers import ptbxl_header

pytestmark = pytest.mark.backend_agnostic

ECG_ID = "00001"
FS = 500
# Einthoven / Goldberger, written out here independently of keras_ecg.data.leads:
# lead = a * I + b * II.
FORMULAS = {"III": (-1, 1), "aVR": (-0.5, -0.5), "aVL": (1, -0.5), "aVF": (-0.5, 1)}


def _standard_order(signal, names):
    index = {name.lower(): j for j, name in enumerate(names)}
    return signal[:, [index[name.lower()] for name in STANDARD_LEADS]]


@pytest.fixture(scope="module")
def original(ptbxl_dir):
    """`(header, signal)`: PTB-XL record 1 at 500 Hz, read with wfdb, in mV."""
    header = ptbxl_header(ptbxl_dir, ECG_ID, FS)
    signal, fields = wfdb.rdsamp(str(header.with_suffix("")))
    return header, _standard_order(signal, fields["sig_name"])


@pytest.fixture(scope="module")
def exports(tmp_path_factory, original):
    """format -> `(path, quantum_mv, stored_leads)`, one file per format."""
    folder = tmp_path_factory.mktemp("exports")
    written = {}
    for fmt, (name, _, _) in EXPORTS.items():
        quantum, stored = write_export(fmt, folder / name, original[1], FS)
        written[fmt] = (folder / name, quantum, stored)
    return written


def _tolerance(signal, quantum, stored):
    """Per-lead bound of |read - original| in mV.

    A stored lead is off by at most half a quantum. A derived one, a * I +
    b * II of quantised leads, by (|a| + |b|) quanta / 2 plus how far the
    original lead is from the formula (PTB-XL's leads are rounded to 1 uV
    separately: up to 1.5 uV).
    """
    tolerance = np.full(len(STANDARD_LEADS), quantum / 2)
    lead_i, lead_ii = signal[:, 0], signal[:, 1]
    for name, (a, b) in FORMULAS.items():
        if name not in stored:
            j = STANDARD_LEADS.index(name)
            mismatch = np.abs(signal[:, j] - (a * lead_i + b * lead_ii)).max()
            tolerance[j] = (abs(a) + abs(b)) * quantum / 2 + mismatch
    # float32 output.
    return tolerance + 1e-6


def test_every_format_keras_ecg_reads_has_a_writer_here():
    assert set(EXPORTS) == set(CLINICAL_FORMATS)


@pytest.mark.parametrize("fmt", list(EXPORTS))
def test_each_format_reads_back_the_wfdb_original(exports, original, fmt):
    header, signal = original
    path, quantum, stored = exports[fmt]
    record = read_ecg_file(path)
    assert record.source_format == fmt
    assert record.sampling_rate == FS and record.original_sampling_rate == FS
    assert record.lead_names == STANDARD_LEADS
    assert record.signal.dtype == np.float32 and record.signal.shape == signal.shape
    tolerance = _tolerance(signal, quantum, stored)
    error = np.abs(record.signal - signal).max(axis=0)
    assert (error <= tolerance).all(), dict(zip(STANDARD_LEADS, error / tolerance))
    derived = tuple(name for name in STANDARD_LEADS if name not in stored)
    assert record.derived_leads == derived
    assert record.derived_from == (("I", "II") if derived else ())

    # At the model's rate: the WFDB original resampled by keras-ecg's own
    # WFDB reader, within the bound times the gain (L1 norm) of the
    # anti-aliasing filter scipy.signal.resample_poly builds for 500 -> 100 Hz.
    at_100 = read_ecg_file(path, sampling_rate=100)
    reference = read_wfdb_record(header, sampling_rate=100)
    assert at_100.sampling_rate == 100 and at_100.original_sampling_rate == FS
    taps = scipy_signal.firwin(2 * 10 * 5 + 1, 1 / 5, window=("kaiser", 5.0))
    error = np.abs(at_100.signal - reference.signal).max(axis=0)
    assert (error <= np.abs(taps).sum() * tolerance + 1e-6).all()


def test_the_format_is_recognised_from_the_content(exports, original, tmp_path):
    """Files renamed with a misleading suffix, or none, read the same."""
    renamed = {
        "GE MUSE XML": "muse.dat",  # a .dat without a .hea beside it
        "SCP-ECG": "scp_without_suffix",
        "EDF/EDF+": "edf_export.xml",
        "DICOM Waveform": "dicom_export.txt",
    }
    for fmt, name in renamed.items():
        path, _, _ = exports[fmt]
        shutil.copy(path, tmp_path / name)
        assert record_source(tmp_path / name) == (name, tmp_path / name)
        moved = read_ecg_file(tmp_path / name)
        assert moved.source_format == fmt
        np.testing.assert_array_equal(moved.signal, read_ecg_file(path).signal)


def test_a_folder_mixes_wfdb_records_and_clinical_exports(exports, original, tmp_path):
    header, _ = original
    folder = tmp_path / "data"
    link_record(header, folder)  # 00001_hr.hea + .dat
    for fmt in ("GE MUSE XML", "HL7 aECG"):
        shutil.copy(exports[fmt][0], folder / exports[fmt][0].name)
    (folder / "sub").mkdir()
    shutil.copy(exports["SCP-ECG"][0], folder / "sub" / "ecg.scp")
    # Not records: text, a table, a hidden file.
    (folder / "README.txt").write_text("exports of ward 3\n")
    (folder / "labels.csv").write_text("record_id,NORM\n")
    shutil.copy(exports["EDF/EDF+"][0], folder / ".hidden.edf")
    expected_ids = ["00001_hr", "aecg.xml", "muse.xml", "sub/ecg.scp"]
    assert [r for r, _ in list_record_files(folder)] == expected_ids
    assert [r for r, _ in list_record_files(folder, recursive=False)] == (
        expected_ids[:3]
    )

    data = load_wfdb_folder(folder, sampling_rate=100, workers=1)
    assert data.record_ids == expected_ids
    assert list(data.metadata["format"]) == ["WFDB", "HL7 aECG", "GE MUSE XML"] + [
        "SCP-ECG"
    ]
    derived = ["III", "aVR", "aVL", "aVF"]
    assert list(data.metadata["derived_leads"]) == [[], [], derived, derived]
    assert data.labels is None  # no #Dx anywhere
    for record_id, signal in zip(data.record_ids[1:], data.signals[1:]):
        alone = read_ecg_file(folder / record_id, sampling_rate=100).signal
        np.testing.assert_array_equal(signal, alone)
    # Through the cache: the same records and metadata, read back.
    cache = tmp_path / "cache"
    first = load_wfdb_folder(folder, sampling_rate=100, cache_dir=cache, workers=1)
    second = load_wfdb_folder(folder, sampling_rate=100, cache_dir=cache, workers=1)
    assert second.record_ids == first.record_ids == expected_ids
    assert list(second.metadata["derived_leads"]) == [[], [], derived, derived]
    for a, b in zip(first.signals, data.signals):
        np.testing.assert_array_equal(a, b)
    # One file on its own is a dataset too.
    single = load_wfdb_folder(folder / "muse.xml", sampling_rate=100)
    assert single.record_ids == ["muse.xml"]


@pytest.fixture(scope="module")
def bad_exports(tmp_path_factory, exports, original):
    """name -> (path, what the error says)."""
    folder = tmp_path_factory.mktemp("bad")
    _, signal = original

    def cut(fmt, name, fraction):
        data = exports[fmt][0].read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])

    cut("GE MUSE XML", "muse_truncated.xml", 0.5)
    cut("SCP-ECG", "scp_truncated.scp", 0.7)
    cut("EDF/EDF+", "edf_truncated.edf", 0.7)
    garbled = bytearray(exports["SCP-ECG"][0].read_bytes())
    garbled[-100] ^= 0x55  # one byte of the rhythm data
    (folder / "scp_garbled.scp").write_bytes(bytes(garbled))
    # Ten samples of aVR marked missing with the Waveform Padding Value.
    write_dicom_ecg(
        folder / "dicom_padding.dcm",
        signal,
        FS,
        STANDARD_LEADS,
        padding_at=(slice(100, 110), 3),
    )
    (folder / "garbage.xml").write_bytes(np.random.default_rng(0).bytes(3000))
    write_sierra_xml(folder / "six_leads.xml", signal[:, :6], FS, STANDARD_LEADS[:6])
    rates = [FS] * 6 + [FS // 2] + [FS] * 5
    write_edf_plus(folder / "rates.edf", signal, FS, STANDARD_LEADS, rates=rates)
    muse = exports["GE MUSE XML"][0].read_text(encoding="iso-8859-1")
    uncalibrated = muse.replace(
        "<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>", ""
    )
    (folder / "uncalibrated.xml").write_text(uncalibrated, encoding="iso-8859-1")
    # An aECG whose V1 sequence stops 1000 samples early.
    aecg = exports["HL7 aECG"][0].read_text()
    v1 = aecg.index('code="MDC_ECG_LEAD_V1"')
    start = aecg.index("<digits>", v1) + len("<digits>")
    end = aecg.index("</digits>", start)
    kept = " ".join(aecg[start:end].split()[:4000])
    (folder / "lengths.xml").write_text(aecg[:start] + kept + aecg[end:])
    kardia = {"recordedAt": "2021-03-04T10:11:12Z", "patientID": "1", "data": {}}
    (folder / "kardia.json").write_text(json.dumps(kardia))
    return {
        "muse_truncated.xml": r"unreadable GE MUSE XML file: .*no element found",
        "scp_truncated.scp": r"unreadable SCP-ECG file: .*declares \d+ bytes but the"
        r" file has \d+",
        "edf_truncated.edf": r"corrupt EDF/EDF\+ file: EDF file truncated",
        "scp_garbled.scp": r"corrupt SCP-ECG file: .*CRC mismatch in: record, "
        "Section 6",
        "dicom_padding.dcm": r"10 non-finite \(NaN/inf or padding\) sample",
        "garbage.xml": r"not a recognised ECG file",
        "six_leads.xml": r"missing lead\(s\) \['V1', .*'V6'\]: the file has 6 "
        r"lead\(s\).*cannot be derived",
        "rates.edf": r"different rates in one EDF/EDF\+ file: I II III aVR aVL aVF"
        r" V2 V3 V4 V5 V6 at 500 Hz; V1 at 250 Hz",
        "uncalibrated.xml": r"lead I has no amplitude calibration",
        "lengths.xml": r"leads of different lengths in one HL7 aECG file: I II III"
        r" aVR aVL aVF V2 V3 V4 V5 V6 at 5000 samples; V1 at 4000 samples",
        "kardia.json": r"AliveCor Kardia JSON files are not supported",
    }, folder


def test_bad_files_fail_with_one_line_naming_the_file(bad_exports):
    problems, folder = bad_exports
    for name, problem in problems.items():
        with pytest.raises(ECGDataError) as caught:
            read_ecg_file(folder / name)
        message = str(caught.value)
        assert message.startswith(f"record {name} ({folder / name}): "), message
        assert re.search(problem, message), message
        assert "\n" not in message


def test_skip_bad_records_reads_the_good_ones_and_reports_the_others(
    bad_exports, exports, tmp_path
):
    problems, bad = bad_exports
    folder = tmp_path / "mixed"
    shutil.copytree(bad, folder)
    shutil.copy(exports["HL7 aECG"][0], folder / "good.xml")
    with pytest.raises(ECGDataError, match=r"record dicom_padding\.dcm"):
        load_wfdb_folder(folder, workers=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_wfdb_folder(folder, on_error="skip", workers=1)
    assert data.record_ids == ["good.xml"]
    # In a folder, a file that is no ECG at all (garbage.xml) is not a record:
    # it is passed over, the others are skipped and reported.
    reported = len(problems) - 1
    ours = [w for w in caught if issubclass(w.category, ECGDataWarning)]
    assert len(ours) == 1
    assert f"skipped {reported} unreadable record(s)" in str(ours[0].message)
    assert "garbage.xml" not in str(ours[0].message)
    with pytest.warns(ECGDataWarning, match=f"skipped {reported}"):
        prepared = ECGPreprocessor(100).prepare(folder, on_error="skip")
    assert prepared.record_ids == ["good.xml"]
    assert list(prepared.metadata["format"]) == ["HL7 aECG"]


def test_without_the_formats_extra_clinical_files_say_what_to_install(
    exports, original, tmp_path, monkeypatch
):
    header, _ = original
    folder = tmp_path / "data"
    link_record(header, folder)
    shutil.copy(exports["GE MUSE XML"][0], folder / "muse.xml")
    (folder / "README.txt").write_text("not a record\n")
    # Importing ecgdatakit now raises ImportError.
    monkeypatch.setitem(sys.modules, "ecgdatakit", None)
    with pytest.raises(FormatsExtraMissingError) as caught:
        read_ecg_file(folder / "muse.xml")
    message = str(caught.value)
    assert message.startswith(f"record muse.xml ({folder / 'muse.xml'}): ")
    assert 'pip install "keras-ecg[formats]"' in message
    # Listed by suffix (content cannot be sniffed), so it is reported, not lost.
    assert [r for r, _ in list_record_files(folder)] == ["00001_hr", "muse.xml"]
    with pytest.warns(ECGDataWarning, match=r"muse\.xml.*keras-ecg\[formats\]"):
        data = load_wfdb_folder(folder, on_error="skip", workers=1)
    assert data.record_ids == ["00001_hr"]
