"""On-disk cache of decoded ECG signals, built streaming and read memory-mapped.

The readers (`load_ptbxl`, `load_wfdb_folder`, `load_source`, the CLI) cache
by default, in `default_cache_dir()`: `$KERAS_ECG_CACHE_DIR` if set, else
`$XDG_CACHE_HOME/keras-ecg/signals`, else `~/.cache/keras-ecg/signals` (the
XDG convention dataset libraries follow). Their `cache_dir` argument names
another folder, or is `False` / `"none"` to decode into RAM instead
(`resolve_cache_dir`); `KERAS_ECG_CACHE_DIR=none` turns the default off.

Layout of a cache folder (`cache_dir`), one entry per key:

- `<key>.npy`: every record of the entry concatenated along time, one float32
  `(total_timesteps, num_leads)` array (a standard `.npy`, memory-mapped on
  load, so a hit costs no copy and next to no RAM);
- `<key>.json`: the index (record ids, offsets, per-record reader info, reader
  settings, failures, dataset fields). It is written last, atomically: an entry
  without it is not complete and never read;
- `<key>.partial/`, only while a build runs or after it was killed:
  `state.json` (the build's settings and id) and `chunks/`, where chunk `j`
  (`DEFAULT_CHUNK_RECORDS` records) is `j.<pid>.<n>.f32` (its signals, raw
  float32) and `j.json` (its records, failures and counters, written
  atomically after the signals: a chunk is finished when it exists), with
  `j.claim`, locked (`flock`) by the process decoding it. A build that was
  stopped resumes with the unfinished chunks, finished ones kept;
- `<key>.lock`: `flock`ed shared by the processes decoding chunks, exclusive
  to start a build and to assemble the entry.

Every process that loads an entry that is not complete takes part in building
it (the processes of a multi-process job, or any that share the folder): each
claims the next chunk that is neither finished nor claimed, decodes it and
marks it finished, until none is left; then each asks for the exclusive lock,
and the first to get it (once no process decodes any more) decodes any chunk
a dead process left, copies the finished chunks into `<key>.npy`, writes
`<key>.json` and deletes the partial folder; the others then find the entry
complete and read it. No record is decoded twice; why chunks are claimed
rather than dealt out by process index is in `decode_claimed_chunks`. With
`on_error="raise"`, a bad record stops every process of the build with the
same `ECGDataError` (`<key>.partial/failed.json`). Per-host caches: point
`KERAS_ECG_CACHE_DIR` (or `--cache-dir`) at a local disk; the processes of
each host then build that host's copy together, nothing else to set.

Files are created with mode 0o644 and folders 0o755, both reduced by the umask,
like any other file the user writes: the signals are not more private than the
WFDB records they come from. Nothing is evicted automatically: `list_caches`
(`keras-ecg cache list`) shows the entries with their sizes and sources and
`remove_caches` (`keras-ecg cache remove`) deletes them.
"""

import collections
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
import socket
import time
import warnings

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError

# Bump when the stored layout or the readers' decoding changes: old entries
# then stop matching instead of being misread.
CACHE_VERSION = 2

# Records per chunk: the unit of work of a decoding process, of claiming
# between processes and of resumption. 64 records at 500 Hz are ~15 MB, so a
# build holds a few tens of MB of signals whatever the number of records.
DEFAULT_CHUNK_RECORDS = 64

# Bytes reserved for the `.npy` header of a growing signals file; the final
# header (with the shape, known only at the end) is written into it.
_NPY_HEADER_BYTES = 128

_FILE_MODE = 0o644
_DIR_MODE = 0o755


def default_workers():
    """Decoding processes a build uses by default: `min(cpu_count, 4)`."""
    return max(1, min(os.cpu_count() or 1, 4))


# Environment variable naming the default cache folder (`default_cache_dir`).
CACHE_DIR_ENV = "KERAS_ECG_CACHE_DIR"

# `cache_dir` values that turn the cache off (the records are decoded in RAM).
NO_CACHE = (False, "none")


