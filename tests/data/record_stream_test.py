import functools
import json
import os
import stat
import warnings

import numpy as np
import pytest

from keras_ecg.data import wfdb_folder
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.record_stream import read_records
from keras_ecg.data.signal_cache import SignalCache
from keras_ecg.data.signal_cache import list_caches
from keras_ecg.data.signal_cache import remove_caches
from keras_ecg.data.wfdb_folder import load_wfdb_folder

# Pure numpy / file I/O: the tensorflow pass runs them (see conftest.py).
AGNOSTIC = pytest.mark.backend_agnostic

NUM_RECORDS = 10
BAD = {3, 7}  # records whose decoding fails
SHORT = {5}  # records `_keep` drops


def _decode(task, log_path):
    """A record of `task + 1` timesteps and 2 leads; logs every call."""
    with open(log_path, "a") as f:
        f.write(f"{task}\n")
    if task in BAD:
        raise ECGDataError(f"r{task}", "corrupt")
    return np.arange(2 * (task + 1), dtype=np.float32).reshape(-1, 2) + task, task


def _keep(task, value, counts):
    signal, info = value
    assert info == task
    if task in SHORT:
        counts["short"] = counts.get("short", 0) + 1
        return None
    return f"r{task}", signal, {"n": task}


def _read(cache_dir, log_path, workers=1, on_error="skip"):
    cache = None if cache_dir is None else SignalCache(cache_dir)
    return read_records(
        list(range(NUM_RECORDS)),
        functools.partial(_decode, log_path=str(log_path)),
        _keep,
        on_error=on_error,
        cache=cache,
        key="k",
        workers=workers,
        chunk_records=3,
    )


def _decoded(log_path):
    return [int(line) for line in log_path.read_text().split()]


def _expected_signal(task):
    return np.arange(2 * (task + 1), dtype=np.float32).reshape(-1, 2) + task


def _check(result):
    kept = [t for t in range(NUM_RECORDS) if t not in BAD | SHORT]
    assert result.record_ids == [f"r{t}" for t in kept]
    assert result.infos == [{"n": t} for t in kept]
    assert result.failures == ["record r3: corrupt", "record r7: corrupt"]
    assert result.counts == {"short": 1}
    for signal, t in zip(result.signals, kept, strict=True):
        np.testing.assert_array_equal(signal, _expected_signal(t))


@AGNOSTIC
@pytest.mark.parametrize("workers", [1, 2])
def test_in_memory_and_cached_reads_agree(tmp_path, workers):
    _check(_read(None, tmp_path / "log0", workers))
    built = _read(tmp_path / "cache", tmp_path / "log1", workers)
    _check(built)
    assert not built.from_cache
    assert all(isinstance(s, np.memmap) for s in built.signals)
    assert sorted(_decoded(tmp_path / "log1")) == list(range(NUM_RECORDS))
    hit = _read(tmp_path / "cache", tmp_path / "log2", workers)
    _check(hit)
    assert hit.from_cache and not (tmp_path / "log2").exists()


