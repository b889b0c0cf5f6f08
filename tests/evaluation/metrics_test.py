import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from keras_ecg.evaluation import macro_auc
from keras_ecg.evaluation import per_class_auc

pytestmark = pytest.mark.backend_agnostic


def test_hand_computed_two_class_example():
    y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    y_score = np.array([[0.9, 0.2], [0.1, 0.8], [0.4, 0.3], [0.5, 0.3]])
    # Class 0: positives {0.9, 0.4}, negatives {0.1, 0.5}; pairs won:
    # 0.9>0.1, 0.9>0.5, 0.4>0.1, 0.4<0.5 -> 3/4.
    # Class 1: positives {0.8, 0.3}, negatives {0.2, 0.3}; 0.8 beats both,
    # 0.3>0.2, 0.3=0.3 is a tie (1/2) -> 3.5/4.
    np.testing.assert_allclose(per_class_auc(y_true, y_score), [0.75, 0.875])
    assert macro_auc(y_true, y_score) == pytest.approx((0.75 + 0.875) / 2)


def test_matches_scikit_learn_when_all_classes_are_present():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(60, 5))
    y_score = rng.random((60, 5)) + 0.3 * y_true
    y_score[:10] = np.round(y_score[:10], 1)  # some ties
    expected = roc_auc_score(y_true, y_score, average="macro")
    assert macro_auc(y_true, y_score) == pytest.approx(expected, abs=1e-12)
    per_class = [roc_auc_score(y_true[:, k], y_score[:, k]) for k in range(5)]
    np.testing.assert_allclose(per_class_auc(y_true, y_score), per_class)


def test_absent_classes_are_excluded_listed_and_warned():
    y_true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    y_score = np.array(
        [[0.8, 0.1, 0.5], [0.3, 0.2, 0.1], [0.6, 0.9, 0.2], [0.7, 0.4, 0.3]]
    )
    with pytest.warns(UserWarning, match="2 of 3 classes"):
        value, details = macro_auc(
            y_true, y_score, classes=["NORM", "MI", "STTC"], return_details=True
        )
    # Class 0: positives {0.8, 0.6}, negatives {0.3, 0.7} -> 3/4.
    assert value == pytest.approx(0.75)
    np.testing.assert_array_equal(details["included"], [0])
    np.testing.assert_array_equal(details["excluded"], [1, 2])
    assert details["excluded_classes"] == ["MI", "STTC"]
    assert np.isnan(details["per_class"][1:]).all()


def test_invalid_inputs_raise_clear_errors():
    y_true = np.array([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="NaN.*sample 1, class 0"):
        macro_auc(y_true, np.array([[0.1, 0.2], [np.nan, 0.3]]))
    with pytest.raises(ValueError, match="must both be"):
        macro_auc(y_true, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="multi-hot"):
        macro_auc(np.array([[2, 0], [0, 1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="undefined"):
        macro_auc(np.ones((3, 2)), np.zeros((3, 2)))