def default_cache_dir(environ=None):
    """The folder the readers cache decoded signals in by default.

    `$KERAS_ECG_CACHE_DIR` if set, else `$XDG_CACHE_HOME/keras-ecg/signals`,
    else `~/.cache/keras-ecg/signals`: the XDG Base Directory convention
    (https://specifications.freedesktop.org/basedir-spec/latest/) for
    "user-specific non-essential (cached) data", which dataset libraries follow
    too (Hugging Face datasets: `$HF_HOME` or `~/.cache/huggingface`; PyTorch
    Hub: `$TORCH_HOME` or `$XDG_CACHE_HOME/torch`). Nothing is evicted
    automatically: `keras-ecg cache list|remove` show and delete entries.

    Args:
        environ: the environment to read (default `os.environ`).

    Returns:
        A `pathlib.Path` (not created here).
    """
    env = os.environ if environ is None else environ
    folder = env.get(CACHE_DIR_ENV)
    if folder:
        return pathlib.Path(folder).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return pathlib.Path(base).expanduser() / "keras-ecg" / "signals"


def resolve_cache_dir(cache_dir=None):
    """The cache folder a reader's `cache_dir` argument means, or `None`.

    Args:
        cache_dir: `None` (the default of the readers and of the CLI's
            `--cache-dir`): `default_cache_dir()`, unless
            `$KERAS_ECG_CACHE_DIR` is `none`; a folder (str or path); or
            `False` / `"none"` (any case): no cache, the records are decoded in
            RAM, each held once in float32.

    Returns:
        A `pathlib.Path`, or `None` for no cache.
    """
    if cache_dir is None:
        if os.environ.get(CACHE_DIR_ENV, "").strip().lower() == "none":
            return None
        return default_cache_dir()
    if cache_dir is False or (
        isinstance(cache_dir, str) and cache_dir.strip().lower() == "none"
    ):
        return None
    if cache_dir is True:
        return default_cache_dir()
    return pathlib.Path(cache_dir).expanduser()


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

    Handing a worker's signals to the parent through a file instead of
    pickling them through a pipe halves the copies: with a cache the file is
    the chunk's signals file (copied into the entry with `os.copy_file_range`
    at assembly, never held in memory); without one, the parent reads each
    record once into an array of its size (`load`).
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
        f.flush()
        os.fsync(f.fileno())
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
# Building an entry, in chunks claimed by every process that loads it
# ----------------------------------------------------------------------------


class _Claim:
    """An exclusive `flock` on one chunk's claim file, held while decoding it.

    A process that dies releases it (the kernel drops its locks), so the
    chunk goes back to the others at once, not at the next run.
    """

    def __init__(self, path, blocking=False):
        self._file = _open_new(path, "ab")
        try:
            import fcntl
        except ImportError:  # not POSIX: claims cannot be shared
            return
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(self._file.fileno(), flags)
        except BlockingIOError:
            self._file.close()
            self._file = None

    @property
    def held(self):
        return self._file is not None

    def release(self):
        if self._file is None:
            return
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        except ImportError:
            pass
        self._file.close()
        self._file = None


