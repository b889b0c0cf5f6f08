import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.data import make_pretraining_dataset
from keras_ecg.data import make_supervised_dataset
from keras_ecg.data import make_window_dataset
from keras_ecg.data import window_starts
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.pipelines import _offsets_in_common_base

LENGTHS = (300, 260, 400, 251, 500, 333)
NUM_LEADS = 3


def _records(lengths=LENGTHS, seed=0):
    """Records whose lead 0 encodes `1000 * record + timestep` (exact in float32)."""
    rng = np.random.default_rng(seed)
    records = []
    for i, n in enumerate(lengths):
        r = rng.normal(size=(n, NUM_LEADS)).astype("float32")
        r[:, 0] = 1000 * i + np.arange(n)
        records.append(r)
    return records


def _locate(crop, tol=0.0):
    """Recovers `(record, start)` of a crop from its encoded lead 0."""
    code = np.round(crop[0, 0]) if tol else crop[0, 0]
    return int(code // 1000), int(code % 1000)


def _assert_is_slice(crop, records, length, atol=0.0):
    rec, start = _locate(crop, tol=atol)
    n = len(records[rec])
    assert 0 <= start <= n - length, (rec, start, n)
    np.testing.assert_allclose(
        crop, records[rec][start : start + length], atol=atol, rtol=0
    )
    return rec, start


def _epoch(ds):
    return [keras.tree.map_structure(lambda t: t.numpy(), e) for e in ds]


def test_crops_lie_inside_records_and_equal_the_source_slice():
    records = _records()
    ds = make_pretraining_dataset(
        records, crop_length=250, batch_size=4, seed=3, drop_remainder=False
    )
    seen = []
    for (views,) in _epoch(ds):
        assert len(views) == 2
        # Without augmentation both views are the same crop.
        np.testing.assert_array_equal(views[0], views[1])
        assert views[0].shape[1:] == (250, NUM_LEADS)
        assert views[0].dtype == np.float32
        for crop in views[0]:
            seen.append(_assert_is_slice(crop, records, 250)[0])
    # One crop per record per epoch.
    assert sorted(seen) == list(range(len(records)))


def test_crop_starts_reach_both_ends_of_the_record():
    records = _records(lengths=(252, 253))
    ds = make_pretraining_dataset(
        records, crop_length=250, num_views=1, batch_size=2, seed=0, repeat=True
    )
    starts = {0: set(), 1: set()}
    for x in ds.take(60):
        for crop in x.numpy():
            rec, start = _assert_is_slice(crop, records, 250)
            starts[rec].add(start)
    assert starts == {0: {0, 1, 2}, 1: {0, 1, 2, 3}}


def test_same_seed_gives_identical_epochs_and_epochs_differ():
    records = _records()
    kwargs = dict(crop_length=100, batch_size=3, seed=11, independent_crops=True)
    ds_a = make_pretraining_dataset(records, **kwargs)
    ds_b = make_pretraining_dataset(records, **kwargs)
    a1, a2 = _epoch(ds_a), _epoch(ds_a)
    b1, b2 = _epoch(ds_b), _epoch(ds_b)
    for x, y in zip(a1 + a2, b1 + b2, strict=True):
        np.testing.assert_array_equal(x[0][0], y[0][0])
        np.testing.assert_array_equal(x[0][1], y[0][1])
    assert not np.array_equal(a1[0][0][0], a2[0][0][0])
    c1 = _epoch(make_pretraining_dataset(records, **{**kwargs, "seed": 12}))
    assert not np.array_equal(a1[0][0][0], c1[0][0][0])


def test_views_differ_under_augmentation_but_share_the_crop():
    records = _records()

    def jitter(x):
        return x + tf.random.uniform(tf.shape(x), -0.01, 0.01)

    ds = make_pretraining_dataset(
        records, crop_length=200, num_views=3, augmentation=jitter, batch_size=6
    )
    ((views,),) = _epoch(ds)
    assert len(views) == 3
    assert not np.array_equal(views[0], views[1])
    for i in range(6):
        located = {_assert_is_slice(v[i], records, 200, atol=0.011) for v in views}
        assert len(located) == 1  # all views come from one crop


def test_independent_crops_draw_separate_offsets():
    records = _records(lengths=(500,) * 8)
    ds = make_pretraining_dataset(
        records, crop_length=50, batch_size=8, seed=5, independent_crops=True
    )
    ((views,),) = _epoch(ds)
    pairs = [
        (_assert_is_slice(a, records, 50), _assert_is_slice(b, records, 50))
        for a, b in zip(views[0], views[1], strict=True)
    ]
    assert all(p[0][0] == p[1][0] for p in pairs)  # same record
    assert sum(p[0][1] != p[1][1] for p in pairs) >= 6  # different offsets


def test_multi_crop_views_nest_inside_the_global_window():
    records = _records()
    lengths = [250, 250, 100, 60]
    ds = make_pretraining_dataset(
        records, crop_length=lengths, num_views=4, batch_size=6, seed=2
    )
    ((views,),) = _epoch(ds)
    for i in range(6):
        located = [
            _assert_is_slice(v[i], records, n)
            for v, n in zip(views, lengths, strict=True)
        ]
        (rec, g0), (_, g1) = located[:2]
        assert g0 == g1  # equal-length global views share the window
        for (r, s), n in zip(located[2:], lengths[2:], strict=True):
            assert r == rec and g0 <= s and s + n <= g0 + 250
    with pytest.raises(ValueError, match="one length per view"):
        make_pretraining_dataset(records, crop_length=[250, 100], num_views=3)


def test_num_views_one_yields_plain_tensors():
    ds = make_pretraining_dataset(
        _records(), crop_length=100, num_views=1, batch_size=2
    )
    assert isinstance(ds.element_spec, tf.TensorSpec)
    assert ds.element_spec.shape.as_list() == [2, 100, NUM_LEADS]
    assert ds.cardinality().numpy() == 3  # 6 records, drop_remainder


def test_stacked_array_and_ecg_dataset_inputs():
    stacked = np.stack(_records(lengths=(300,) * 4))
    x = next(iter(make_pretraining_dataset(stacked, num_views=1, batch_size=4)))
    for crop in x.numpy():
        _assert_is_slice(crop, list(stacked), 250)
    dataset = ECGDataset(
        signals=_records(), record_ids=[f"r{i}" for i in range(6)], sampling_rate=100
    )
    x = next(iter(make_pretraining_dataset(dataset, num_views=1, batch_size=6)))
    assert x.shape == (6, 250, NUM_LEADS)


@pytest.mark.parametrize("max_in_memory_bytes", [None, 0])
def test_memmap_views_in_memory_and_on_disk(tmp_path, max_in_memory_bytes):
    records = _records()
    flat = np.concatenate(records)
    mm = np.memmap(tmp_path / "x.f32", dtype="float32", mode="w+", shape=flat.shape)
    mm[:] = flat
    bounds = np.concatenate([[0], np.cumsum(LENGTHS)])
    views = [mm[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    # Views of one base array are read in place, at their byte offsets.
    np.testing.assert_array_equal(_offsets_in_common_base(views), bounds[:-1])
    kwargs = {} if max_in_memory_bytes is None else {"max_in_memory_bytes": 0}
    ds = make_pretraining_dataset(
        views[::-1], num_views=1, batch_size=6, shuffle=False, **kwargs
    )
    (x,) = _epoch(ds)
    located = [_assert_is_slice(c, records, 250)[0] for c in x]
    assert located == list(range(5, -1, -1))


def test_unrelated_arrays_are_packed_to_a_temporary_memmap():
    records = _records()
    assert _offsets_in_common_base(records) is None
    ds, record_index = make_window_dataset(
        records, window_length=250, stride=125, max_in_memory_bytes=0
    )
    windows = np.concatenate([x for x in _epoch(ds)])
    for w, rec in zip(windows, record_index, strict=True):
        assert _assert_is_slice(w, records, 250)[0] == rec


def test_bad_records_raise_errors_naming_the_record():
    records = _records(lengths=(300, 120, 400))
    dataset = ECGDataset(
        signals=records, record_ids=["a", "short_one", "c"], sampling_rate=100
    )
    with pytest.raises(ValueError, match="'short_one' has 120 timesteps"):
        make_pretraining_dataset(dataset, crop_length=250)
    with pytest.raises(ValueError, match="'short_one'.*window length"):
        make_window_dataset(dataset, window_length=250)
    with pytest.raises(ValueError, match="would be empty"):
        make_pretraining_dataset(records[:1], crop_length=100, batch_size=2)
    # Repeating, a batch may span epochs, so fewer records than a batch is fine.
    x = next(
        iter(
            make_pretraining_dataset(
                records[:1], crop_length=100, num_views=1, batch_size=3, repeat=True
            )
        )
    )
    assert [_locate(c)[0] for c in x.numpy()] == [0, 0, 0]
    records[2][7, 1] = np.nan
    dataset = ECGDataset(signals=records, record_ids=["a", "b", "c"], sampling_rate=100)
    with pytest.raises(ValueError, match="'c' contains NaN"):
        make_supervised_dataset(dataset, crop_length=100)
    records[1] = records[1][:, :2]
    with pytest.raises(ValueError, match="'1' has 2 leads"):
        make_supervised_dataset(records, crop_length=100)


def test_supervised_dataset_pairs_crops_with_their_labels():
    records = _records()
    labels = np.eye(6, dtype="float32")[:, ::-1]
    dataset = ECGDataset(
        signals=records,
        record_ids=list("abcdef"),
        sampling_rate=100,
        labels=labels,
        classes=list("uvwxyz"),
    )
    ds = make_supervised_dataset(dataset, crop_length=200, batch_size=4, seed=1)
    batches = _epoch(ds)
    assert [len(b[0]) for b in batches] == [4, 2]  # keeps the remainder
    for x, y in batches:
        for crop, target in zip(x, y, strict=True):
            rec, _ = _assert_is_slice(crop, records, 200)
            np.testing.assert_array_equal(target, labels[rec])
    # Without labels it yields plain x (e.g. CPC).
    unlabeled = make_supervised_dataset(records, crop_length=200, batch_size=4)
    assert isinstance(unlabeled.element_spec, tf.TensorSpec)


@pytest.mark.parametrize("include_tail", [True, False])
def test_window_dataset_counts_order_and_record_index(include_tail):
    lengths = (250, 300, 400, 500, 251)
    records = _records(lengths)
    labels = np.arange(10, dtype="float32").reshape(5, 2)
    window, stride = 250, 125
    ds, record_index = make_window_dataset(
        records,
        labels=labels,
        window_length=window,
        stride=stride,
        batch_size=4,
        include_tail=include_tail,
    )
    # Independent count: grid windows, plus one end-aligned window off the grid.
    counts = [
        (n - window) // stride + 1 + int(include_tail and (n - window) % stride > 0)
        for n in lengths
    ]
    assert counts == ([1, 2, 3, 3, 2] if include_tail else [1, 1, 2, 3, 1])
    np.testing.assert_array_equal(record_index, np.repeat(np.arange(5), counts))
    batches = _epoch(ds)
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    assert len(xs) == sum(counts)
    located = [_assert_is_slice(w, records, window) for w in xs]
    assert [r for r, _ in located] == record_index.tolist()
    np.testing.assert_array_equal(ys, labels[record_index])
    expected_starts = [0, 0, 50, 0, 125, 150, 0, 125, 250, 0, 1]
    if not include_tail:
        expected_starts = [0, 0, 0, 125, 0, 125, 250, 0]
    assert [s for _, s in located] == expected_starts
    np.testing.assert_array_equal(window_starts(375, 250, 125), [0, 125])


def test_keras_augmentation_layers_run_under_the_active_backend():
    records = _records()
    noise = keras.layers.GaussianNoise(0.001, seed=0)
    ds = make_pretraining_dataset(
        records, crop_length=100, augmentation=noise, batch_size=6, seed=0
    )
    ((views,),) = _epoch(ds)
    assert not np.array_equal(views[0], views[1])
    for a, b in zip(views[0], views[1], strict=True):
        assert _assert_is_slice(a, records, 100, atol=0.01) == _assert_is_slice(
            b, records, 100, atol=0.01
        )


def test_pipelines_feed_model_fit_under_the_active_backend():
    rng = np.random.default_rng(0)
    records = [rng.normal(size=(n, NUM_LEADS)).astype("float32") for n in LENGTHS * 3]
    labels = rng.integers(0, 2, size=(len(records), 2)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((None, NUM_LEADS)),
            keras.layers.Conv1D(4, 5),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    ds = make_supervised_dataset(records, labels, crop_length=128, batch_size=6, seed=0)
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(
        not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True)
    )

    # A two-view pretraining batch reaches a two-input model as `x`.
    a, b = keras.Input((128, NUM_LEADS)), keras.Input((128, NUM_LEADS))
    encoder = keras.layers.GlobalAveragePooling1D()
    two_view = keras.Model([a, b], keras.layers.Subtract()([encoder(a), encoder(b)]))
    views_ds = make_pretraining_dataset(records, crop_length=128, batch_size=6)
    out = two_view.predict(views_ds, verbose=0)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)  # no augmentation: same crop
    assert out.shape == (18, NUM_LEADS)

    window_ds, record_index = make_window_dataset(records, labels, 250, 125)
    predictions = model.predict(window_ds, verbose=0)
    assert predictions.shape == (len(record_index), 2)


def test_real_ptbxl_windows_and_crops_are_exact_slices(ptbxl_signals):
    records = ptbxl_signals[:16]  # (16, 1000, 12) read with wfdb
    ds, record_index = make_window_dataset(records, window_length=250, stride=125)
    windows = np.concatenate(_epoch(ds))
    assert len(windows) == 16 * 7  # (1000 - 250) / 125 + 1, on the grid
    starts = np.tile(np.arange(0, 751, 125), 16)
    for w, rec, start in zip(windows, record_index, starts, strict=True):
        np.testing.assert_array_equal(w, records[rec, start : start + 250])
    (views,) = next(iter(make_pretraining_dataset(records, batch_size=16, seed=0)))
    for crop in views[0].numpy():
        # Recover the crop's record and offset by matching against every slice.
        candidates = np.argwhere(records[:, :751, 0] == crop[0, 0])
        matches = [
            (r, s)
            for r, s in candidates
            if np.array_equal(records[r, s : s + 250], crop)
        ]
        assert len(matches) >= 1


def _memmap_views(tmp_path, records):
    flat = np.concatenate(records)
    mm = np.memmap(tmp_path / "x.f32", dtype="float32", mode="w+", shape=flat.shape)
    mm[:] = flat
    mm.flush()
    mm = np.memmap(tmp_path / "x.f32", dtype="float32", mode="r", shape=flat.shape)
    bounds = np.concatenate([[0], np.cumsum([len(r) for r in records])])
    return [mm[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("source", ["memory", "memmap"])
def test_standardizer_in_the_pipeline_equals_standardising_first(tmp_path, source):
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    records = _records()
    records = [r * np.float32(0.37) + np.float32(1.5) for r in records]
    standardizer = LeadStandardizer().fit(records)
    data = records if source == "memory" else _memmap_views(tmp_path, records)
    kwargs = dict(crop_length=[200, 120], num_views=2, batch_size=3, seed=4)
    before = _epoch(make_pretraining_dataset(standardizer.transform(records), **kwargs))
    during = _epoch(make_pretraining_dataset(data, standardizer=standardizer, **kwargs))
    assert len(before) == len(during) == 2
    for (a,), (b,) in zip(before, during, strict=True):
        for view_a, view_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(view_a, view_b)
    labels = np.eye(6, dtype=np.float32)
    sup_before = _epoch(
        make_supervised_dataset(
            standardizer.transform(records), labels, crop_length=250, seed=1
        )
    )
    sup_during = _epoch(
        make_supervised_dataset(
            data, labels, crop_length=250, seed=1, standardizer=standardizer
        )
    )
    for (xa, ya), (xb, yb) in zip(sup_before, sup_during, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    win_before, _ = make_window_dataset(standardizer.transform(records), stride=100)
    win_during, _ = make_window_dataset(data, stride=100, standardizer=standardizer)
    for xa, xb in zip(_epoch(win_before), _epoch(win_during), strict=True):
        np.testing.assert_array_equal(xa, xb)


def test_memmap_records_are_read_in_place(tmp_path):
    from keras_ecg.data.pipelines import _PackedRecords

    records = _records()
    views = _memmap_views(tmp_path, records)
    packed = _PackedRecords(views[1:4])
    assert not packed.in_memory  # no tf.Variable copy of the memmap
    # The whole memmap, not a copy: records are located by their row offsets.
    assert isinstance(packed._array, np.memmap)
    assert np.shares_memory(packed._array, views[0])
    assert packed._array.shape == (sum(LENGTHS), NUM_LEADS)
    np.testing.assert_array_equal(packed.offsets, [300, 560, 960])
    assert _PackedRecords(records).in_memory  # plain arrays: packed in memory


def test_method_dataset_passes_the_standardizer_on():
    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.models.method_factory import make_method_dataset

    records = _records(lengths=(1000,) * 6)
    dataset = ECGDataset(
        signals=records, record_ids=[f"r{i}" for i in range(6)], sampling_rate=100
    )
    standardizer = LeadStandardizer().fit(dataset)
    (x,) = _epoch(
        make_method_dataset(
            "cpc", dataset.subset([1, 3, 5]), batch_size=3, standardizer=standardizer
        )
    )
    # CPC: plain 10 s crops of records 1, 3, 5, standardised.
    expected = standardizer.transform([records[i] for i in (1, 3, 5)])
    order = [int(round(c[0, 0] * standardizer.std[0] + standardizer.mean[0])) // 1000
             for c in x]  # fmt: skip
    assert sorted(order) == [1, 3, 5]
    for crop, i in zip(x, order, strict=True):
        np.testing.assert_array_equal(crop, expected[(1, 3, 5).index(i)])