@AGNOSTIC
def test_interrupted_build_resumes_without_decoding_again(tmp_path, monkeypatch):
    monkeypatch.setattr(SignalCache, "fail_after_chunks", 2)
    with pytest.raises(KeyboardInterrupt):
        _read(tmp_path / "cache", tmp_path / "log1")
    assert _decoded(tmp_path / "log1") == list(range(6))  # 2 chunks of 3
    assert [e["status"] for e in list_caches(tmp_path / "cache")] == ["partial"]
    monkeypatch.setattr(SignalCache, "fail_after_chunks", None)
    resumed = _read(tmp_path / "cache", tmp_path / "log2")
    # Only the records after the last finished chunk are decoded again.
    assert _decoded(tmp_path / "log2") == list(range(6, NUM_RECORDS))
    _check(resumed)
    uninterrupted = _read(tmp_path / "cache2", tmp_path / "log3")
    assert resumed.record_ids == uninterrupted.record_ids
    assert resumed.failures == uninterrupted.failures
    for a, b in zip(resumed.signals, uninterrupted.signals, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [e["status"] for e in list_caches(tmp_path / "cache")] == ["complete"]


@AGNOSTIC
def test_a_chunk_cut_mid_write_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setattr(SignalCache, "fail_after_chunks", 2)
    with pytest.raises(KeyboardInterrupt):
        _read(tmp_path / "cache", tmp_path / "log1")
    chunks = tmp_path / "cache" / "k.partial" / "chunks"
    # A kill while writing chunk 2 (index 1): some of its signal rows and a
    # temporary file of its metadata, never renamed into place.
    meta = json.loads((chunks / "1.json").read_text())
    (chunks / "1.json").rename(chunks / ".1.json.123.tmp")
    with open(chunks / meta["file"], "r+b") as f:
        f.truncate(20)
    monkeypatch.setattr(SignalCache, "fail_after_chunks", None)
    _check(_read(tmp_path / "cache", tmp_path / "log2"))
    assert _decoded(tmp_path / "log2") == list(range(3, NUM_RECORDS))


@AGNOSTIC
def test_raise_mode_stops_at_the_first_bad_record_and_leaves_no_partial(tmp_path):
    with pytest.raises(ECGDataError, match="record r3: corrupt"):
        _read(tmp_path / "cache", tmp_path / "log", on_error="raise")
    assert list_caches(tmp_path / "cache") == [
        {"key": "k", "bytes": 0, "status": "orphan", "records": None}
    ]  # only the lock file remains


@AGNOSTIC
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        _read(tmp_path / "cache", tmp_path / "log")
    finally:
        os.umask(old)
    folder = tmp_path / "cache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 & ~umask
    for name in ("k.npy", "k.json", "k.lock"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644 & ~umask


@AGNOSTIC
def test_list_and_remove(tmp_path):
    _read(tmp_path / "cache", tmp_path / "log")
    (entry,) = list_caches(tmp_path / "cache")
    assert entry["status"] == "complete" and entry["records"] == 7
    assert entry["bytes"] == sum(
        (tmp_path / "cache" / n).stat().st_size for n in ("k.npy", "k.json", "k.lock")
    )
    with pytest.raises(KeyError, match="nope"):
        remove_caches(tmp_path / "cache", ["nope"])
    removed, freed = remove_caches(tmp_path / "cache")
    assert removed == ["k"] and freed == entry["bytes"]
    assert list((tmp_path / "cache").iterdir()) == []


@AGNOSTIC
def test_wfdb_folder_interrupted_and_parallel_builds_match(
    tmp_path, cinc_dir, monkeypatch
):
    reference = load_wfdb_folder(cinc_dir, workers=1)
    monkeypatch.setattr(SignalCache, "fail_after_chunks", 1)
    with pytest.raises(KeyboardInterrupt):
        load_wfdb_folder(cinc_dir, cache_dir=tmp_path / "cache", workers=2)
    monkeypatch.setattr(SignalCache, "fail_after_chunks", None)
    calls = []
    real = wfdb_folder.read_wfdb_record

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(wfdb_folder, "read_wfdb_record", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = load_wfdb_folder(cinc_dir, cache_dir=tmp_path / "cache", workers=1)
    # The first chunk (64 records) was not decoded again.
    assert calls == reference.record_ids[64:]
    assert resumed.record_ids == reference.record_ids
    assert resumed.classes == reference.classes
    np.testing.assert_array_equal(resumed.labels, reference.labels)
    for a, b in zip(resumed.signals, reference.signals, strict=True):
        np.testing.assert_array_equal(a, b)
    assert list(resumed.metadata["dx"]) == list(reference.metadata["dx"])


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "jax",
    reason="JAX's fork warning: only the jax pass has JAX initialised",
)
def test_worker_processes_raise_no_fork_warning_under_jax(tmp_path):
    import jax.numpy as jnp

    float(jnp.ones(2).sum())  # JAX initialised: it now warns on os.fork()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check(_read(tmp_path / "cache", tmp_path / "log", workers=2))


@AGNOSTIC
def test_concurrent_loads_build_once_and_read_the_same_entry(tmp_path):
    # Processes of a multi-process run load the same data at once: they share
    # the decoding (chunks claimed with flock), one assembles the entry and
    # all read it. flock locks conflict between separate opens, so threads
    # stand in here (tests/data/signal_cache_multiprocess_test.py has real
    # processes).
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(_read, tmp_path / "cache", tmp_path / "log") for _ in range(3)
        ]
        results = [f.result() for f in futures]
    assert sorted(_decoded(tmp_path / "log")) == list(range(NUM_RECORDS))
    assert False in [r.from_cache for r in results]
    for result in results:
        _check(result)


@AGNOSTIC
def test_a_partial_entry_with_lost_signals_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(SignalCache, "fail_after_chunks", 2)
    with pytest.raises(KeyboardInterrupt):
        _read(tmp_path / "cache", tmp_path / "log1")
    chunks = tmp_path / "cache" / "k.partial" / "chunks"
    # The chunks' metadata survived but the rows they declare did not (as
    # after a system crash): those chunks are decoded again.
    for path in chunks.glob("*.f32"):
        with open(path, "r+b") as f:
            f.truncate(4)
    monkeypatch.setattr(SignalCache, "fail_after_chunks", None)
    _check(_read(tmp_path / "cache", tmp_path / "log2"))
    assert _decoded(tmp_path / "log2") == list(range(NUM_RECORDS))


@AGNOSTIC
@pytest.mark.parametrize("workers", [1, 2])
def test_in_memory_reads_hold_each_record_once_in_float32(tmp_path, workers):
    result = _read(None, tmp_path / "log", workers)
    _check(result)
    for signal in result.signals:
        assert type(signal) is np.ndarray and signal.dtype == np.float32
        # Its own buffer (or a reshape of it), not a slice of a larger one.
        base = signal if signal.base is None else signal.base
        assert base.base is None and base.nbytes == signal.nbytes


@AGNOSTIC
def test_loaders_cache_in_the_default_folder_unless_turned_off(
    tmp_path, cinc_dir, monkeypatch
):
    default = tmp_path / "default"
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", str(default))
    cached = load_wfdb_folder(cinc_dir, workers=1)
    assert all(isinstance(s, np.memmap) for s in cached.signals)
    assert [e["status"] for e in list_caches(default)] == ["complete"]
    for off in (False, "none"):
        in_ram = load_wfdb_folder(cinc_dir, workers=1, cache_dir=off)
        assert not any(isinstance(s, np.memmap) for s in in_ram.signals)
        assert in_ram.record_ids == cached.record_ids
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", "none")
    in_ram = load_wfdb_folder(cinc_dir, workers=1)
    assert not any(isinstance(s, np.memmap) for s in in_ram.signals)
    assert len(list_caches(default)) == 1


@AGNOSTIC
def test_lead_order_is_checked_over_all_chunks_in_record_order(tmp_path):
    def decode(task):
        names = ["I", "II"] if task != 4 else ["II", "I"]
        return np.zeros((2, 2), np.float32), {"lead_names": names, "path": "p"}

    def keep(task, value, counts):
        return f"r{task}", value[0], value[1]

    for cache in (None, SignalCache(tmp_path / "cache")):
        result = read_records(
            list(range(7)),
            decode,
            keep,
            on_error="skip",
            cache=cache,
            key="lead-order",
            workers=1,
            chunk_records=2,
            check=wfdb_folder._LeadOrderCheck,
        )
        assert result.record_ids == [f"r{t}" for t in (0, 1, 2, 3, 5, 6)]
        assert len(result.failures) == 1 and "record r4" in result.failures[0]
        with pytest.raises(ECGDataError, match="differ from the first record"):
            read_records(
                list(range(7)), decode, keep, on_error="raise",
                cache=cache, key="lead-order-raise", workers=1, chunk_records=2,
                check=wfdb_folder._LeadOrderCheck,
            )  # fmt: skip


@AGNOSTIC
def test_a_bad_record_stops_every_process_of_the_build(tmp_path):
    # on_error="raise": whichever process meets the bad record, all raise it.
    # Threads stand in for processes (flock locks conflict between opens).
    import concurrent.futures
    import time

    def decode(task):
        time.sleep(0.005)
        if task == 20:
            raise ECGDataError(f"r{task}", "corrupt")
        return np.zeros((2, 2), np.float32), None

    def read():
        return read_records(
            list(range(40)),
            decode,
            lambda task, value, counts: (f"r{task}", value[0], None),
            on_error="raise",
            cache=SignalCache(tmp_path / "cache"),
            key="k",
            workers=1,
            chunk_records=3,
        )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(read) for _ in range(2)]
        for future in futures:
            with pytest.raises(ECGDataError, match="record r20: corrupt"):
                future.result()
    assert [e["status"] for e in list_caches(tmp_path / "cache")] != ["complete"]
    with pytest.raises(ECGDataError, match="record r20: corrupt"):
        read()  # a later load starts afresh, and meets it again
