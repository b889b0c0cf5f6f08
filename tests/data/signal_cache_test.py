import json
import os

import numpy as np
import pandas as pd
import pytest

from keras_ecg.data import signal_cache
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.signal_cache import CACHE_VERSION
from keras_ecg.data.signal_cache import SignalCache

pytestmark = pytest.mark.backend_agnostic


def _dataset(seed=0):
    rng = np.random.default_rng(seed)
    lengths = (7, 3, 5)
    return ECGDataset(
        signals=[rng.normal(size=(n, 2)).astype(np.float32) for n in lengths],
        record_ids=["a", "b", "c"],
        sampling_rate=100,
        lead_names=("I", "II"),
        labels=np.array([[1, 0], [0, 0], [1, 1]], dtype=np.float32),
        classes=["x", "y"],
        folds=np.array([1, 2, 9]),
        metadata=pd.DataFrame(
            {"age": [50.0, np.nan, 70.0], "dx": [["1"], [], ["1", "2"]]},
            index=pd.Index(["a", "b", "c"], name="record_id"),
        ),
    )


def _files(tmp_path):
    files = []
    for name in ("r1.hea", "r1.dat"):
        path = tmp_path / "src" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"0123")
        files.append(path)
    return files


def test_round_trip_gives_identical_memmapped_arrays(tmp_path):
    cache = SignalCache(tmp_path / "cache")
    dataset = _dataset()
    cache.save("k1", dataset, extra={"failures": ["record z: bad"]})
    signals_path, index_path = cache.paths("k1")
    flat = np.load(signals_path)
    # One flat float32 array, records concatenated along time.
    np.testing.assert_array_equal(flat, np.concatenate(dataset.signals))
    assert json.loads(index_path.read_text())["offsets"] == [0, 7, 10, 15]
    loaded, extra = cache.load("k1")
    assert extra == {"failures": ["record z: bad"]}
    assert loaded.record_ids == dataset.record_ids
    assert loaded.lead_names == dataset.lead_names
    assert loaded.sampling_rate == 100 and loaded.classes == ["x", "y"]
    np.testing.assert_array_equal(loaded.labels, dataset.labels)
    np.testing.assert_array_equal(loaded.folds, dataset.folds)
    for a, b in zip(loaded.signals, dataset.signals, strict=True):
        assert isinstance(a, np.memmap) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        loaded.signals[0][0, 0] = 1.0  # read-only view of the cache
    assert list(loaded.metadata["dx"]) == [["1"], [], ["1", "2"]]
    np.testing.assert_array_equal(loaded.metadata["age"], [50.0, np.nan, 70.0])
    assert loaded.class_descriptions is None and loaded.label_vocabulary is None


def test_round_trip_keeps_class_descriptions_and_vocabulary(tmp_path):
    cache = SignalCache(tmp_path / "cache")
    dataset = _dataset()
    dataset.class_descriptions = ["atrial fibrillation", None]
    dataset.label_vocabulary = "snomed"
    cache.save("k1", dataset)
    loaded, _ = cache.load("k1")
    assert loaded.class_descriptions == ["atrial fibrillation", None]
    assert loaded.label_vocabulary == "snomed"
    # An index written before these fields existed still loads.
    _, index_path = cache.paths("k1")
    index = json.loads(index_path.read_text())
    del index["dataset"]["class_descriptions"], index["dataset"]["label_vocabulary"]
    index_path.write_text(json.dumps(index))
    old, _ = cache.load("k1")
    assert old.class_descriptions is None and old.label_vocabulary is None
    assert old.classes == ["x", "y"]


def test_key_depends_on_source_settings_files_and_version(tmp_path, monkeypatch):
    cache = SignalCache(tmp_path / "cache")
    files = _files(tmp_path)
    source = tmp_path / "src"
    key = cache.key(source, {"sampling_rate": 100}, files)
    assert key == cache.key(source, {"sampling_rate": 100}, files)
    assert key != cache.key(source, {"sampling_rate": 500}, files)
    assert key != cache.key(tmp_path, {"sampling_rate": 100}, files)
    assert key != cache.key(source, {"sampling_rate": 100}, files[:1])
    files[1].write_bytes(b"01234")  # size change
    changed = cache.key(source, {"sampling_rate": 100}, files)
    assert changed != key
    os.utime(files[1], ns=(1, 1))  # mtime change at equal size
    assert cache.key(source, {"sampling_rate": 100}, files) != changed
    monkeypatch.setattr(signal_cache, "CACHE_VERSION", CACHE_VERSION + 1)
    assert cache.key(source, {"sampling_rate": 100}, files) != changed


def test_miss_for_unknown_or_inconsistent_entries(tmp_path):
    cache = SignalCache(tmp_path / "cache")
    assert cache.load("nothing") is None
    cache.save("k", _dataset())
    signals_path, index_path = cache.paths("k")
    np.save(signals_path, np.zeros((3, 2), dtype=np.float32))  # wrong length
    assert cache.load("k") is None
    cache.save("k", _dataset())
    index = json.loads(index_path.read_text())
    index["version"] = CACHE_VERSION + 1
    index_path.write_text(json.dumps(index))
    assert cache.load("k") is None


def test_interrupted_write_leaves_no_entry_and_resumes(tmp_path):
    cache = SignalCache(tmp_path / "cache")
    dataset = ECGDataset(
        signals=[np.full((3, 2), i, dtype=np.float32) for i in range(150)],
        record_ids=[f"r{i}" for i in range(150)],
        sampling_rate=100,
        lead_names=("I", "II"),
    )
    cache.fail_after_chunks = 1  # killed after the first chunk of 64 records
    with pytest.raises(KeyboardInterrupt):
        cache.save("k", dataset)
    assert cache.load("k") is None
    assert [e["status"] for e in cache.entries()] == ["partial"]
    cache.fail_after_chunks = None
    cache.save("k", dataset)
    loaded, _ = cache.load("k")
    assert loaded.record_ids == dataset.record_ids
    for a, b in zip(loaded.signals, dataset.signals, strict=True):
        np.testing.assert_array_equal(a, b)
    # No partial folder and no temporary files are left.
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["k.json", "k.lock", "k.npy"]


def test_default_cache_dir_follows_the_environment_then_xdg(monkeypatch, tmp_path):
    env = {"HOME": str(tmp_path)}
    expected = tmp_path / ".cache" / "keras-ecg" / "signals"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert signal_cache.default_cache_dir(env) == expected
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    assert signal_cache.default_cache_dir(env) == tmp_path / "xdg/keras-ecg/signals"
    env["KERAS_ECG_CACHE_DIR"] = str(tmp_path / "mine")
    assert signal_cache.default_cache_dir(env) == tmp_path / "mine"


def test_resolve_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", str(tmp_path / "default"))
    resolve = signal_cache.resolve_cache_dir
    assert resolve(None) == tmp_path / "default"
    assert resolve(tmp_path / "x") == tmp_path / "x"
    assert resolve(str(tmp_path / "x")) == tmp_path / "x"
    for off in (False, "none", "None"):
        assert resolve(off) is None
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", "none")
    assert resolve(None) is None
    assert resolve(tmp_path / "x") == tmp_path / "x"


def test_list_and_remove_default_to_the_default_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", str(tmp_path / "default"))
    SignalCache(signal_cache.default_cache_dir()).save("k", _dataset())
    assert [e["key"] for e in signal_cache.list_caches()] == ["k"]
    assert signal_cache.remove_caches()[0] == ["k"]
    assert signal_cache.list_caches() == []
