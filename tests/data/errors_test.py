import pickle
import warnings

import pytest

from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.errors import FailureLog


@pytest.mark.backend_agnostic
def test_message_names_record_path_and_problem():
    error = ECGDataError("E00271", "truncated signal file", path="/data/E00271.mat")
    assert isinstance(error, ValueError)
    assert str(error) == "record E00271 (/data/E00271.mat): truncated signal file"
    assert error.record == "E00271"
    assert error.problem == "truncated signal file"
    assert error.path == "/data/E00271.mat"
    assert str(ECGDataError(17, "unknown label")) == "record 17: unknown label"


@pytest.mark.backend_agnostic
def test_error_pickles():
    error = ECGDataError("A1", "bad", path="x.hea")
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error)
    assert (restored.record, restored.problem, restored.path) == ("A1", "bad", "x.hea")


@pytest.mark.backend_agnostic
def test_failure_log_raise_mode_reraises_first_error():
    log = FailureLog("raise")
    with pytest.raises(ECGDataError, match="record r1"):
        log.record(ECGDataError("r1", "bad"))


@pytest.mark.backend_agnostic
def test_failure_log_skip_mode_warns_once_with_count_and_first_failures():
    log = FailureLog("skip", max_listed=2)
    for i in range(4):
        log.record(ECGDataError(f"r{i}", "bad"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log.warn("folder")
    assert len(caught) == 1
    assert issubclass(caught[0].category, ECGDataWarning)
    message = str(caught[0].message)
    assert "skipped 4 unreadable record(s)" in message
    assert "record r0: bad; record r1: bad" in message
    assert "record r2" not in message


@pytest.mark.backend_agnostic
def test_failure_log_rejects_unknown_mode_and_silent_without_failures():
    with pytest.raises(ValueError, match="on_error"):
        FailureLog("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FailureLog("skip").warn()


@pytest.mark.backend_agnostic
def test_file_level_message_has_no_record():
    error = ECGDataError(None, "column 'ecg_id' missing", path="/d/ptbxl_database.csv")
    assert str(error) == "/d/ptbxl_database.csv: column 'ecg_id' missing"
    assert str(ECGDataError(None, "2 of 3 classes unmatched")) == (
        "2 of 3 classes unmatched"
    )
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error) and restored.record is None
