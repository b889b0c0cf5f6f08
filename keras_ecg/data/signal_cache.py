"""On-disk cache of decoded ECG signals, built streaming and read memory-mapped.

Layout of a cache folder (`cache_dir`), one entry per key:

- `<key>.npy`: every record of the entry concatenated along time, one float32
  `(total_timesteps, num_leads)` array (a standard `.npy`, memory-mapped on
  load, so a hit costs no copy and next to no RAM);
- `<key>.json`: the index (record ids, offsets, per-record reader info, reader
  settings, failures, dataset fields). It is written last, atomically: an entry
  without it is not complete and never read;
- `<key>.partial/`, only while a build runs or after it was killed: the
  signals decoded so far (`signals.npy`, its header reserved and filled in at
  the end) and one JSON line per finished chunk of records (`chunks.jsonl`).
  The next build of the same key resumes after the last finished chunk;
- `<key>.lock`: held (`fcntl.flock`) while a build runs, so processes that load
  the same data at once (multi-process training) build it once and the others
  wait and then read it.

Files are created with mode 0o644 and folders 0o755, both reduced by the umask,
like any other file the user writes: the signals are not more private than the
WFDB records they come from. Nothing is evicted automatically: `list_caches`
(`keras-ecg cache list`) shows the entries with their sizes and sources and
`remove_caches` (`keras-ecg cache remove`) deletes them.
"""

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import shutil
import time
import warnings

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError

# Bump when the stored layout or the readers' decoding changes: old entries
# then stop matching instead of being misread.
CACHE_VERSION = 2

# Records per chunk: the unit of work of a decoding process, of a write and of
# resumption. 64 records at 500 Hz are ~15 MB, so a build holds a few tens of
# MB of signals whatever the number of records.
DEFAULT_CHUNK_RECORDS = 64

# Bytes reserved for the `.npy` header of a growing signals file; the final
# header (with the shape, known only at the end) is written into it.
_NPY_HEADER_BYTES = 128

_FILE_MODE = 0o644
_DIR_MODE = 0o755


def default_workers():
    """Decoding processes a build uses by default: `min(cpu_count, 4)`."""
    return max(1, min(os.cpu_count() or 1, 4))


def _mkdir(path):
    # `mkdir(mode=)` is reduced by the umask, as for any folder the user makes.
    pathlib.Path(path).mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)


