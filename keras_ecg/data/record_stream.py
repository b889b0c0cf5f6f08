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
import tempfile

from keras_ecg.data import signal_cache
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import FailureLog
from keras_ecg.data.progress import ReadProgress
from keras_ecg.data.signal_cache import SpilledSignal
from keras_ecg.data.signal_cache import decode_chunks
from keras_ecg.data.signal_cache import decode_claimed_chunks
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
    chunk_records=None,
    progress=False,
    what="reading records",
    check=None,
    extra=None,
):
    """Decodes `tasks` and keeps what `keep` accepts, streaming into `cache`.

    With a cache, every process that reads the same entry at once (the
    processes of a multi-process job, or any others sharing the folder) takes
    part in building it: each claims chunks nobody has claimed or finished,
    decodes them into the partial entry and marks them finished; then one
    process, under the entry's exclusive lock, assembles the entry while the
    others wait for it, and all read it memory-mapped. No record is decoded
    twice; a process that dies hands its chunk back to the others, and a
    build whose processes all stopped resumes at the next load, finished
    chunks kept (`keras_ecg.data.signal_cache.decode_claimed_chunks`).

    Args:
        tasks: picklable task per record (e.g. `(header_path, record_id)`).
        decode: picklable function task -> `(signal, info)`, run in the
            worker processes; raises `ECGDataError` for a bad record. `info`
            is anything `keep` needs besides the signal (picklable).
        keep: function `(task, (signal, info), counts)` -> `(record_id,
            signal, info)` to keep the record (`info` JSON-serialisable), or
            `None` to drop it (after incrementing a counter in the dict
            `counts`); raises `ECGDataError` for a bad record. It sees one
            record at a time and must not compare records with each other
            (with a cache, chunks are kept by different processes, in any
            order): that is `check`'s job. With a cache, `signal` is a
            `SpilledSignal` (it has `shape` and `load()`), to be passed on as
            is.
        on_error: `"raise"` or `"skip"` (see `FailureLog`).
        cache: optional `SignalCache`; with `key`, a complete entry is
            returned without decoding and a partial one is resumed.
        key: the entry's key in `cache`.
        index_fields: JSON-serialisable dict stored in the entry's index.
        workers: decoding processes; `None` for `default_workers()`, 1 to
            decode in this process.
        chunk_records: records per chunk (unit of decoding, of claiming
            between processes and of resumption); `None` for
            `signal_cache.DEFAULT_CHUNK_RECORDS` (looked up at each call).
        progress: print progress.
        what: progress label.
        check: optional factory of a checker of the kept records in record
            order: `check()` returns a function `(record_id, info)` that
            raises `ECGDataError` for a record inconsistent with the ones
            before it (e.g. another lead order); such a record is dropped
            (`on_error="skip"`) or raised.
        extra: JSON-serialisable dict stored in the entry's index (`"extra"`).

    Returns:
        A `ReadResult`. Failures are not warned about here (the caller knows
        the source to name).
    """
    workers = default_workers() if workers is None else workers
    if chunk_records is None:
        chunk_records = signal_cache.DEFAULT_CHUNK_RECORDS
    if cache is not None:
        return _read_cached(
            tasks, decode, keep, on_error, cache, key, index_fields, workers,
            chunk_records, progress, what, check, extra,
        )  # fmt: skip

    log = FailureLog(on_error)
    counts = {}
    checker = None if check is None else check()
    signals, record_ids, infos = [], [], []
    reading = ReadProgress(len(tasks), what, enabled=progress)
    # Worker processes hand their signals over through a file: each record is
    # then read once into an array of its exact size, instead of being
    # unpickled from a pipe buffer (a transient copy that fragments the heap).
    spill = None if workers <= 1 else tempfile.TemporaryDirectory(prefix="keras_ecg_")
    with spill if spill is not None else contextlib.nullcontext():
        chunks = decode_chunks(
            tasks, decode, chunk_records, workers,
            spill_dir=None if spill is None else spill.name,
        )  # fmt: skip
        with contextlib.closing(chunks):
            for chunk, outcomes in chunks:
                outcomes = [_loaded(outcome) for outcome in outcomes]
                for kept in _keep_chunk(chunk, outcomes, keep, log, counts):
                    if checker is not None:
                        try:
                            checker(kept[0], kept[2])
                        except ECGDataError as error:
                            log.record(error)
                            continue
                    record_ids.append(kept[0])
                    signals.append(kept[1])
                    infos.append(kept[2])
                reading.update(len(chunk))
    reading.close()
    return ReadResult(signals, record_ids, infos, log.messages(), counts, False)


