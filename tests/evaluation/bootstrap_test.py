import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score
from sklearn.metrics import roc_auc_score

from keras_ecg.evaluation.bootstrap import DEFAULT_INTERVALS
from keras_ecg.evaluation.bootstrap import INTERVALS
from keras_ecg.evaluation.bootstrap import METRICS
from keras_ecg.evaluation.bootstrap import _bca_interval
from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics
from keras_ecg.evaluation.bootstrap import bootstrap_resamples
from keras_ecg.evaluation.bootstrap import conditional_resamples
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
        y_true,
        y_score,
        num_resamples=200,
        seed=3,
        metrics=(metric,),
        interval="percentile",
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


@pytest.mark.parametrize(
    "interval, resampling",
    [(None, "all")] + [(i, "all") for i in INTERVALS] + [("basic", "conditional")],
)
def test_paired_interval_of_identical_models_contains_zero(interval, resampling):
    y_true, y_score = _case()
    result = paired_bootstrap(
        y_true,
        y_score,
        y_score.copy(),
        num_resamples=1000,
        interval=interval,
        resampling=resampling,
    )
    expected = (
        DEFAULT_INTERVALS if interval is None else dict.fromkeys(METRICS, interval)
    )
    assert result["interval"] == expected
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
    with pytest.raises(ValueError, match="Unknown interval 'bc'"):
        bootstrap_macro_metrics(y_true, y_score, interval="bc")
    with pytest.raises(ValueError, match="Unknown interval"):
        paired_bootstrap(y_true, y_score, y_score, interval="student")
    with pytest.raises(ValueError, match="Unknown resampling"):
        bootstrap_macro_metrics(y_true, y_score, resampling="stratified")
    with pytest.raises(ValueError, match="needs resampling='all'"):
        bootstrap_macro_metrics(
            y_true, y_score, interval="bca", resampling="conditional"
        )


def test_format_interval():
    assert format_interval({"value": 0.91234, "low": 0.9, "high": 0.93}) == (
        "0.912 [0.900, 0.930]"
    )
    assert format_interval(
        {"difference": 0.0123, "low": -0.001, "high": 0.02, "excludes_zero": False}
    ) == ("+0.012 [-0.001, +0.020]")


def _jackknife_loop(y_true, y_score, metric):
    """Leave-one-out macro metric by deleting each record (scikit-learn)."""
    rows = np.arange(len(y_true))
    return np.array(
        [_sklearn_macro(y_true[rows != i], y_score[rows != i], metric) for i in rows]
    )