class EntryBuild:
    """The partial entry of `key`: its chunks, decoded by any process.

    Opened by `SignalCache.build` under the entry's lock. The tasks
    are cut into `num_chunks` chunks of `chunk_records`; chunk `j` is finished
    when `chunks/<j>.json` (its records, failures and counters, written
    atomically) exists, next to the signals file it names. Processes claim
    unfinished chunks with `claim` (see `decode_claimed_chunks`), store them
    with `write_chunk`, and one process, under the exclusive entry lock,
    `assemble`s the finished chunks into `<key>.npy` and `<key>.json`.
    """

    def __init__(self, cache, key, num_tasks, chunk_records):
        self.cache = cache
        self.key = key
        self.num_tasks = int(num_tasks)
        self.chunk_records = max(1, int(chunk_records))
        self.num_chunks = -(-self.num_tasks // self.chunk_records)
        self.partial = cache.cache_dir / f"{key}.partial"
        self.chunks_dir = self.partial / "chunks"
        self.state_path = self.partial / "state.json"
        self.failed_path = self.partial / "failed.json"
        self.build_id = None
        self._chunks_written = 0

    def _state(self):
        return {
            "version": CACHE_VERSION,
            "key": self.key,
            "num_tasks": self.num_tasks,
            "chunk_records": self.chunk_records,
            "layout": "chunks",
        }

    def join(self):
        """Joins the partial entry on disk; False if there is none to join
        (none, another layout or settings, or a failed build)."""
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            build_id = state.pop("build_id")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
        if state != self._state() or self.failed_path.exists():
            return False
        self.build_id = build_id
        # Chunks whose signals a crash lost are decoded again.
        for j in range(self.num_chunks):
            if self.is_done(j) and self.chunk_meta(j) is None:
                self.forget_chunk(j)
        return True

    def start(self):
        """Starts the partial entry afresh (under the exclusive entry lock)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        _mkdir(self.chunks_dir)
        self.build_id = f"{os.getpid()}-{time.time_ns()}"
        state = dict(self._state(), build_id=self.build_id)
        _atomic_write(self.state_path, lambda f: f.write(json.dumps(state).encode()))

    def joined(self):
        """Whether the partial entry this process joined is still on disk."""
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return state.get("build_id") == self.build_id

    def chunk_range(self, j):
        start = j * self.chunk_records
        return start, min(start + self.chunk_records, self.num_tasks)

    def _meta_path(self, j):
        return self.chunks_dir / f"{j}.json"

    def is_done(self, j):
        return self._meta_path(j).is_file()

    def done_chunks(self):
        return sum(self.is_done(j) for j in range(self.num_chunks))

    def claim(self, j, blocking=False):
        """A held `_Claim` on chunk `j`, or `None` if another process has it."""
        claim = _Claim(self.chunks_dir / f"{j}.claim", blocking)
        return claim if claim.held else None

    def signals_path(self, j):
        """A fresh signals file name for chunk `j` (unique per attempt, so a
        straggling worker of a dead process can never write into the file of
        the process that took the chunk over)."""
        return self.chunks_dir / f"{j}.{os.getpid()}.{time.monotonic_ns()}.f32"

    def write_chunk(self, j, records, failures=(), counts=None):
        """Marks chunk `j` finished.

        Args:
            j: the chunk.
            records: `(record_id, SpilledSignal, info)` of its kept records,
                the signals in one file of this chunk (`signals_path`), `info`
                JSON-serialisable.
            failures: messages of its records that failed.
            counts: optional dict of counters (e.g. records dropped as too
                short).
        """
        entries, files = [], set()
        for record_id, signal, info in records:
            if not isinstance(signal, SpilledSignal) or signal.ndim != 2:
                raise ValueError(
                    f"record {record_id}: expected a 2-D SpilledSignal, got "
                    f"{type(signal).__name__}"
                )
            files.add(os.path.basename(signal.path))
            entries.append(
                [record_id, int(signal.offset), [int(n) for n in signal.shape], info]
            )
        if len(files) > 1:
            raise ValueError(f"chunk {j}: signals in several files {sorted(files)}")
        start, stop = self.chunk_range(j)
        meta = {
            "chunk": j,
            "tasks": [start, stop],
            "file": files.pop() if files else None,
            "records": entries,
            "failures": list(failures),
            "counts": dict(counts or {}),
            # Who decoded it: for `keras-ecg cache list` and the tests.
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        text = json.dumps(meta, default=_json_default).encode("utf-8")
        _atomic_write(self._meta_path(j), lambda f: f.write(text))
        self._chunks_written += 1
        fail_after = self.cache.fail_after_chunks
        if fail_after is not None and self._chunks_written >= fail_after:
            raise KeyboardInterrupt(
                f"test hook: build stopped after {self._chunks_written} chunk(s)"
            )

    def chunk_meta(self, j):
        """The finished chunk `j`'s metadata, or `None` if it is unfinished or
        its signals file is missing or short (a crash lost it)."""
        try:
            meta = json.loads(self._meta_path(j).read_text(encoding="utf-8"))
            if meta["file"] is not None:
                size = os.path.getsize(self.chunks_dir / meta["file"])
                for _, offset, shape, _ in meta["records"]:
                    if offset + 4 * shape[0] * shape[1] > size:
                        return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return meta

    def forget_chunk(self, j):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._meta_path(j))

    def mark_failed(self, error):
        """Records that the build stopped on `error` (an `ECGDataError` with
        `on_error="raise"`): the processes building with this one stop and
        raise it too; the next build starts afresh."""
        fields = {
            "record": error.record,
            "problem": error.problem,
            "path": error.path,
            "type": type(error).__name__,
        }
        text = json.dumps(fields, default=str).encode("utf-8")
        with contextlib.suppress(OSError):
            _atomic_write(self.failed_path, lambda f: f.write(text))

    def failure(self):
        """The `ECGDataError` a process of this build stopped on, or `None`."""
        try:
            fields = json.loads(self.failed_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return ECGDataError(fields["record"], fields["problem"], fields["path"])

    def discard_signals(self):
        """Frees the decoded chunks of a failed build (keeps its state and
        failure, for the processes still joining it)."""
        shutil.rmtree(self.chunks_dir, ignore_errors=True)

    def abandon(self):
        """Deletes the partial entry."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def assemble(self, metas, index_fields=None, extra=None):
        """Writes the entry from the finished chunks (under the exclusive lock).

        The kept records' signals are copied chunk by chunk, in order, into
        the signals file (`os.copy_file_range`: in the kernel, a reflink on
        file systems that have them), then moved into place, then the index is
        written, last.

        Args:
            metas: each chunk's metadata (`chunk_meta`), in chunk order, with
                the records to keep (a check over all records may have dropped
                some).
            index_fields: JSON-serialisable dict stored in the index (reader
                settings, dataset fields).
            extra: JSON-serialisable dict returned as is by `load`.

        Returns:
            The path of the index file.
        """
        num_leads = None
        records, failures, counts = [], [], {}
        for meta in metas:
            for record_id, _, shape, info in meta["records"]:
                if num_leads is None:
                    num_leads = int(shape[1])
                elif shape[1] != num_leads:
                    raise ValueError(
                        f"record {record_id}: signal shape {tuple(shape)} does "
                        f"not match {num_leads} leads."
                    )
                records.append(ChunkRecord(record_id, int(shape[0]), info))
            failures.extend(meta["failures"])
            for name, value in meta["counts"].items():
                counts[name] = counts.get(name, 0) + value
        if num_leads is None:
            num_leads = int((index_fields or {}).get("num_leads", 0))
        rows = sum(r.length for r in records)
        assembling = self.partial / "signals.npy"
        with _open_new(assembling, "wb") as f:
            f.write(_npy_header((rows, num_leads)))
        # Unbuffered and not O_APPEND, which `os.copy_file_range` refuses.
        with open(assembling, "r+b", buffering=0) as f:
            f.seek(0, os.SEEK_END)
            for meta in metas:
                # Runs of consecutive kept records are copied in one call.
                runs = []
                for _, offset, shape, _ in meta["records"]:
                    nbytes = 4 * shape[0] * shape[1]
                    if runs and runs[-1][0] + runs[-1][1] == offset:
                        runs[-1][1] += nbytes
                    else:
                        runs.append([offset, nbytes])
                for offset, nbytes in runs:
                    _copy_bytes(self.chunks_dir / meta["file"], offset, nbytes, f)
            f.flush()
            os.fsync(f.fileno())
        signals_path, index_path = self.cache.paths(self.key)
        os.replace(assembling, signals_path)
        offsets = np.concatenate(
            [[0], np.cumsum([r.length for r in records], dtype=np.int64)]
        )
        record_ids = [r.record_id for r in records]
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
                "infos": [r.info for r in records],
                "failures": failures,
                "counts": counts,
                "extra": extra or {},
            }
        )
        text = json.dumps(index, default=_json_default).encode("utf-8")
        _atomic_write(index_path, lambda f: f.write(text))
        self.abandon()
        return index_path


