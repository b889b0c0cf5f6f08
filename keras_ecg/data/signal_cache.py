"""On-disk cache of decoded ECG signals, so a second run skips WFDB parsing."""

import hashlib
import io
import json
import os
import pathlib
import tempfile

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import ECGDataset

# Bump when the stored layout or the readers' decoding changes: old entries
# then stop matching instead of being misread.
CACHE_VERSION = 1


def _atomic_write(path, write):
    """Writes through `write(file)` to a temporary file, then `os.replace`s it."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class SignalCache:
    """A folder of decoded datasets keyed by source, settings and file stamps.

    Each entry is two files: `<key>.npy`, one float32 `(total_timesteps,
    num_leads)` array of all records concatenated along time, and
    `<key>.json`, the index (record ids, offsets, labels, classes with their
    descriptions and vocabulary, folds, lead names, sampling rate, settings,
    metadata and reader extras). Both are written to a temporary file and
    moved into place with `os.replace`, the index last, so an interrupted
    write leaves no entry rather than a corrupt one. A hit returns an
    `ECGDataset` whose signals are read-only views into a memory-mapped
    `.npy` (`np.load(mmap_mode="r")`).

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
        dataset = read_everything()
        cache.save(key, dataset)
    else:
        dataset, extra = hit
    ```
    """

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

    def save(self, key, dataset, extra=None):
        """Stores `dataset` (and a JSON-serialisable `extra` dict) under `key`.

        Returns:
            The path of the index file.
        """
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        signals_path, index_path = self.paths(key)
        num_leads = len(dataset.lead_names)
        lengths = [int(np.shape(s)[0]) for s in dataset.signals]
        for record, signal in zip(dataset.record_ids, dataset.signals, strict=True):
            if np.ndim(signal) != 2 or np.shape(signal)[1] != num_leads:
                raise ValueError(
                    f"record {record}: signal shape {np.shape(signal)} does not "
                    f"match {num_leads} leads."
                )
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        if dataset.signals:
            flat = np.concatenate(
                [np.asarray(s, dtype=np.float32) for s in dataset.signals]
            )
        else:
            flat = np.zeros((0, num_leads), dtype=np.float32)
        _atomic_write(signals_path, lambda f: np.save(f, flat, allow_pickle=False))

        labels = None
        if dataset.labels is not None:
            labels = {
                "shape": list(np.shape(dataset.labels)),
                "values": np.asarray(dataset.labels, dtype=np.float32).tolist(),
            }
        metadata = None
        if isinstance(dataset.metadata, pd.DataFrame):
            metadata = dataset.metadata.to_json(orient="table", default_handler=str)
        index = {
            "version": CACHE_VERSION,
            "key": key,
            "record_ids": list(dataset.record_ids),
            "record_id_type": type(dataset.record_ids[0]).__name__
            if dataset.record_ids
            else "str",
            "offsets": offsets.tolist(),
            "sampling_rate": dataset.sampling_rate,
            "lead_names": list(dataset.lead_names),
            "labels": labels,
            "classes": list(dataset.classes),
            "class_descriptions": None
            if dataset.class_descriptions is None
            else list(dataset.class_descriptions),
            "label_vocabulary": dataset.label_vocabulary,
            "folds": None
            if dataset.folds is None
            else np.asarray(dataset.folds).tolist(),
            "metadata": metadata,
            "extra": extra or {},
        }
        text = json.dumps(index, default=_json_default).encode("utf-8")
        _atomic_write(index_path, lambda f: f.write(text))
        return index_path

    def load(self, key):
        """Returns `(ECGDataset, extra)` for `key`, or `None` on a miss.

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
        lead_names = tuple(index["lead_names"])
        if (
            flat.ndim != 2
            or flat.dtype != np.float32
            or flat.shape[0] != offsets[-1]
            or flat.shape[1] != len(lead_names)
        ):
            return None
        signals = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        record_ids = index["record_ids"]
        if index.get("record_id_type") == "int":
            record_ids = [int(r) for r in record_ids]
        labels = index["labels"]
        if labels is not None:
            labels = np.asarray(labels["values"], dtype=np.float32).reshape(
                labels["shape"]
            )
        folds = index["folds"]
        if folds is not None:
            folds = np.asarray(folds, dtype=np.int64)
        metadata = index["metadata"]
        if metadata is not None:
            metadata = pd.read_json(io.StringIO(metadata), orient="table")
        dataset = ECGDataset(
            signals=signals,
            record_ids=record_ids,
            sampling_rate=index["sampling_rate"],
            lead_names=lead_names,
            labels=labels,
            classes=list(index["classes"]),
            folds=folds,
            metadata=metadata,
            # .get: entries written before these fields existed lack them.
            class_descriptions=index.get("class_descriptions"),
            label_vocabulary=index.get("label_vocabulary"),
        )
        return dataset, index.get("extra", {})


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