def test_bca_helper_matches_scipy_for_the_mean():
    # scipy.stats.bootstrap draws rng.integers(0, n, (B, n)), the documented
    # draw of bootstrap_resamples: same seed, same resamples.
    x = np.random.default_rng(1).exponential(size=30)
    resamples = bootstrap_resamples(30, 500, seed=4)
    jackknife = (x.sum() - x) / 29
    low, high = _bca_interval(x.mean(), x[resamples].mean(1), jackknife, 0.9)
    reference = stats.bootstrap(
        (x,),
        np.mean,
        method="BCa",
        n_resamples=500,
        confidence_level=0.9,
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert low == pytest.approx(reference.low, abs=1e-12)
    assert high == pytest.approx(reference.high, abs=1e-12)


def test_bca_auroc_of_one_class_matches_scipy():
    rng = np.random.default_rng(2)
    y = (rng.random(40) < 0.4).astype(int)
    s = np.round(y + rng.normal(size=40), 1)
    result = bootstrap_macro_metrics(
        y[:, None],
        s[:, None],
        num_resamples=200,
        seed=7,
        metrics=("macro_auroc",),
        interval="bca",
    )
    reference = stats.bootstrap(
        (y, s),
        roc_auc_score,
        paired=True,
        vectorized=False,
        method="BCa",
        n_resamples=200,
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert result["macro_auroc"]["low"] == pytest.approx(reference.low, abs=1e-12)
    assert result["macro_auroc"]["high"] == pytest.approx(reference.high, abs=1e-12)


@pytest.mark.parametrize("metric", ["macro_auroc", "macro_auprc"])
def test_bca_macro_interval_matches_the_textbook_formula(metric):
    # Efron & Tibshirani 14.3 in plain numpy over the same resamples, with the
    # jackknife from deleting records (the module weights them 0 instead).
    y_true, y_score = _case(num_samples=40, num_classes=3, seed=11)
    result = bootstrap_macro_metrics(
        y_true, y_score, num_resamples=100, seed=5, metrics=(metric,), interval="bca"
    )
    point = _sklearn_macro(y_true, y_score, metric)
    indices = np.random.default_rng(5).integers(0, 40, size=(100, 40))
    boot = np.array([_sklearn_macro(y_true[i], y_score[i], metric) for i in indices])
    jack = _jackknife_loop(y_true, y_score, metric)
    z0 = stats.norm.ppf((np.sum(boot < point) + 0.5 * np.sum(boot == point)) / 100)
    d = jack.mean() - jack
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    z = stats.norm.ppf([0.025, 0.975])
    alphas = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    low, high = np.percentile(boot, 100 * alphas)
    assert result[metric]["low"] == pytest.approx(low, abs=1e-12)
    assert result[metric]["high"] == pytest.approx(high, abs=1e-12)


def test_basic_and_shifted_intervals_follow_their_formulas():
    y_true, y_score = _case(num_samples=40, num_classes=3, seed=4)
    by = {
        i: bootstrap_macro_metrics(
            y_true, y_score, num_resamples=100, seed=2, interval=i
        )
        for i in ("percentile", "basic", "shifted")
    }
    indices = np.random.default_rng(2).integers(0, 40, size=(100, 40))
    for metric in ("macro_auroc", "macro_auprc"):
        point = by["percentile"][metric]["value"]
        boot = [_sklearn_macro(y_true[i], y_score[i], metric) for i in indices]
        q_lo, q_hi = np.percentile(boot, [2.5, 97.5])
        shift = point - np.median(boot)
        assert by["basic"][metric]["low"] == pytest.approx(2 * point - q_hi, abs=1e-12)
        assert by["basic"][metric]["high"] == pytest.approx(2 * point - q_lo, abs=1e-12)
        assert by["shifted"][metric]["low"] == pytest.approx(q_lo + shift, abs=1e-12)
        assert by["shifted"][metric]["high"] == pytest.approx(q_hi + shift, abs=1e-12)
    assert by["basic"]["macro_auprc"]["interval"] == "basic"


def test_conditional_resamples_keep_both_outcomes_of_every_class():
    y_true, y_score = _case(num_samples=30, num_classes=3, seed=6)
    y_true[:, 0] = 0
    y_true[:2, 0] = 1  # two positives: many resamples miss both
    resamples, draws = conditional_resamples(y_true, 100, seed=1)
    assert resamples.shape == (100, 30) and draws > 100
    for resample in resamples:
        assert (y_true[resample].sum(0) > 0).all()
        assert (y_true[resample].sum(0) < 30).all()
    result = bootstrap_macro_metrics(
        y_true,
        y_score,
        num_resamples=100,
        seed=1,
        interval="percentile",
        resampling="conditional",
    )
    assert result["resampling"] == "conditional"
    assert result["num_draws"] == draws and result["num_resamples"] == 100
    with pytest.warns(RuntimeWarning, match="kept .* of the 100"):
        few, capped = conditional_resamples(y_true, 100, seed=1, max_draws=120)
    assert capped == 120 and 0 < len(few) < 100


def _skewed_case():
    """80 records, 23 classes, 10 with one or two positives, a weak model:
    resamples that miss a rare (hard) class drop it, so the resampled macro
    AUPRC sits above the full-set value."""
    rng = np.random.default_rng(0)
    counts = [1] * 6 + [2] * 4 + [3] * 3 + [5, 8, 12, 20, 30]
    y_true = np.zeros((80, len(counts)), dtype=int)
    for c, k in enumerate(counts):
        y_true[rng.choice(80, k, replace=False), c] = 1
    return y_true, np.round(0.7 * y_true + rng.normal(size=y_true.shape), 2)


def test_default_auprc_interval_is_not_above_its_estimate_on_a_skewed_case():
    y_true, y_score = _skewed_case()
    default = bootstrap_macro_metrics(y_true, y_score, num_resamples=200, seed=0)
    percentile = bootstrap_macro_metrics(
        y_true, y_score, num_resamples=200, seed=0, interval="percentile"
    )
    assert default["interval"] == {
        "macro_auroc": "percentile",
        "macro_auprc": "basic",
    }
    auprc, old = default["macro_auprc"], percentile["macro_auprc"]
    # The percentile interval lies wholly above its own point estimate...
    assert old["low"] > old["value"]
    # ...the default (basic) reflects that shift: it no longer lies above the
    # estimate, and lies lower, where the population value of such a fold
    # lies (the plug-in macro AP of rare classes is biased upwards; see
    # benchmarks/bootstrap_coverage.py). It may end below the estimate.
    assert auprc["interval"] == "basic"
    assert auprc["low"] <= auprc["value"]
    assert auprc["low"] < old["low"] and auprc["high"] < old["high"]
    assert 0.0 <= auprc["low"] <= auprc["high"] <= 1.0
    auroc = default["macro_auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"]


def test_basic_interval_is_clipped_to_the_metric_range():
    # Few records, rare classes: the reflected lower bound would be negative.
    rng = np.random.default_rng(0)
    y_true = np.zeros((40, 8), dtype=int)
    for c, k in enumerate([1, 1, 1, 1, 1, 2, 2, 12]):
        y_true[rng.choice(40, k, replace=False), c] = 1
    y_score = np.round(0.5 * y_true + rng.normal(size=y_true.shape), 2)
    result = bootstrap_macro_metrics(
        y_true, y_score, num_resamples=200, seed=0, interval="basic"
    )
    assert result["macro_auprc"]["low"] == 0.0
