import numpy as np
import pytest

from keras_ecg.inference import aggregate_windows

pytestmark = pytest.mark.backend_agnostic


def test_hand_computed_mean_and_max_in_record_order():
    predictions = np.array(
        [[0.2, 0.9], [0.6, 0.1], [0.5, 0.5], [0.1, 0.3], [0.4, 0.8]], dtype="float32"
    )
    # Unsorted: record 1 owns windows 0 and 3; record 0 owns 1 and 4; record 2 one.
    record_index = np.array([1, 0, 2, 1, 0])
    mean = aggregate_windows(predictions, record_index, method="mean")
    np.testing.assert_allclose(mean, [[0.5, 0.45], [0.15, 0.6], [0.5, 0.5]], rtol=1e-6)
    assert mean.dtype == np.float32
    maximum = aggregate_windows(predictions, record_index, method="max")
    np.testing.assert_array_equal(
        maximum, np.array([[0.6, 0.8], [0.2, 0.9], [0.5, 0.5]], dtype="float32")
    )


def test_matches_a_loop_over_records_for_any_shape():
    rng = np.random.default_rng(0)
    record_index = np.repeat(np.arange(7), rng.integers(1, 5, size=7))
    predictions = rng.random((len(record_index), 3, 2))
    for method, reduce in (("mean", np.mean), ("max", np.max)):
        expected = [reduce(predictions[record_index == r], axis=0) for r in range(7)]
        np.testing.assert_allclose(
            aggregate_windows(predictions, record_index, method), expected
        )


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="method"):
        aggregate_windows(np.zeros((2, 1)), [0, 1], method="median")
    with pytest.raises(ValueError, match="3 window predictions but 2"):
        aggregate_windows(np.zeros((3, 1)), [0, 1])
    with pytest.raises(ValueError, match="first: position 1"):
        aggregate_windows(np.zeros((2, 1)), [0, 2])
    with pytest.raises(ValueError, match="num_records=2"):
        aggregate_windows(np.zeros((2, 1)), [0, 2], num_records=2)
