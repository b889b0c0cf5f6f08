"""`tf.data` input pipelines: random crops, augmented views and sliding windows.

`tf.data` is the input pipeline under every Keras backend (`fit` accepts a
`tf.data.Dataset` under JAX and PyTorch too). All records are packed once into
one contiguous `(total_timesteps, leads)` float32 array plus per-record offsets
and lengths; each batch is then cut out with a single vectorised gather of
`offset + start + arange(length)` row indices, so no Python runs per record.

Where the packed data lives:

- records that are views of one memory-mapped array (what a reader's
  `SignalCache` returns) are read in place, whatever their size: each batch is
  cut out of the memmap through `tf.numpy_function`, one slice per crop, so
  only the crops are ever read into memory and the dataset is never copied;
- other records up to `max_in_memory_bytes` (default `MAX_IN_MEMORY_BYTES` =
  2 GiB, which holds all of PTB-XL at 100 Hz, ~1.05 GB) are packed into a
  non-trainable `tf.Variable` on the CPU. A variable rather than a constant
  because `tf.data` serialises captured constants into its graph (slow, and
  capped at 2 GB);
- above it, in-memory records that are views of one array are read in place
  like a memmap; unrelated arrays are packed once into a temporary memmap file.

Standardisation: with `standardizer=` (a fitted `LeadStandardizer`, or any
object with per-lead `mean` and `std`, e.g. an `ECGPreprocessor`) every crop is
mapped to `(x - mean) / std` inside the pipeline, in float64 as
`LeadStandardizer.transform` does, so the result is the same as transforming
the records first, without a standardised copy of the dataset.

Sharding over the processes of a multi-process job is not the pipeline's
business: give it the process's records (`keras_ecg.distribute.shard_indices`
and `ECGDataset.subset`, which keeps memory-mapped records as views).

Randomness: the record order comes from `Dataset.shuffle(seed)` and the crop
positions from a stateless RNG keyed by `Dataset.random(seed)` per batch, both
re-drawn every epoch. With the same `seed`, a freshly built pipeline yields
identical batches (crops and order) epoch by epoch, while successive epochs
differ. Augmentation randomness belongs to the augmentation; with a `seed` its
map runs sequentially so a seeded stateful augmentation sees batches in a fixed
order.
"""

import atexit
import os
import tempfile
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_ecg.data.ecg_dataset import ECGDataset

MAX_IN_MEMORY_BYTES = 2 * 1024**3

_AUTOTUNE = tf.data.AUTOTUNE


# ----------------------------------------------------------------------------
# Packing
# ----------------------------------------------------------------------------


