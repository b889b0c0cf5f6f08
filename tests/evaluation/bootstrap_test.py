import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import roc_auc_score

from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics
from keras_ecg.evaluation.bootstrap import bootstrap_resamples
from keras_ecg.evaluation.bootstrap import format_interval
from keras_ecg.evaluation.bootstrap import macro_metrics
from keras_ecg.evaluation.bootstrap import paired_bootstrap

pytestmark = pytest.mark.backend_agnostic


def _case(num_samples=60, num_classes=5, seed=0, skill=1.0):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((num_samples, num_classes)) < 0.3).astype(int)
    # Rounded scores make ties, which both metrics must count as sklearn does.
    y_score = np.round(skill * y_true + rng.normal(size=y_true.shape), 1)
    return y_true, y_score


def _sklearn_macro(y_true, y_score, metric):
    """Mean of sklearn's per-class metric over classes with both outcomes."""
    scorer = roc_auc_score if metric == "macro_auroc" else average_precision_score
    values = [
        scorer(y_true[:, c], y_score[:, c])
        for c in range(y_true.shape[1])
        if 0 < y_true[:, c].sum() < len(y_true)
    ]
    return np.mean(values)


@pytest.mark.parametrize("metric", ["macro_auroc", "macro_auprc"])
def test_interval_matches_a_loop_over_sklearn_resamples(metric):
    y_true, y_score = _case()
    result = bootstrap_macro_metrics(
        y_true, y_score, num_resamples=200, seed=3, metrics=(metric,)
    )
    # Independent reference: the same documented draw, scored class by class
    # with scikit-learn, 2.5/97.5 percentiles.
    indices = np.random.default_rng(3).integers(0, len(y_true), size=(200, 60))
    values = [_sklearn_macro(y_true[i], y_score[i], metric) for i in indices]
    low, high = np.percentile(values, [2.5, 97.5])
    assert result[metric]["value"] == pytest.approx(
        _sklearn_macro(y_true, y_score, metric), abs=1e-12
    )
    assert result[metric]["low"] == pytest.approx(low, abs=1e-12)
    assert result[metric]["high"] == pytest.approx(high, abs=1e-12)
    assert result[metric]["low"] < result[metric]["value"] < result[metric]["high"]


def test_point_metrics_match_sklearn_and_the_bootstrap_values():
    y_true, y_score = _case(seed=5)
    y_true[:, 0] = 0  # no positive: left out of both means
    points = macro_metrics(y_true, y_score)
    intervals = bootstrap_macro_metrics(y_true, y_score, num_resamples=10)
    assert points["num_classes"] == 4
    for metric in ("macro_auroc", "macro_auprc"):
        assert points[metric] == pytest.approx(_sklearn_macro(y_true, y_score, metric))
        assert points[metric] == intervals[metric]["value"]


def test_hand_computed_average_precision_with_ties():
    # Scores 0.9 (pos), 0.5 (pos), 0.5 (neg), 0.1 (neg): thresholds 0.9 -> P=1,
    # R=1/2; 0.5 (tie group) -> P=2/3, R=1; AP = 1/2*1 + 1/2*2/3 = 5/6.
    y_true = np.array([[1], [1], [0], [0]])
    y_score = np.array([[0.9], [0.5], [0.5], [0.1]])
    result = bootstrap_macro_metrics(y_true, y_score, num_resamples=10)
    assert result["macro_auprc"]["value"] == pytest.approx(5 / 6)
    # AUROC: positive pairs won 0.9>0.5, 0.9>0.1, 0.5=0.5 (1/2), 0.5>0.1 -> 3.5/4.
    assert result["macro_auroc"]["value"] == pytest.approx(3.5 / 4)


def test_classes_without_both_outcomes_are_left_out():
    y_true, y_score = _case()
    y_true[:, 2] = 0  # no positive: undefined for both metrics
    result = bootstrap_macro_metrics(y_true, y_score, num_resamples=50)
    assert result["num_classes"] == 4
    kept = [0, 1, 3, 4]
    assert result["macro_auroc"]["value"] == pytest.approx(
        _sklearn_macro(y_true[:, kept], y_score[:, kept], "macro_auroc")
    )


def test_several_runs_average_per_resample():
    y_true, first = _case(seed=0)
    _, second = _case(seed=0)
    second = second + np.random.default_rng(9).normal(size=second.shape)
    both = bootstrap_macro_metrics(y_true, np.stack([first, second]), seed=1)
    one = bootstrap_macro_metrics(y_true, first, seed=1)
    two = bootstrap_macro_metrics(y_true, second, seed=1)
    for metric in ("macro_auroc", "macro_auprc"):
        assert both[metric]["value"] == pytest.approx(
            (one[metric]["value"] + two[metric]["value"]) / 2
        )


def test_paired_interval_of_identical_models_contains_zero():
    y_true, y_score = _case()
    result = paired_bootstrap(y_true, y_score, y_score.copy(), num_resamples=1000)
    for metric in ("macro_auroc", "macro_auprc"):
        entry = result[metric]
        assert entry["difference"] == 0.0
        assert entry["low"] <= 0.0 <= entry["high"]
        assert not entry["excludes_zero"]


def test_paired_interval_separates_a_clearly_better_model():
    y_true, weak = _case(num_samples=200, skill=0.3, seed=1)
    rng = np.random.default_rng(1)
    strong = 3.0 * y_true + rng.normal(size=y_true.shape)
    result = paired_bootstrap(y_true, strong, weak, num_resamples=1000, seed=0)
    entry = result["macro_auroc"]
    assert entry["excludes_zero"] and entry["low"] > 0
    # The paired difference equals the difference of the two point estimates.
    a = bootstrap_macro_metrics(y_true, strong, num_resamples=10)
    b = bootstrap_macro_metrics(y_true, weak, num_resamples=10)
    assert entry["difference"] == pytest.approx(
        a["macro_auroc"]["value"] - b["macro_auroc"]["value"]
    )


def test_same_seed_same_interval_and_resamples_are_seeded():
    y_true, y_score = _case()
    first = bootstrap_macro_metrics(y_true, y_score, num_resamples=100, seed=5)
    again = bootstrap_macro_metrics(y_true, y_score, num_resamples=100, seed=5)
    other = bootstrap_macro_metrics(y_true, y_score, num_resamples=100, seed=6)
    assert first == again
    assert first["macro_auroc"] != other["macro_auroc"]
    np.testing.assert_array_equal(
        bootstrap_resamples(10, 4, seed=2),
        np.random.default_rng(2).integers(0, 10, size=(4, 10)),
    )


def test_bad_inputs_raise_clear_errors():
    y_true, y_score = _case()
    with pytest.raises(ValueError, match="NaN"):
        bad = y_score.copy()
        bad[3, 1] = np.nan
        bootstrap_macro_metrics(y_true, bad)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_macro_metrics(y_true, y_score, confidence=95)
    with pytest.raises(ValueError, match="Unknown metric"):
        bootstrap_macro_metrics(y_true, y_score, metrics=("accuracy",))
    with pytest.raises(ValueError, match="both positive and negative"):
        bootstrap_macro_metrics(np.zeros_like(y_true), y_score)
    with pytest.raises(ValueError, match="must both be"):
        paired_bootstrap(y_true, y_score, y_score[:, :3])


def test_format_interval():
    assert format_interval({"value": 0.91234, "low": 0.9, "high": 0.93}) == (
        "0.912 [0.900, 0.930]"
    )
    assert format_interval(
        {"difference": 0.0123, "low": -0.001, "high": 0.02, "excludes_zero": False}
    ) == ("+0.012 [-0.001, +0.020]")
