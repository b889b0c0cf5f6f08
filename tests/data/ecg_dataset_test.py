import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import ECGDataset

pytestmark = pytest.mark.backend_agnostic


def _dataset(**kwargs):
    return ECGDataset(
        signals=[np.full((4, 2), i, dtype=np.float32) for i in range(3)],
        record_ids=["a", "b", "c"],
        sampling_rate=100,
        lead_names=("I", "II"),
        labels=np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32),
        classes=["AFIB", "SR"],
        **kwargs,
    )


def test_class_metadata_defaults_to_none_for_existing_callers():
    dataset = _dataset()
    assert dataset.class_descriptions is None and dataset.label_vocabulary is None
    assert dataset.subset([2]).class_descriptions is None


def test_subset_carries_class_descriptions_and_vocabulary():
    descriptions = ["atrial fibrillation", "sinus rhythm"]
    dataset = _dataset(class_descriptions=descriptions, label_vocabulary="scp")
    part = dataset.subset([2, 0])
    assert part.record_ids == ["c", "a"]
    np.testing.assert_array_equal(part.labels, [[1, 1], [1, 0]])
    assert part.class_descriptions == descriptions
    assert part.class_descriptions is not dataset.class_descriptions
    assert part.label_vocabulary == "scp"


def test_class_metadata_is_validated():
    with pytest.raises(ValueError, match="1 class descriptions but 2 classes"):
        _dataset(class_descriptions=["atrial fibrillation"])
    with pytest.raises(ValueError, match="label_vocabulary must be one of"):
        _dataset(label_vocabulary="icd10")
