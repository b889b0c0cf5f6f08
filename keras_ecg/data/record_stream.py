"""Reads many records chunk by chunk, in worker processes, into RAM or a cache.

The readers (`load_ptbxl`, `load_wfdb_folder`) list their records, then hand
them to `read_records` as tasks with a `decode` function (run in the worker
processes) and a `keep` function (run here, in record order, so that checks
that compare records with each other and `on_error="raise"` behave as in a
plain loop). With a cache the kept records go to disk chunk by chunk and come
back memory-mapped; the memory used does not grow with the number of records.
"""

import contextlib
import dataclasses

from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import FailureLog
from keras_ecg.data.progress import ReadProgress
from keras_ecg.data.signal_cache import DEFAULT_CHUNK_RECORDS
from keras_ecg.data.signal_cache import decode_chunks
from keras_ecg.data.signal_cache import default_workers


@dataclasses.dataclass
class ReadResult:
    """What `read_records` read.

    Args:
        signals: one `(timesteps, leads)` float32 array per kept record
            (memory-mapped views of the cache when one is used).
        record_ids: the kept records' ids.
        infos: the per-record info `keep` returned.
        failures: messages of the records that failed (`on_error="skip"`).
        counts: counters `keep` added up (e.g. records dropped as too short).
        from_cache: whether the records came from a complete cache entry
            without decoding anything.
    """

    signals: list
    record_ids: list
    infos: list
    failures: list
    counts: dict
    from_cache: bool


def read_records(
    tasks,
    decode,
    keep,
    on_error="raise",
    cache=None,
    key=None,
    index_fields=None,
    workers=None,
    chunk_records=DEFAULT_CHUNK_RECORDS,
    progress=False,
    what="reading records",
    resume=None,
):
    """Decodes `tasks` and keeps what `keep` accepts, streaming into `cache`.

    Args:
        tasks: picklable task per record (e.g. `(header_path, record_id)`).
        decode: picklable function task -> `(signal, info)`, run in the
            worker processes; raises `ECGDataError` for a bad record. `info`
            is anything `keep` needs besides the signal (picklable).
        keep: function `(task, (signal, info), counts)` -> `(record_id,
            signal, info)` to keep the record (`info` JSON-serialisable), or
            `None` to drop it (after incrementing a counter in the dict
            `counts`); raises `ECGDataError` for a bad record. Runs in this
            process, in record order. With a cache and `workers > 1`, `signal`
            is a `SpilledSignal` (a worker wrote it to a file; it has `shape`
            and `load()`), to be passed on as is.
        on_error: `"raise"` or `"skip"` (see `FailureLog`).
        cache: optional `SignalCache`; with `key`, a complete entry is
            returned without decoding and a partial one is resumed.
        key: the entry's key in `cache`.
        index_fields: JSON-serialisable dict stored in the entry's index.
        workers: decoding processes; `None` for `default_workers()`, 1 to
            decode in this process.
        chunk_records: records per chunk (unit of decoding, writing and
            resumption).
        progress: print progress.
        what: progress label.
        resume: optional function called with the `(record_id, info)` pairs
            of a resumed build's finished chunks before decoding the rest, to
            restore state `keep` depends on.

    Returns:
        A `ReadResult`. Failures are not warned about here (the caller knows
        the source to name).
    """
    workers = default_workers() if workers is None else workers
    if cache is not None:
        entry = cache.load_entry(key)
        if entry is None:
            with cache.lock(key):
                # Another process may have built it while this one waited.
                entry = cache.load_entry(key)
                if entry is None:
                    _build(
                        tasks, decode, keep, on_error, cache, key, index_fields,
                        workers, chunk_records, progress, what, resume,
                    )  # fmt: skip
                    entry = cache.load_entry(key)
                    if entry is None:
                        raise RuntimeError(f"cache entry {key} unreadable after build")
                    return _result(entry, from_cache=False)
        return _result(entry, from_cache=True)

    log = FailureLog(on_error)
    counts = {}
    signals, record_ids, infos = [], [], []
    reading = ReadProgress(len(tasks), what, enabled=progress)
    chunks = decode_chunks(tasks, decode, chunk_records, workers)
    with contextlib.closing(chunks):
        for chunk, outcomes in chunks:
            for kept in _keep_chunk(chunk, outcomes, keep, log, counts):
                record_ids.append(kept[0])
                signals.append(kept[1])
                infos.append(kept[2])
            reading.update(len(chunk))
    reading.close()
    return ReadResult(signals, record_ids, infos, log.messages(), counts, False)


def _keep_chunk(chunk, outcomes, keep, log, counts):
    kept = []
    for task, (ok, value) in zip(chunk, outcomes, strict=True):
        try:
            if not ok:
                raise value
            record = keep(task, value, counts)
        except ECGDataError as error:
            log.record(error)
            continue
        if record is not None:
            kept.append(record)
    return kept


def _build(
    tasks, decode, keep, on_error, cache, key, index_fields, workers,
    chunk_records, progress, what, resume,
):  # fmt: skip
    writer = cache.writer(key, len(tasks), chunk_records)
    if resume is not None and writer.records:
        resume([(r.record_id, r.info) for r in writer.records])
    reading = ReadProgress(len(tasks), what, enabled=progress)
    reading.update(writer.done_tasks)
    log = FailureLog(on_error)
    remaining = tasks[writer.done_tasks :]
    chunks = decode_chunks(
        remaining, decode, chunk_records, workers, spill_dir=str(writer.spill_dir)
    )
    try:
        for chunk, outcomes in chunks:
            counts = {}
            before = len(log.failures)
            kept = _keep_chunk(chunk, outcomes, keep, log, counts)
            failures = [str(e) for e in log.failures[before:]]
            writer.append_chunk(len(chunk), kept, failures, counts)
            reading.update(len(chunk))
    except ECGDataError:
        # The data is bad (on_error="raise"): a fixed file gets another key, so
        # this partial entry could never be resumed.
        writer.abandon()
        raise
    finally:
        chunks.close()  # stops the worker processes now, also on an error
    reading.close()
    writer.finish(index_fields)


def _result(entry, from_cache):
    return ReadResult(
        signals=entry.signals,
        record_ids=entry.record_ids,
        infos=entry.infos,
        failures=entry.failures,
        counts=entry.counts,
        from_cache=from_cache,
    )
