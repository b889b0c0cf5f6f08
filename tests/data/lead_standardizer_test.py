import keras
import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.lead_standardizer import LeadStandardizer


def _records(seed=0):
    rng = np.random.default_rng(seed)
    scale = np.array([0.1, 1.0, 3.0])
    offset = np.array([0.5, -1.0, 2.0])
    return [
        (rng.normal(size=(n, 3)) * scale + offset).astype(np.float32)
        for n in (50, 20, 35)
    ]


@pytest.mark.backend_agnostic
def test_fit_pools_all_samples_of_all_records():
    records = _records()
    standardizer = LeadStandardizer().fit(records)
    pooled = np.concatenate(records).astype(np.float64)
    np.testing.assert_allclose(standardizer.mean, pooled.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(standardizer.std, pooled.std(axis=0), rtol=1e-10)
    # Equal-length records as one (batch, timesteps, leads) array.
    batch = np.stack([r[:20] for r in records])
    from_array = LeadStandardizer().fit(batch)
    flat = batch.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(from_array.std, flat.std(axis=0), rtol=1e-10)


@pytest.mark.backend_agnostic
def test_transform_dataset_array_and_list():
    records = _records()
    dataset = ECGDataset(records, ["a", "b", "c"], 100, lead_names=("I", "II", "V1"))
    standardizer = LeadStandardizer().fit(dataset)
    assert standardizer.lead_names == ("I", "II", "V1")
    out = standardizer.transform(dataset)
    pooled = np.concatenate(records).astype(np.float64)
    expected = (pooled - pooled.mean(0)) / pooled.std(0)
    np.testing.assert_allclose(np.concatenate(out.signals), expected, atol=1e-5)
    assert all(s.dtype == np.float32 for s in out.signals)
    assert out.record_ids == dataset.record_ids
    np.testing.assert_array_equal(dataset.signals[0], records[0])  # input untouched
    np.testing.assert_allclose(
        standardizer.transform(records[1]), expected[50:70], atol=1e-5
    )
    as_list = standardizer.transform(records)
    np.testing.assert_allclose(as_list[2], expected[70:], atol=1e-5)
    with pytest.raises(ValueError, match="leads"):
        standardizer.transform(np.zeros((10, 4)))
    other = ECGDataset(records, ["a", "b", "c"], 100, lead_names=("I", "II", "V2"))
    with pytest.raises(ValueError, match="V2"):
        standardizer.transform(other)


@pytest.mark.backend_agnostic
def test_constant_lead_is_centred_not_divided_by_zero():
    records = _records()
    for r in records:
        r[:, 1] = 4.0
    standardizer = LeadStandardizer().fit(records)
    assert standardizer.std[1] == 1.0
    out = standardizer.transform(records[0])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-6)


@pytest.mark.backend_agnostic
def test_save_load_and_config(tmp_path):
    standardizer = LeadStandardizer().fit(_records())
    path = tmp_path / "standardizer.json"
    standardizer.save(path)
    restored = LeadStandardizer.load(path)
    np.testing.assert_array_equal(restored.mean, standardizer.mean)
    np.testing.assert_array_equal(restored.std, standardizer.std)
    config = standardizer.get_config()
    assert LeadStandardizer.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="not fitted"):
        LeadStandardizer().transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="positive"):
        LeadStandardizer(mean=[0.0], std=[0.0])


def test_keras_layer_matches_transform():
    records = _records()
    standardizer = LeadStandardizer().fit(records)
    layer = standardizer.as_keras_layer()
    assert isinstance(layer, keras.layers.Normalization)
    batch = np.stack([r[:20] for r in records])
    out = keras.ops.convert_to_numpy(layer(batch))
    np.testing.assert_allclose(out, standardizer.transform(batch), atol=1e-5)
    rebuilt = keras.layers.Normalization.from_config(layer.get_config())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(rebuilt(batch)), out, atol=1e-6
    )


def test_fit_on_a_read_only_memmap_equals_fit_in_memory(tmp_path):
    from keras_ecg.data import lead_standardizer

    rng = np.random.default_rng(3)
    records = [
        rng.normal(2.0, 3.0, size=(n, 4)).astype(np.float32) for n in (50, 7, 90)
    ]
    flat = np.concatenate(records)
    np.save(tmp_path / "x.npy", flat)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    views = [mm[0:50], mm[50:57], mm[57:147]]
    released = []
    original = lead_standardizer._PageRelease.release

    def counting(self):
        released.append(len(self.maps))
        original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lead_standardizer._PageRelease, "release", counting)
        fitted = LeadStandardizer().fit(views)
    reference = LeadStandardizer().fit(records)
    np.testing.assert_array_equal(fitted.mean, reference.mean)
    np.testing.assert_array_equal(fitted.std, reference.std)
    np.testing.assert_allclose(fitted.mean, flat.astype(np.float64).mean(0))
    assert released and released[-1] == 1  # the memmap's pages were released
    np.testing.assert_array_equal(views[2], records[2])  # still readable