class _PackedRecords:
    """Records packed into one `(total, leads)` array + offsets and lengths."""

    def __init__(
        self,
        data,
        max_in_memory_bytes=MAX_IN_MEMORY_BYTES,
        labels=None,
        standardizer=None,
    ):
        signals, record_ids, dataset_labels = _unpack_input(data)
        labels = _resolve_labels(labels, dataset_labels, len(record_ids))
        self.record_ids = list(record_ids)
        self.labels = labels
        self.mean, self.std = _statistics(standardizer, signals)
        num_records = len(self.record_ids)
        if num_records == 0:
            raise ValueError("The dataset holds no records.")

        lengths = np.empty(num_records, dtype=np.int64)
        num_leads = None
        for i, signal in enumerate(signals):
            shape = np.shape(signal)
            if len(shape) != 2:
                raise ValueError(
                    f"Record {self.record_ids[i]!r} has shape {shape}; expected "
                    "(timesteps, leads)."
                )
            if num_leads is None:
                num_leads = shape[1]
            elif shape[1] != num_leads:
                raise ValueError(
                    f"Record {self.record_ids[i]!r} has {shape[1]} leads but "
                    f"record {self.record_ids[0]!r} has {num_leads}."
                )
            lengths[i] = shape[0]
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.num_leads = int(num_leads)
        self.total = int(lengths.sum())

        nbytes = self.total * self.num_leads * 4
        base = _in_place_base(signals)
        # A memmap (the reader's cache) is read in place at any size: copying
        # it into a variable would hold the whole dataset in RAM.
        in_place = base is not None and (
            isinstance(base[2], np.memmap) or nbytes > max_in_memory_bytes
        )
        self.in_memory = not in_place and nbytes <= max_in_memory_bytes
        if in_place:
            self._array, self.offsets, _ = base
        elif self.in_memory:
            packed = _pack_in_memory(signals, self.record_ids)
            with tf.device("/CPU:0"):
                self._variable = tf.Variable(
                    packed, trainable=False, name="packed_ecg_records"
                )
        else:
            self._array, self.offsets = _pack_on_disk(signals, self.offsets)
        if not self.in_memory:
            self._reader = _CropReader(self._array)

    def __len__(self):
        return len(self.record_ids)

    def check_min_length(self, min_length, what):
        short = np.flatnonzero(self.lengths < min_length)
        if len(short):
            i = short[0]
            raise ValueError(
                f"Record {self.record_ids[i]!r} has {self.lengths[i]} timesteps, "
                f"fewer than the {what} of {min_length} "
                f"({len(short)} record(s) too short in total)."
            )

    def crops(self, starts, length):
        """`(batch,)` int64 absolute start rows -> `(batch, length, leads)`."""
        if self.in_memory:
            rows = starts[:, None] + tf.range(length, dtype=tf.int64)[None, :]
            out = tf.gather(self._variable, rows)
        else:
            out = tf.numpy_function(
                self._reader,
                [starts, tf.cast(length, tf.int64)],
                tf.float32,
                stateful=False,
            )
        out = tf.ensure_shape(out, [None, length, self.num_leads])
        if self.mean is not None:
            # float64 as LeadStandardizer.transform: identical values.
            out = tf.cast((tf.cast(out, tf.float64) - self.mean) / self.std, tf.float32)
        return out


class _CropReader:
    """Reads crops `[row, row + size)` of a `(rows, leads)` float32 array.

    A memmap's file is read with `os.preadv`, one call per crop straight into
    the batch, rather than through the mapping: pages touched through a mapping
    count in the process's resident memory, so an epoch over a 40 GB cache
    would show 40 GB RSS (reclaimable, but alarming and counted by some
    memory limits); read this way the data only passes through the kernel's
    page cache. Other arrays are sliced.
    """

    def __init__(self, array):
        self.array = array
        self.row_bytes = array.shape[1] * 4
        self.fd = None
        filename = getattr(array, "filename", None)
        if isinstance(array, np.memmap) and filename and os.path.isfile(filename):
            self.fd = os.open(filename, os.O_RDONLY)
            self.byte_offset = int(array.offset)
            weakref.finalize(self, os.close, self.fd)

    def __call__(self, first_rows, size):
        size = int(size)
        out = np.empty((len(first_rows), size, self.array.shape[1]), np.float32)
        if self.fd is None:
            for i, row in enumerate(first_rows):
                out[i] = self.array[row : row + size]
            return out
        nbytes = size * self.row_bytes
        for i, row in enumerate(first_rows):
            position = self.byte_offset + int(row) * self.row_bytes
            if os.preadv(self.fd, [out[i]], position) != nbytes:
                raise OSError(
                    f"{self.array.filename}: short read at byte {position} "
                    "(was the cache file truncated or replaced?)"
                )
        return out


def _statistics(standardizer, signals):
    """`(mean, std)` float64 tensors of `standardizer`, or `(None, None)`."""
    if standardizer is None:
        return None, None
    mean = getattr(standardizer, "mean", None)
    std = getattr(standardizer, "std", None)
    if mean is None or std is None:
        raise ValueError(
            "`standardizer` must be fitted (have per-lead `mean` and `std`)."
        )
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    num_leads = np.shape(signals[0])[-1] if len(signals) else len(mean)
    if len(mean) != num_leads or len(std) != num_leads:
        raise ValueError(
            f"The standardizer has {len(mean)} leads but the records have {num_leads}."
        )
    return tf.constant(mean), tf.constant(std)