@dataclasses.dataclass
class ChunkRecord:
    """One kept record of a finished chunk."""

    record_id: object
    length: int
    info: object = None


def decode_claimed_chunks(build, tasks, decode, workers=1, stop=None):
    """Yields `(j, tasks_of_chunk, outcomes)` for the chunks of `build` this
    process claimed, in chunk order, the claim held until the caller asks for
    the next chunk (by then it has written the chunk with `write_chunk`).

    Chunks are claimed dynamically rather than dealt out by process index
    (`j % n == i`): a slow or late process then holds nobody up, a process
    that dies hands its chunk back at once (its `flock` goes with it), the
    processes need not know how many they are or which one they are, and
    processes that share a cache folder share its build whatever job, host
    or launcher they belong to (a host-local cache folder is simply built by
    that host's processes). Each outcome is `(True, (SpilledSignal, info))`
    or `(False, ECGDataError)`: the signals are written to the chunk's own
    file by whoever decodes it (a worker process when `workers > 1`, at most
    `2 * workers` chunks in flight).

    Args:
        build: the `EntryBuild`.
        tasks: every task of the entry (picklable).
        decode: picklable function task -> `(signal, info)`.
        workers: decoding processes; 1 decodes in this process.
        stop: optional function; claiming stops once it returns True (e.g.
            another process of the build failed).
    """
    workers = max(1, int(workers or 1))
    candidates = iter(range(build.num_chunks))

    def next_claim():
        for j in candidates:
            if stop is not None and stop():
                return None
            if build.is_done(j):
                continue
            try:
                claim = build.claim(j)
            except FileNotFoundError:
                return None  # the partial entry is gone: assembled or failed
            if claim is None:
                continue  # another process decodes it
            if build.is_done(j):  # finished between the check and the claim
                claim.release()
                continue
            start, stop_ = build.chunk_range(j)
            return j, tasks[start:stop_], claim

    if workers == 1 or build.num_chunks <= 1:
        while (claimed := next_claim()) is not None:
            j, chunk, claim = claimed
            try:
                path = str(build.signals_path(j))
                yield j, chunk, _decode_chunk_spilled(decode, chunk, path)
            finally:
                claim.release()
        return
    claims = []
    try:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, build.num_chunks), mp_context=_pool_context()
        ) as pool:
            pending = collections.deque()
            try:
                while True:
                    while len(pending) < 2 * workers:
                        claimed = next_claim()
                        if claimed is None:
                            break
                        j, chunk, claim = claimed
                        claims.append(claim)
                        path = str(build.signals_path(j))
                        with warnings.catch_warnings():
                            # JAX warns on every fork of a process that uses
                            # it; the workers never call JAX (`_pool_context`).
                            warnings.filterwarnings(
                                "ignore", message="os.fork\\(\\) was called"
                            )
                            future = pool.submit(
                                _decode_chunk_spilled, decode, chunk, path
                            )
                        pending.append((j, chunk, claim, future))
                    if not pending:
                        return
                    j, chunk, claim, future = pending.popleft()
                    yield j, chunk, future.result()
                    claim.release()
            finally:
                for *_, future in pending:
                    future.cancel()
    finally:
        # After the pool is shut down: no worker writes for a released chunk.
        for claim in claims:
            claim.release()


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

    Readers build an entry streaming (`keras_ecg.data.record_stream`):
    `build` joins (or starts) the partial entry, `decode_claimed_chunks`
    decodes the chunks this process claims, in worker processes, each written
    to disk as it is decoded (so the memory a build needs does not grow with
    the number of records), and one process `EntryBuild.assemble`s the
    entry. `load_entry` / `load` memory-map a complete entry. See the module
    docstring for the files, the locks and the permissions.

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
    def lock(self, key, shared=False, blocking=True):
        """Holds the lock of `key`: exclusive (setting up or assembling an
        entry), or `shared` (decoding chunks, alongside other processes).

        Yields whether the lock is held (always, unless `blocking=False` and
        another process holds it).
        """
        _mkdir(self.cache_dir)
        path = self.cache_dir / f"{key}.lock"
        with _open_new(path, "ab") as f:
            try:
                import fcntl
            except ImportError:  # not POSIX: no cross-process lock
                yield True
                return
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(f.fileno(), mode | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def build(self, key, num_tasks, chunk_records=DEFAULT_CHUNK_RECORDS, start=True):
        """The `EntryBuild` of `key`, joining a partial build of the same
        `num_tasks` and `chunk_records` if one is on disk (holding `lock(key)`,
        shared or not), else starting one (`start`, holding the exclusive
        `lock(key)`) or returning `None`."""
        _mkdir(self.cache_dir)
        build = EntryBuild(self, key, num_tasks, chunk_records)
        if build.join():
            return build
        if not start:
            return None
        build.start()
        return build

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
        from keras_ecg.data.record_stream import read_records

        def keep(task, value, counts):
            return dataset.record_ids[task], value[0], None

        read_records(
            list(range(len(dataset))),
            lambda i: (dataset.signals[i], None),
            keep,
            cache=self,
            key=key,
            index_fields={
                "num_leads": num_leads,
                "dataset": _dataset_fields(dataset),
            },
            extra=extra,
            workers=1,
        )
        return self.paths(key)[1]

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


def list_caches(cache_dir=None):
    """The entries of the cache folder `cache_dir` (`None`: the default one,
    `default_cache_dir()`).

    Returns:
        A list of dicts with `key`, `status` (`"complete"`; `"partial"`: a
        build is running or was interrupted and resumes on the next load;
        `"stale"`: written by another keras-ecg cache version, never read
        again; `"orphan"`: leftover files), `bytes` on disk, `records` and,
        when complete, `source`, `reader` and `created`.
    """
    return SignalCache(_folder(cache_dir)).entries()


def _folder(cache_dir):
    return default_cache_dir() if cache_dir is None else cache_dir


def remove_caches(cache_dir=None, keys=None):
    """Deletes the entries `keys` (all entries when `None`) of `cache_dir`
    (`None`: the default folder, `default_cache_dir()`).

    Returns:
        `(removed_keys, bytes_freed)`.

    Raises:
        KeyError: a key is not in the folder.
    """
    cache = SignalCache(_folder(cache_dir))
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