def _open_new(path, mode="wb"):
    """Creates `path` with mode 0o644 minus the umask (not mkstemp's 0o600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    return os.fdopen(fd, mode)


def _atomic_write(path, write):
    """Writes through `write(file)` to a temporary file, then `os.replace`s it."""
    path = pathlib.Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        with _open_new(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _npy_header(shape):
    """A version 1.0 `.npy` header of exactly `_NPY_HEADER_BYTES` bytes."""
    rows, leads = (int(n) for n in shape)
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {leads}), }}"
    room = _NPY_HEADER_BYTES - 10  # magic (6) + version (2) + length (2)
    text = text.ljust(room - 1) + "\n"
    if len(text) != room:
        raise ValueError(f"shape {shape} does not fit the reserved .npy header")
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + text.encode("latin1")


# ----------------------------------------------------------------------------
# Decoding in chunks, in worker processes
# ----------------------------------------------------------------------------


def _decode_chunk(decode, tasks):
    """Runs `decode` on each task; an `ECGDataError` becomes the outcome."""
    outcomes = []
    for task in tasks:
        try:
            outcomes.append((True, decode(task)))
        except ECGDataError as error:
            outcomes.append((False, error))
    return outcomes


@dataclasses.dataclass
class SpilledSignal:
    """A decoded signal a worker wrote to `path` at byte `offset`.

    Handing a worker's signals to the parent through a file (appended to the
    entry with `os.copy_file_range`) instead of pickling them through a pipe
    halves the copies, and the parent never holds them in memory.
    """

    path: str
    offset: int
    shape: tuple

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return 4 * int(np.prod(self.shape))

    def load(self):
        count = int(np.prod(self.shape))
        data = np.fromfile(self.path, np.float32, count, offset=self.offset)
        return data.reshape(self.shape)


def _decode_chunk_spilled(decode, tasks, path):
    """`_decode_chunk` whose `(signal, info)` values have their signal written
    to `path` and replaced by a `SpilledSignal`."""
    outcomes = _decode_chunk(decode, tasks)
    offset = 0
    with _open_new(path) as f:
        for i, (ok, value) in enumerate(outcomes):
            if ok:
                signal, info = value
                signal = np.ascontiguousarray(signal, dtype=np.float32)
                f.write(signal.data)
                spilled = SpilledSignal(path, offset, tuple(signal.shape))
                outcomes[i] = (True, (spilled, info))
                offset += signal.nbytes
    return outcomes


def _pool_context():
    # Fork where available: a worker then starts in milliseconds without
    # re-importing the frameworks (a spawned worker would import keras through
    # the package `__init__`, seconds and hundreds of MB each), and scripts
    # without an `if __name__ == "__main__":` guard keep working (spawn and
    # forkserver re-run them). Workers only run numpy/scipy decoding and file
    # I/O, never framework code, so the parent's framework threads (JAX's,
    # TensorFlow's) and their locks are never needed in them.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def decode_chunks(
    tasks, decode, chunk_records=DEFAULT_CHUNK_RECORDS, workers=1, spill_dir=None
):
    """Yields `(tasks_of_chunk, outcomes)` per chunk of `tasks`, in order.

    Each outcome is `(True, decode(task))` or `(False, ECGDataError)`; any other
    exception propagates. With `workers > 1` chunks are decoded by a pool of
    processes, at most `2 * workers` chunks in flight, so the memory held is
    bounded by the chunk size, not by the number of tasks.

    Args:
        tasks: a sequence of picklable task descriptions.
        decode: a picklable function of one task (a module-level function or a
            `functools.partial` of one).
        chunk_records: tasks per chunk.
        workers: decoding processes; 1 decodes in this process.
        spill_dir: with `workers > 1`, a folder where the workers write the
            signals of `(signal, info)` values; the outcomes then hold
            `SpilledSignal`s, valid until the next chunk is requested (the
            chunk's file is deleted then).
    """
    chunk_records = max(1, int(chunk_records))
    chunks = [
        tasks[start : start + chunk_records]
        for start in range(0, len(tasks), chunk_records)
    ]
    workers = max(1, int(workers or 1))
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield chunk, _decode_chunk(decode, chunk)
        return
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=_pool_context()
    ) as pool:
        pending = {}
        next_submit = 0
        try:
            for i, chunk in enumerate(chunks):
                while next_submit < len(chunks) and next_submit < i + 2 * workers:
                    if spill_dir is None:
                        arguments = (_decode_chunk, decode, chunks[next_submit])
                    else:
                        path = os.path.join(spill_dir, f"{next_submit}.f32")
                        arguments = (
                            _decode_chunk_spilled,
                            decode,
                            chunks[next_submit],
                            path,
                        )
                    with warnings.catch_warnings():
                        # JAX warns on every fork of a process that uses it;
                        # the workers never call JAX (see `_pool_context`).
                        warnings.filterwarnings(
                            "ignore", message="os.fork\\(\\) was called"
                        )
                        pending[next_submit] = pool.submit(*arguments)
                    next_submit += 1
                outcomes = pending.pop(i).result()
                yield chunk, outcomes
                if spill_dir is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(spill_dir, f"{i}.f32"))
        finally:
            for future in pending.values():
                future.cancel()


# ----------------------------------------------------------------------------
# Writing an entry
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class ChunkRecord:
    """One kept record of a finished chunk (its signal is in the signals file)."""

    record_id: object
    length: int
    info: object = None


class EntryWriter:
    """Appends decoded records chunk by chunk to the partial entry of `key`.

    Opened by `SignalCache.writer`. `done_tasks` tasks are already covered by
    the finished chunks found on disk (a resumed build), whose records,
    failures and counters are in `records`, `failures` and `counts`; the caller
    decodes the remaining tasks and hands each chunk to `append_chunk`. Then
    `finish` moves the signals into place and writes the index (last).
    """

    def __init__(self, cache, key, num_tasks, chunk_records, fail_after_chunks):
        self.cache = cache
        self.key = key
        self.num_tasks = int(num_tasks)
        self.chunk_records = int(chunk_records)
        self.partial = cache.cache_dir / f"{key}.partial"
        self.signals_path = self.partial / "signals.npy"
        self.chunks_path = self.partial / "chunks.jsonl"
        self.state_path = self.partial / "state.json"
        self.spill_dir = self.partial / "spill"
        self.records, self.failures, self.counts = [], [], {}
        self.done_tasks = 0
        self.num_leads = None
        self.rows = 0
        self._fail_after_chunks = fail_after_chunks
        self._chunks_written = 0
        self._resume()

    def _state(self):
        return {
            "version": CACHE_VERSION,
            "key": self.key,
            "num_tasks": self.num_tasks,
            "chunk_records": self.chunk_records,
        }

    def _resume(self):
        try:
            if self._resume_chunks():
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable leftovers: start afresh
        # Nothing usable (first build, another layout, lost data).
        self.records, self.failures, self.counts = [], [], {}
        self.done_tasks, self.num_leads, self.rows = 0, None, 0
        shutil.rmtree(self.partial, ignore_errors=True)
        _mkdir(self.partial)
        _atomic_write(
            self.state_path, lambda f: f.write(json.dumps(self._state()).encode())
        )
        with _open_new(self.signals_path) as f:
            f.write(b"\0" * _NPY_HEADER_BYTES)
        with _open_new(self.chunks_path):
            pass
        self._reset_spill()

    def _resume_chunks(self):
        """Reads the finished chunks of a partial entry; False if unusable."""
        if not self.state_path.is_file():
            return False
        if json.loads(self.state_path.read_text(encoding="utf-8")) != self._state():
            return False
        valid_bytes = 0
        with open(self.chunks_path, "rb") as f:
            for line in f:
                # A line cut by a kill has no newline or no valid JSON: it and
                # anything after it are dropped and decoded again.
                if not line.endswith(b"\n"):
                    break
                try:
                    chunk = json.loads(line)
                except ValueError:
                    break
                self._absorb(chunk)
                valid_bytes += len(line)
        expected = _NPY_HEADER_BYTES + self.rows * 4 * (self.num_leads or 0)
        if os.path.getsize(self.signals_path) < expected:
            return False  # signals lost (e.g. a system crash): rebuild
        with open(self.chunks_path, "r+b") as f:
            f.truncate(valid_bytes)
        with open(self.signals_path, "r+b") as f:
            # Rows written after the last finished chunk are dropped too.
            f.truncate(expected)
        self._reset_spill()
        return True

    def _reset_spill(self):
        # Signals workers handed over for chunks that were never appended.
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        _mkdir(self.spill_dir)

    def _absorb(self, chunk):
        self.done_tasks = chunk["tasks_end"]
        for record_id, length, info in chunk["records"]:
            self.records.append(ChunkRecord(record_id, int(length), info))
            self.rows += int(length)
        self.failures.extend(chunk["failures"])
        for name, value in chunk["counts"].items():
            self.counts[name] = self.counts.get(name, 0) + value
        if chunk["num_leads"] is not None:
            self.num_leads = chunk["num_leads"]

    def append_chunk(self, num_tasks, records, failures=(), counts=None):
        """Appends one finished chunk.

        Args:
            num_tasks: tasks this chunk covered (kept, failed or dropped).
            records: `(record_id, signal, info)` of the kept records, `signal`
                a `(timesteps, leads)` array or a `SpilledSignal`, `info`
                JSON-serialisable.
            failures: messages of the records that failed.
            counts: optional dict of counters to add up (e.g. records dropped
                as too short).
        """
        entries = []
        # Unbuffered and not O_APPEND, which `os.copy_file_range` refuses.
        with open(self.signals_path, "r+b", buffering=0) as f:
            f.seek(0, os.SEEK_END)
            for record_id, signal, info in records:
                if not isinstance(signal, SpilledSignal):
                    signal = np.ascontiguousarray(signal, dtype=np.float32)
                if signal.ndim != 2 or (
                    self.num_leads is not None and signal.shape[1] != self.num_leads
                ):
                    raise ValueError(
                        f"record {record_id}: signal shape {signal.shape} does not "
                        f"match {self.num_leads} leads."
                    )
                self.num_leads = int(signal.shape[1])
                if isinstance(signal, SpilledSignal):
                    _copy_bytes(signal.path, signal.offset, signal.nbytes, f)
                else:
                    _write_all(f, signal.data)
                entries.append([record_id, int(signal.shape[0]), info])
            f.flush()
            os.fsync(f.fileno())
        chunk = {
            "tasks_end": self.done_tasks + int(num_tasks),
            "records": entries,
            "failures": list(failures),
            "counts": dict(counts or {}),
            "num_leads": self.num_leads,
        }
        line = json.dumps(chunk, default=_json_default).encode("utf-8") + b"\n"
        # The signals are on disk before the line that declares them: a kill in
        # between only loses this chunk.
        with open(self.chunks_path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._absorb(json.loads(line))
        self._chunks_written += 1
        if (
            self._fail_after_chunks is not None
            and self._chunks_written >= self._fail_after_chunks
        ):
            raise KeyboardInterrupt(
                f"test hook: build stopped after {self._chunks_written} chunk(s)"
            )

    def abandon(self):
        """Deletes the partial entry (a build that cannot be resumed)."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def finish(self, index_fields=None, extra=None):
        """Completes the entry: the signals file into place, then the index.

        Args:
            index_fields: JSON-serialisable dict stored in the index (reader
                settings, dataset fields).
            extra: JSON-serialisable dict returned as is by `load`.

        Returns:
            The path of the index file.
        """
        num_leads = self.num_leads or int((index_fields or {}).get("num_leads", 0))
        with open(self.signals_path, "r+b") as f:
            f.write(_npy_header((self.rows, num_leads)))
            f.flush()
            os.fsync(f.fileno())
        signals_path, index_path = self.cache.paths(self.key)
        os.replace(self.signals_path, signals_path)
        offsets = np.concatenate(
            [[0], np.cumsum([r.length for r in self.records], dtype=np.int64)]
        )
        record_ids = [r.record_id for r in self.records]
        index = dict(index_fields or {})
        index.update(
            {
                "version": CACHE_VERSION,
                "key": self.key,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "record_ids": record_ids,
                "record_id_type": type(record_ids[0]).__name__ if record_ids else "str",
                "offsets": offsets.tolist(),
                "num_leads": num_leads,
                "infos": [r.info for r in self.records],
                "failures": list(self.failures),
                "counts": dict(self.counts),
                "extra": extra or {},
            }
        )
        text = json.dumps(index, default=_json_default).encode("utf-8")
        _atomic_write(index_path, lambda f: f.write(text))
        shutil.rmtree(self.partial, ignore_errors=True)
        return index_path


# ----------------------------------------------------------------------------
# Reading an entry
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class CacheEntry:
    """A complete cache entry, its signals memory-mapped.

    Args:
        signals: one read-only `(timesteps, leads)` float32 view per record,
            all into one `np.memmap`.
        record_ids: the kept records' ids.
        infos: the reader's per-record info (JSON values).
        failures: messages of the records that failed while building.
        counts: the reader's counters (e.g. records dropped as too short).
        index: the whole index dict (settings, dataset fields, `extra`).
    """

    signals: list
    record_ids: list
    infos: list
    failures: list
    counts: dict
    index: dict


class SignalCache:
    """A folder of decoded datasets keyed by source, settings and file stamps.

    Readers build an entry streaming: `writer` opens (or resumes) the partial
    entry, `decode_chunks` decodes the records chunk by chunk, in worker
    processes, and each chunk is appended to disk as it arrives, so the memory
    a build needs does not grow with the number of records. `load_entry` /
    `load` memory-map a complete entry. See the module docstring for the files
    and their permissions.

    The key hashes the absolute source path, the reader settings, the list of
    record files with their sizes and modification times, and
    `CACHE_VERSION`: editing, adding or removing a file, or changing a
    setting, gives a new key.

    Args:
        cache_dir: folder for the cache files (created if needed).

    Example:

    ```python
    cache = SignalCache("/tmp/ecg_cache")
    key = cache.key("data/ptbxl", {"sampling_rate": 100}, files)
    hit = cache.load(key)
    if hit is None:
        cache.save(key, read_everything())
        hit = cache.load(key)
    dataset, extra = hit
    ```
    """

    # Test hook: stop a build (KeyboardInterrupt) after this many chunks, as a
    # killed process would stop.
    fail_after_chunks = None

    def __init__(self, cache_dir):
        self.cache_dir = pathlib.Path(cache_dir).expanduser()

    def key(self, source, settings, files):
        """Hex digest identifying one (source, settings, files) combination.

        Args:
            source: the dataset folder.
            settings: JSON-serialisable dict of the reader's arguments.
            files: the record files read; each contributes its path relative
                to `source` (absolute if outside), size and mtime, or
                `"missing"` when it does not exist.
        """
        source = os.path.abspath(os.path.expanduser(str(source)))
        prefix = source.rstrip(os.sep) + os.sep
        stamps = []
        for file in files:
            # Plain os.path: pathlib costs more than the stat on 20k files.
            name = os.path.abspath(str(file))
            if name.startswith(prefix):
                name = name[len(prefix) :].replace(os.sep, "/")
            try:
                stat = os.stat(name if os.path.isabs(name) else prefix + name)
                stamps.append([name, stat.st_size, stat.st_mtime_ns])
            except FileNotFoundError:
                stamps.append([name, "missing"])
        payload = json.dumps(
            {
                "version": CACHE_VERSION,
                "source": source,
                "settings": settings,
                "files": stamps,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]

    def paths(self, key):
        """`(signals_path, index_path)` of the entry for `key`."""
        return self.cache_dir / f"{key}.npy", self.cache_dir / f"{key}.json"

    @contextlib.contextmanager
    def lock(self, key):
        """Holds an exclusive lock on `key` (blocks while another build runs)."""
        _mkdir(self.cache_dir)
        path = self.cache_dir / f"{key}.lock"
        with _open_new(path, "ab") as f:
            try:
                import fcntl
            except ImportError:  # not POSIX: no cross-process lock
                yield
                return
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def writer(self, key, num_tasks, chunk_records=DEFAULT_CHUNK_RECORDS):
        """An `EntryWriter` for `key`, resuming a partial build of the same
        `num_tasks` and `chunk_records` if one is on disk."""
        _mkdir(self.cache_dir)
        return EntryWriter(self, key, num_tasks, chunk_records, self.fail_after_chunks)

    def load_entry(self, key):
        """The complete entry of `key` as a `CacheEntry`, or `None` on a miss.

        An entry whose files are missing, of another `CACHE_VERSION` or
        inconsistent (e.g. a signals file that does not match the index) is a
        miss, so the caller simply rebuilds it.
        """
        signals_path, index_path = self.paths(key)
        if not (signals_path.is_file() and index_path.is_file()):
            return None
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if index.get("version") != CACHE_VERSION or index.get("key") != key:
                return None
            flat = np.load(signals_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        offsets = index["offsets"]
        if (
            flat.ndim != 2
            or flat.dtype != np.float32
            or flat.shape[0] != offsets[-1]
            or (len(offsets) > 1 and flat.shape[1] != index["num_leads"])
        ):
            return None
        signals = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        record_ids = index["record_ids"]
        if index.get("record_id_type") == "int":
            record_ids = [int(r) for r in record_ids]
        return CacheEntry(
            signals=signals,
            record_ids=record_ids,
            infos=index["infos"],
            failures=index["failures"],
            counts=index["counts"],
            index=index,
        )

    def save(self, key, dataset, extra=None):
        """Stores an in-memory `dataset` (and a JSON-serialisable `extra`).

        Returns:
            The path of the index file.
        """
        num_leads = len(dataset.lead_names)
        for record, signal in zip(dataset.record_ids, dataset.signals, strict=True):
            if np.ndim(signal) != 2 or np.shape(signal)[1] != num_leads:
                raise ValueError(
                    f"record {record}: signal shape {np.shape(signal)} does not "
                    f"match {num_leads} leads."
                )
        with self.lock(key):
            writer = self.writer(key, len(dataset), DEFAULT_CHUNK_RECORDS)
            for start in range(writer.done_tasks, len(dataset), DEFAULT_CHUNK_RECORDS):
                stop = min(start + DEFAULT_CHUNK_RECORDS, len(dataset))
                writer.append_chunk(
                    stop - start,
                    [
                        (dataset.record_ids[i], dataset.signals[i], None)
                        for i in range(start, stop)
                    ],
                )
            return writer.finish(
                {"num_leads": num_leads, "dataset": _dataset_fields(dataset)}, extra
            )

    def load(self, key):
        """Returns `(ECGDataset, extra)` for an entry written by `save`, or
        `None` on a miss (see `load_entry`)."""
        entry = self.load_entry(key)
        if entry is None or "dataset" not in entry.index:
            return None
        fields = entry.index["dataset"]
        labels = fields["labels"]
        if labels is not None:
            labels = np.asarray(labels["values"], dtype=np.float32).reshape(
                labels["shape"]
            )
        folds = fields["folds"]
        if folds is not None:
            folds = np.asarray(folds, dtype=np.int64)
        metadata = fields["metadata"]
        if metadata is not None:
            metadata = pd.read_json(io.StringIO(metadata), orient="table")
        dataset = ECGDataset(
            signals=entry.signals,
            record_ids=entry.record_ids,
            sampling_rate=fields["sampling_rate"],
            lead_names=tuple(fields["lead_names"]),
            labels=labels,
            classes=list(fields["classes"]),
            folds=folds,
            metadata=metadata,
            # .get: indexes written before these fields existed lack them.
            class_descriptions=fields.get("class_descriptions"),
            label_vocabulary=fields.get("label_vocabulary"),
        )
        return dataset, entry.index.get("extra", {})

    def entries(self):
        """One dict per entry in the folder, complete or partial (see
        `list_caches`)."""
        if not self.cache_dir.is_dir():
            return []
        keys = {}
        for path in self.cache_dir.iterdir():
            name = path.name
            if name.startswith("."):
                continue
            key, _, suffix = name.partition(".")
            if suffix in ("npy", "json", "partial", "lock"):
                keys.setdefault(key, []).append(path)
        out = []
        for key in sorted(keys):
            paths = keys[key]
            size = sum(_size(p) for p in paths)
            info = {"key": key, "bytes": size, "status": "partial", "records": None}
            index_path = self.cache_dir / f"{key}.json"
            if index_path.is_file():
                try:
                    index = json.loads(index_path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    index = {}
                info["status"] = (
                    "complete" if index.get("version") == CACHE_VERSION else "stale"
                )
                info["records"] = len(index.get("record_ids", []))
                info["source"] = index.get("source")
                info["reader"] = index.get("reader")
                info["created"] = index.get("created")
            elif not (self.cache_dir / f"{key}.partial").exists():
                info["status"] = "orphan"
            out.append(info)
        return out

    def remove(self, key):
        """Deletes every file of `key`; returns the bytes freed."""
        freed = 0
        for suffix in ("json", "npy", "partial", "lock"):
            path = self.cache_dir / f"{key}.{suffix}"
            if path.exists():
                freed += _size(path)
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        return freed


def list_caches(cache_dir):
    """The entries of the cache folder `cache_dir`.

    Returns:
        A list of dicts with `key`, `status` (`"complete"`; `"partial"`: a
        build is running or was interrupted and resumes on the next load;
        `"stale"`: written by another keras-ecg cache version, never read
        again; `"orphan"`: leftover files), `bytes` on disk, `records` and,
        when complete, `source`, `reader` and `created`.
    """
    return SignalCache(cache_dir).entries()


def remove_caches(cache_dir, keys=None):
    """Deletes the entries `keys` (all entries when `None`) of `cache_dir`.

    Returns:
        `(removed_keys, bytes_freed)`.

    Raises:
        KeyError: a key is not in the folder.
    """
    cache = SignalCache(cache_dir)
    present = [entry["key"] for entry in cache.entries()]
    if keys is None:
        keys = present
    unknown = [k for k in keys if k not in present]
    if unknown:
        raise KeyError(f"no cache entry {unknown} in {cache.cache_dir}")
    return list(keys), sum(cache.remove(k) for k in keys)


def _copy_bytes(source, offset, nbytes, target):
    """Appends `nbytes` of file `source` from `offset` to the open `target`."""
    with open(source, "rb") as f:
        try:
            # In the kernel: the bytes never pass through Python.
            while nbytes > 0:
                done = os.copy_file_range(f.fileno(), target.fileno(), nbytes, offset)
                if done <= 0:
                    break
                offset += done
                nbytes -= done
        except (AttributeError, OSError):
            pass  # no copy_file_range here: copy through Python below
        if nbytes > 0:
            f.seek(offset)
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise OSError(f"{source}: {nbytes - len(data)} bytes missing")
            _write_all(target, data)


def _write_all(raw, buffer):
    """Writes all of `buffer` to an unbuffered file (which may write less)."""
    view = memoryview(buffer).cast("B")
    while len(view):
        view = view[raw.write(view) :]


def _size(path):
    path = pathlib.Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _dataset_fields(dataset):
    labels = None
    if dataset.labels is not None:
        labels = {
            "shape": list(np.shape(dataset.labels)),
            "values": np.asarray(dataset.labels, dtype=np.float32).tolist(),
        }
    metadata = None
    if isinstance(dataset.metadata, pd.DataFrame):
        metadata = dataset.metadata.to_json(orient="table", default_handler=str)
    return {
        "sampling_rate": dataset.sampling_rate,
        "lead_names": list(dataset.lead_names),
        "labels": labels,
        "classes": list(dataset.classes),
        "class_descriptions": None
        if dataset.class_descriptions is None
        else list(dataset.class_descriptions),
        "label_vocabulary": dataset.label_vocabulary,
        "folds": None if dataset.folds is None else np.asarray(dataset.folds).tolist(),
        "metadata": metadata,
    }


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