def _unpack_input(data):
    if isinstance(data, ECGDataset):
        return data.signals, data.record_ids, data.labels
    if isinstance(data, np.ndarray) and data.ndim == 3:
        return data, [str(i) for i in range(len(data))], None
    if isinstance(data, (list, tuple)) or (
        isinstance(data, np.ndarray) and data.dtype == object
    ):
        return data, [str(i) for i in range(len(data))], None
    raise TypeError(
        "`data` must be an ECGDataset, a sequence of (timesteps, leads) arrays or "
        f"a (records, timesteps, leads) array; got {type(data).__name__}."
    )


def _resolve_labels(labels, dataset_labels, num_records):
    if labels is None:
        labels = dataset_labels
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim == 1:
        labels = labels[:, None]
    if len(labels) != num_records:
        raise ValueError(f"{len(labels)} label rows but {num_records} records.")
    if not np.all(np.isfinite(labels)):
        raise ValueError("Labels contain NaN or infinite values.")
    return labels


def _pack_in_memory(signals, record_ids):
    if isinstance(signals, np.ndarray) and signals.ndim == 3:
        packed = np.ascontiguousarray(signals, dtype=np.float32)
        packed = packed.reshape(-1, packed.shape[-1])
        bad = ~np.isfinite(signals).reshape(len(signals), -1).all(axis=1)
        if bad.any():
            _raise_non_finite(record_ids[int(np.flatnonzero(bad)[0])])
        return packed
    parts = []
    for record_id, signal in zip(record_ids, signals, strict=True):
        signal = np.asarray(signal, dtype=np.float32)
        if not np.isfinite(signal).all():
            _raise_non_finite(record_id)
        parts.append(signal)
    return np.concatenate(parts, axis=0)


def _raise_non_finite(record_id):
    raise ValueError(
        f"Record {record_id!r} contains NaN or infinite values; clean or drop it "
        "before building a pipeline."
    )


