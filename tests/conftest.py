"""Shared pytest configuration.

The suite runs once per Keras backend (see the Makefile). Tests marked
`backend_agnostic` touch no Keras backend (pure numpy / pandas / wfdb), so they
run under the tensorflow pass only, unless `KERAS_ECG_ALL_BACKENDS=1`.

The readers cache decoded signals in `default_cache_dir()` by default: every
test process (each pytest-xdist worker imports this file) points
`KERAS_ECG_CACHE_DIR` at its own temporary folder, removed at exit, so no test
writes to the user's cache and tests never see each other's entries.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

import keras
import numpy as np
import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("KERAS_ECG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
)

_TEST_CACHE_DIR = tempfile.mkdtemp(prefix="keras_ecg_test_cache_")
os.environ["KERAS_ECG_CACHE_DIR"] = _TEST_CACHE_DIR
atexit.register(shutil.rmtree, _TEST_CACHE_DIR, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="run slow tests"
    )


def pytest_collection_modifyitems(config, items):
    run_agnostic = (
        keras.backend.backend() == "tensorflow"
        or os.environ.get("KERAS_ECG_ALL_BACKENDS") == "1"
    )
    skip_agnostic = pytest.mark.skip(
        reason="backend-agnostic test: runs in the tensorflow pass"
    )
    skip_slow = pytest.mark.skip(reason="slow test: pass --run-slow")
    for item in items:
        if "backend_agnostic" in item.keywords and not run_agnostic:
            item.add_marker(skip_agnostic)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)


def _require(path):
    if not path.exists():
        message = f"real ECG data not found at {path} (set KERAS_ECG_SHARED_DATA)"
        if os.environ.get("CI"):
            # In CI the data must be there: a silent skip would hide a broken setup.
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ptbxl_dir():
    """The PTB-XL subset (folds 1-9, records100 + part of records500)."""
    return _require(SHARED_DATA / "ptbxl")


@pytest.fixture(scope="session")
def cinc_dir():
    """156 PhysioNet/CinC 2021 records (.hea + .mat, 500 Hz)."""
    return _require(SHARED_DATA / "cinc2021")


@pytest.fixture(autouse=True)
def _seed_everything():
    keras.utils.set_random_seed(1337)
    np.random.seed(1337)
    yield


@pytest.fixture(scope="session")
def ptbxl_signals(ptbxl_dir):
    """The first 64 PTB-XL records at 100 Hz as a `(64, 1000, 12)` float32 array.

    Read with `wfdb` directly (not through keras_ecg's reader) so model tests do
    not depend on the data layer under test.
    """
    import wfdb

    paths = sorted((ptbxl_dir / "records100" / "00000").glob("*_lr.hea"))[:64]
    signals = [wfdb.rdsamp(str(p.with_suffix("")))[0] for p in paths]
    return np.stack(signals).astype("float32")