def _loaded(outcome):
    """`(ok, (array, info))` of an outcome whose signal may be spilled."""
    ok, value = outcome
    if ok and isinstance(value[0], SpilledSignal):
        return ok, (value[0].load(), value[1])
    return outcome


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


def _read_cached(
    tasks, decode, keep, on_error, cache, key, index_fields, workers,
    chunk_records, progress, what, check, extra,
):  # fmt: skip
    entry = cache.load_entry(key)
    if entry is not None:
        return _result(entry, from_cache=True)
    decoded = False
    while True:
        # 1. Join the build under way and decode unclaimed chunks, alongside
        # the other processes (all holding the lock shared).
        try:
            with cache.lock(key, shared=True):
                entry = cache.load_entry(key)
                if entry is not None:
                    return _result(entry, from_cache=not decoded)
                build = cache.build(key, len(tasks), chunk_records, start=False)
                if build is not None:
                    decoded |= _decode_share(
                        build, tasks, decode, keep, on_error, workers, progress, what
                    )
        except ECGDataError:
            # on_error="raise": the other processes of this build stop and
            # raise it too (`mark_failed`); the last one frees the chunks. A
            # fixed file gets another key, so the partial entry could never
            # be resumed: alone, it goes at once.
            with cache.lock(key, blocking=False) as alone:
                if alone:
                    build.abandon()
            raise
        if build is None:
            # 2. No build to join: start one (exclusive lock), then join it.
            with cache.lock(key):
                if cache.load_entry(key) is None:
                    cache.build(key, len(tasks), chunk_records)
            continue
        # 3. Assemble (one process; the others wait here, then read).
        with cache.lock(key):
            entry = cache.load_entry(key)
            if entry is not None:
                return _result(entry, from_cache=not decoded)
            if not build.joined():
                continue  # another process started the build afresh: join it
            error = build.failure()
            if error is not None:
                build.discard_signals()
                raise error
            # Chunks whose process died: nobody else decodes now.
            try:
                decoded |= _decode_share(
                    build, tasks, decode, keep, on_error, workers, False, what
                )
            except ECGDataError:
                build.discard_signals()
                raise
            metas = [build.chunk_meta(j) for j in range(build.num_chunks)]
            if any(meta is None for meta in metas):
                # Lost since (e.g. a crash truncated a chunk): decode them again.
                for j, meta in enumerate(metas):
                    if meta is None:
                        build.forget_chunk(j)
                continue
            _check_order(metas, check, on_error)
            build.assemble(metas, index_fields, extra)
            entry = cache.load_entry(key)
            if entry is None:
                raise RuntimeError(f"cache entry {key} unreadable after build")
            return _result(entry, from_cache=False)


def _decode_share(build, tasks, decode, keep, on_error, workers, progress, what):
    """Decodes the chunks of `build` this process claims; whether it did any."""
    reading = ReadProgress(len(tasks), what, enabled=progress)
    reading.update(min(len(tasks), build.done_chunks() * build.chunk_records))
    decoded = False
    chunks = decode_claimed_chunks(
        build, tasks, decode, workers, stop=lambda: build.failed_path.exists()
    )
    try:
        for j, chunk, outcomes in chunks:
            decoded = True
            log = FailureLog(on_error)
            counts = {}
            try:
                kept = _keep_chunk(chunk, outcomes, keep, log, counts)
            except ECGDataError as error:
                build.mark_failed(error)  # the data is bad (on_error="raise")
                raise
            build.write_chunk(j, kept, log.messages(), counts)
            reading.update(len(chunk))
    finally:
        chunks.close()  # stops the worker processes now, also on an error
    reading.close()
    return decoded


def _check_order(metas, check, on_error):
    """Runs `check` over the kept records of every chunk, in record order,
    dropping (or raising) the records it rejects."""
    if check is None:
        return
    checker = check()
    log = FailureLog(on_error)
    for meta in metas:
        kept = []
        for record in meta["records"]:
            try:
                checker(record[0], record[3])
            except ECGDataError as error:
                log.record(error)
                meta["failures"].append(str(error))
                continue
            kept.append(record)
        meta["records"] = kept


def _result(entry, from_cache):
    return ReadResult(
        signals=entry.signals,
        record_ids=entry.record_ids,
        infos=entry.infos,
        failures=entry.failures,
        counts=entry.counts,
        from_cache=from_cache,
    )