def _root_array(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _pack_on_disk(signals, offsets):
    """Packs unrelated arrays into a temporary memmap.

    Non-finite values are not checked on this path (it would read everything).
    """
    handle, path = tempfile.mkstemp(prefix="keras_ecg_packed_", suffix=".f32")
    os.close(handle)
    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    total = int(offsets[-1] + len(signals[-1]))
    array = np.memmap(
        path, dtype=np.float32, mode="w+", shape=(total, signals[0].shape[1])
    )
    for offset, signal in zip(offsets, signals, strict=True):
        array[offset : offset + len(signal)] = signal
    array.flush()
    return array, offsets


def _in_place_base(signals):
    """`(array_2d, row_offsets, root)` when the records can be read in place
    from one C-contiguous float32 array, else `None`."""
    if isinstance(signals, np.ndarray) and signals.ndim == 3:
        if signals.dtype != np.float32 or not signals.flags.c_contiguous:
            return None
        offsets = np.arange(len(signals), dtype=np.int64) * signals.shape[1]
        return signals.reshape(-1, signals.shape[2]), offsets, _root_array(signals)
    offsets = _offsets_in_common_base(signals)
    if offsets is None:
        return None
    root = _root_array(signals[0])
    return root.reshape(-1, signals[0].shape[1]), offsets, root


def _offsets_in_common_base(signals):
    """Row offsets of each record inside their shared C-contiguous float32 base."""
    first = signals[0]
    if not isinstance(first, np.ndarray):
        return None
    root = _root_array(first)
    row_bytes = first.shape[1] * 4
    if (
        root.dtype != np.float32
        or not root.flags.c_contiguous
        or root.size % first.shape[1]
    ):
        return None
    start = root.__array_interface__["data"][0]
    end = start + root.nbytes
    offsets = np.empty(len(signals), dtype=np.int64)
    for i, signal in enumerate(signals):
        if (
            not isinstance(signal, np.ndarray)
            or signal.dtype != np.float32
            or not signal.flags.c_contiguous
            or _root_array(signal) is not root
        ):
            return None
        address = signal.__array_interface__["data"][0]
        if (address - start) % row_bytes or address + signal.nbytes > end:
            return None
        offsets[i] = (address - start) // row_bytes
    return offsets


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------


def _is_data_layer(layer):
    return any(
        cls.__name__ in ("DataLayer", "TFDataLayer") for cls in type(layer).__mro__
    )


def _wrap_augmentation(augmentation):
    """Makes `augmentation` callable on `tf` tensors inside a `tf.data` graph.

    Plain callables are assumed to be graph-compatible TensorFlow code. Keras
    layers run directly under the TensorFlow backend, and so do Keras
    `DataLayer`s under any backend (they switch to TensorFlow inside `tf.data`).
    Other Keras layers under JAX / PyTorch are bridged through
    `tf.numpy_function` and run eagerly in the active backend, one call per
    batch.
    """
    if augmentation is None:
        return None
    if not callable(augmentation):
        raise TypeError(f"`augmentation` must be callable; got {augmentation!r}.")
    if not isinstance(augmentation, keras.layers.Layer):
        return augmentation
    if keras.backend.backend() == "tensorflow" or _is_data_layer(augmentation):
        return lambda x: augmentation(x, training=True)

    def _eager(x):
        out = augmentation(keras.ops.convert_to_tensor(x), training=True)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

    def _bridged(x):
        out = tf.numpy_function(_eager, [x], tf.float32)
        return tf.ensure_shape(out, [None, None, x.shape[-1]])

    return _bridged


def _per_view(augmentation, num_views):
    if isinstance(augmentation, (list, tuple)):
        if len(augmentation) != num_views:
            raise ValueError(
                f"{len(augmentation)} augmentations given for {num_views} views."
            )
        return [_wrap_augmentation(a) for a in augmentation]
    return [_wrap_augmentation(augmentation)] * num_views


# ----------------------------------------------------------------------------
# Shared building blocks
# ----------------------------------------------------------------------------


def _split_seed(seed):
    """Two independent int seeds (shuffle, crops) from one user seed."""
    if seed is None:
        return None, None
    ss = np.random.SeedSequence(int(seed))
    a, b = ss.generate_state(2, dtype=np.uint32)
    return int(a), int(b)


def _indexed_batches(num_records, batch_size, shuffle, seed, drop_remainder, repeat):
    """Batches of `(record_positions, stateless_seed)`; shuffled per epoch."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    if drop_remainder and not repeat and num_records < batch_size:
        raise ValueError(
            f"Only {num_records} records for `batch_size={batch_size}` with "
            "`drop_remainder=True`: the pipeline would be empty."
        )
    shuffle_seed, crop_seed = _split_seed(seed)
    ds = tf.data.Dataset.range(num_records)
    if shuffle:
        ds = ds.shuffle(num_records, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    seeds = tf.data.Dataset.random(
        seed=crop_seed, rerandomize_each_iteration=True
    ).batch(2)
    return tf.data.Dataset.zip((ds, seeds))


def _random_starts(lengths, rec, crop_length, num_draws, seed):
    """Uniform crop starts in `[0, length - crop_length]`, shape `(batch, draws)`."""
    span = tf.gather(lengths, rec) - crop_length + 1
    u = tf.random.stateless_uniform(
        [tf.shape(rec)[0], num_draws], seed=seed, dtype=tf.float64
    )
    starts = tf.cast(tf.floor(u * tf.cast(span[:, None], tf.float64)), tf.int64)
    return tf.minimum(starts, span[:, None] - 1)


def _crop(packed, offsets, rec, starts, crop_length):
    return packed.crops(tf.gather(offsets, rec) + starts, crop_length)


def _map(ds, fn, parallel=True):
    """`ds.map` keeping element order; `parallel=False` for seeded stateful RNG."""
    if parallel:
        return ds.map(fn, num_parallel_calls=_AUTOTUNE, deterministic=True)
    return ds.map(fn)


def _as_packed(data, labels, max_in_memory_bytes, standardizer=None):
    if isinstance(data, _PackedRecords):
        return data
    return _PackedRecords(
        data,
        max_in_memory_bytes=max_in_memory_bytes,
        labels=labels,
        standardizer=standardizer,
    )


# ----------------------------------------------------------------------------
# Public pipelines
# ----------------------------------------------------------------------------


def make_pretraining_dataset(
    data,
    crop_length=250,
    num_views=2,
    augmentation=None,
    batch_size=256,
    shuffle=True,
    seed=None,
    drop_remainder=True,
    independent_crops=False,
    repeat=False,
    max_in_memory_bytes=MAX_IN_MEMORY_BYTES,
    standardizer=None,
):
    """Builds a self-supervised pretraining pipeline of augmented views.

    Each epoch draws one random crop per record; every view is
    `augmentation(crop)`, applied after batching so it is vectorised.

    Args:
        data: an `ECGDataset`, a sequence of `(timesteps_i, leads)` arrays
            (lengths may differ; memmap views are fine) or a
            `(records, timesteps, leads)` array.
        crop_length: timesteps per crop, or a list of `num_views` lengths for
            SwAV-style multi-crop. With a list and `independent_crops=False`, one
            window of the longest length is drawn per record and each view is a
            random sub-crop of its own length inside it.
        num_views: views per record. `1` yields plain `x` tensors (e.g. for
            CPC); more yields `(views,)` with `views` a tuple of `num_views`
            tensors `(batch, crop_length, leads)`, which Keras treats as `x`.
        augmentation: a callable / Keras layer mapping a batch
            `(batch, timesteps, leads)` to an augmented batch, or a list of
            `num_views` of them (one per view). `None` leaves crops unchanged.
            Plain callables must be TensorFlow-graph compatible; Keras
            `DataLayer`s (e.g. `keras_ecg.layers.augmentation`) run in-graph
            under every backend; other Keras layers run in-graph under
            TensorFlow and through `tf.numpy_function` under JAX / PyTorch.
        batch_size: records per batch.
        shuffle: shuffle the record order every epoch.
        seed: int; makes order and crops reproducible (see module docstring).
        drop_remainder: drop the last incomplete batch (keeps contrastive
            batches full).
        independent_crops: draw a separate random crop for every view.
        repeat: repeat indefinitely (batches may then span epoch boundaries).
        max_in_memory_bytes: pack into memory up to this size, else read
            batches from a memmap (a reader's memmap cache is always read in
            place).
        standardizer: optional fitted `LeadStandardizer` (or object with
            per-lead `mean` / `std`) applied to every crop before the
            augmentation, instead of standardising a copy of the records.

    Returns:
        A `tf.data.Dataset`.

    Example:

    ```python
    ds = make_pretraining_dataset(ecg_dataset, crop_length=250, num_views=2,
                                  augmentation=my_augmentation, seed=0)
    model.fit(ds, epochs=10)
    ```
    """
    if num_views < 1:
        raise ValueError(f"`num_views` must be >= 1; got {num_views}.")
    if isinstance(crop_length, (list, tuple)):
        crop_lengths = [int(c) for c in crop_length]
        if len(crop_lengths) != num_views:
            raise ValueError(
                f"`crop_length` lists {len(crop_lengths)} lengths but "
                f"`num_views={num_views}`; give one length per view."
            )
    else:
        crop_lengths = [int(crop_length)] * num_views
    if min(crop_lengths) < 1:
        raise ValueError(f"Crop lengths must be >= 1; got {crop_lengths}.")
    packed = _as_packed(data, None, max_in_memory_bytes, standardizer)
    window = max(crop_lengths)
    packed.check_min_length(window, "crop length")
    augmentations = _per_view(augmentation, num_views)

    lengths = tf.constant(packed.lengths)
    offsets = tf.constant(packed.offsets)
    same_crop = not independent_crops and len(set(crop_lengths)) == 1

    def _make_views(rec, seed):
        if same_crop:
            starts = _random_starts(lengths, rec, window, 1, seed)[:, 0]
            crop = _crop(packed, offsets, rec, starts, window)
            return [crop] * num_views
        u = tf.random.stateless_uniform(
            [tf.shape(rec)[0], num_views], seed=seed, dtype=tf.float64
        )
        crop_len = tf.constant(crop_lengths, tf.int64)[None, :]
        if independent_crops:
            # Each view spans its own full range of starts over the record.
            span = tf.gather(lengths, rec)[:, None] - crop_len + 1
        else:
            # Sub-crops inside one shared window of the longest length.
            base = _random_starts(lengths, rec, window, 1, seed + [0, 1])
            span = window - crop_len + 1
        starts = tf.cast(tf.floor(u * tf.cast(span, tf.float64)), tf.int64)
        starts = tf.minimum(starts, span - 1)
        if not independent_crops:
            starts = base + starts
        return [
            _crop(packed, offsets, rec, starts[:, k], c)
            for k, c in enumerate(crop_lengths)
        ]

    def _to_views(rec, seed):
        return tuple(_make_views(rec, seed))

    def _augment(*views):
        views = [
            view if aug is None else aug(view)
            for view, aug in zip(views, augmentations, strict=True)
        ]
        return views[0] if num_views == 1 else (tuple(views),)

    ds = _indexed_batches(
        len(packed), batch_size, shuffle, seed, drop_remainder, repeat
    )
    ds = _map(ds, _to_views)
    no_augmentation = all(aug is None for aug in augmentations)
    ds = _map(ds, _augment, parallel=seed is None or no_augmentation)
    return ds.prefetch(_AUTOTUNE)


def make_supervised_dataset(
    data,
    labels=None,
    crop_length=250,
    augmentation=None,
    batch_size=128,
    shuffle=True,
    seed=None,
    drop_remainder=False,
    repeat=False,
    max_in_memory_bytes=MAX_IN_MEMORY_BYTES,
    standardizer=None,
):
    """Builds a downstream pipeline of `(x, y)` random crops.

    Args:
        data: an `ECGDataset`, a sequence of `(timesteps_i, leads)` arrays or a
            `(records, timesteps, leads)` array.
        labels: `(records, classes)` targets; defaults to `data.labels` for an
            `ECGDataset`. With no labels at all the dataset yields plain `x`.
        crop_length: timesteps per crop; one random crop per record per epoch.
        augmentation: optional callable / Keras layer applied per batch to `x`.
        batch_size: records per batch.
        shuffle: shuffle the record order every epoch.
        seed: int; makes order and crops reproducible.
        drop_remainder: drop the last incomplete batch.
        repeat: repeat indefinitely.
        max_in_memory_bytes: pack into memory up to this size, else read
            batches from a memmap (a reader's memmap cache is always read in
            place).
        standardizer: optional fitted `LeadStandardizer` (or object with
            per-lead `mean` / `std`) applied to every crop before the
            augmentation.

    Returns:
        A `tf.data.Dataset` of `(x, y)` (or `x`), `x` of shape
        `(batch, crop_length, leads)` and `y` float32 `(batch, classes)`.

    Example:

    ```python
    ds = make_supervised_dataset(train, crop_length=250, batch_size=128, seed=0)
    classifier.fit(ds, epochs=50)
    ```
    """
    crop_length = int(crop_length)
    packed = _as_packed(data, labels, max_in_memory_bytes, standardizer)
    packed.check_min_length(crop_length, "crop length")
    aug = _wrap_augmentation(augmentation)
    lengths = tf.constant(packed.lengths)
    offsets = tf.constant(packed.offsets)
    label_table = None if packed.labels is None else tf.constant(packed.labels)

    def _load(rec, seed):
        starts = _random_starts(lengths, rec, crop_length, 1, seed)[:, 0]
        x = _crop(packed, offsets, rec, starts, crop_length)
        if aug is not None:
            x = aug(x)
        if label_table is None:
            return x
        return x, tf.gather(label_table, rec)

    ds = _indexed_batches(
        len(packed), batch_size, shuffle, seed, drop_remainder, repeat
    )
    ds = _map(ds, _load, parallel=seed is None or aug is None)
    return ds.prefetch(_AUTOTUNE)


def window_starts(length, window_length, stride, include_tail=True):
    """Start positions of the sliding windows over one record.

    Windows start at `0, stride, 2 * stride, ...` while they fit. With
    `include_tail`, a last window `[length - window_length, length)` is added
    when the grid does not end exactly at the record end, so every timestep is
    covered (for PTB-XL at 100 Hz, 1000 / 250 / 125, the grid already ends at
    the record end and both choices give 7 windows).

    Args:
        length: record length in timesteps (>= `window_length`).
        window_length: timesteps per window.
        stride: step between window starts.
        include_tail: add the end-aligned last window when off the grid.

    Returns:
        An int64 numpy array of starts.
    """
    if length < window_length:
        raise ValueError(f"Length {length} is shorter than the window {window_length}.")
    starts = np.arange(0, length - window_length + 1, stride, dtype=np.int64)
    if include_tail and starts[-1] != length - window_length:
        starts = np.append(starts, length - window_length)
    return starts


def make_window_dataset(
    data,
    labels=None,
    window_length=250,
    stride=125,
    batch_size=256,
    include_tail=True,
    max_in_memory_bytes=MAX_IN_MEMORY_BYTES,
    standardizer=None,
):
    """Builds an ordered sliding-window pipeline for evaluation.

    Args:
        data: an `ECGDataset`, a sequence of `(timesteps_i, leads)` arrays or a
            `(records, timesteps, leads)` array.
        labels: `(records, classes)` targets, repeated for each window of a
            record; defaults to `data.labels`. Without labels yields plain `x`.
        window_length: timesteps per window.
        stride: step between window starts.
        batch_size: windows per batch.
        include_tail: add a last end-aligned window when the stride grid misses
            the record end (see `window_starts`).
        max_in_memory_bytes: pack into memory up to this size, else read
            batches from a memmap (a reader's memmap cache is always read in
            place).
        standardizer: optional fitted `LeadStandardizer` (or object with
            per-lead `mean` / `std`) applied to every window.

    Returns:
        `(dataset, record_index)`: the `tf.data.Dataset` of `(x, y)` windows of
        every record in order, and an int64 numpy array mapping each window to
        the position of its record (for `aggregate_windows`).

    Example:

    ```python
    ds, record_index = make_window_dataset(test, window_length=250, stride=125)
    scores = aggregate_windows(model.predict(ds), record_index, method="mean")
    ```
    """
    window_length, stride = int(window_length), int(stride)
    if stride < 1:
        raise ValueError(f"`stride` must be >= 1; got {stride}.")
    packed = _as_packed(data, labels, max_in_memory_bytes, standardizer)
    packed.check_min_length(window_length, "window length")
    per_record = [
        window_starts(n, window_length, stride, include_tail) for n in packed.lengths
    ]
    counts = np.array([len(s) for s in per_record], dtype=np.int64)
    record_index = np.repeat(np.arange(len(packed), dtype=np.int64), counts)
    starts = np.concatenate(per_record)
    offsets = tf.constant(packed.offsets)
    label_table = None if packed.labels is None else tf.constant(packed.labels)

    def _load(rec, start):
        x = _crop(packed, offsets, rec, start, window_length)
        if label_table is None:
            return x
        return x, tf.gather(label_table, rec)

    ds = tf.data.Dataset.from_tensor_slices((record_index, starts)).batch(batch_size)
    ds = _map(ds, _load)
    return ds.prefetch(_AUTOTUNE), record_index
