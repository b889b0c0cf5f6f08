import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.pipelines import window_starts
from keras_ecg.evaluation.linear_probe import extract_embeddings
from keras_ecg.evaluation.linear_probe import knn_probe
from keras_ecg.evaluation.linear_probe import logistic_probe
from keras_ecg.evaluation.metrics import macro_auc


def _blobs(seed=0, n=60, features=5, classes=3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, classes)) < 0.4).astype(np.float32)
    x = rng.normal(size=(n, features)) + 1.5 * y @ rng.normal(size=(classes, features))
    return x, y


@pytest.mark.backend_agnostic
def test_knn_probe_matches_sklearn_neighbour_average():
    x, y = _blobs()
    train_x, train_y, val_x, val_y = x[:40], y[:40], x[40:], y[40:]
    result = knn_probe(train_x, train_y, val_x, val_y, k=4)
    expected = KNeighborsRegressor(n_neighbors=4).fit(train_x, train_y).predict(val_x)
    np.testing.assert_allclose(result["scores"], expected, atol=1e-6)
    assert result["macro_auc"] == pytest.approx(macro_auc(val_y, expected))


@pytest.mark.backend_agnostic
def test_knn_probe_hand_case():
    train = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    val = np.array([[0.4], [10.6]])
    result = knn_probe(train, labels, val, np.array([[1, 0], [0, 1]]), k=2)
    np.testing.assert_allclose(result["scores"], [[1.0, 0.0], [0.5, 1.0]])
    assert result["macro_auc"] == 1.0


@pytest.mark.backend_agnostic
def test_logistic_probe_matches_sklearn_on_standardised_features():
    x, y = _blobs(seed=1)
    y[:40, 2] = 0.0  # a class absent from train gets a constant score
    result = logistic_probe(x[:40], y[:40], x[40:], None, C=0.5)
    mean, std = x[:40].mean(0), x[:40].std(0)
    for c in range(2):
        clf = LogisticRegression(C=0.5, max_iter=1000)
        clf.fit((x[:40] - mean) / std, y[:40, c])
        expected = clf.predict_proba((x[40:] - mean) / std)[:, 1]
        np.testing.assert_allclose(result["scores"][:, c], expected, atol=1e-5)
    np.testing.assert_array_equal(result["scores"][:, 2], 0.0)
    assert "macro_auc" not in result


@pytest.mark.backend_agnostic
def test_logistic_probe_separable_case_scores_one():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0], [-1.5], [1.5]])
    y = np.array([[0], [0], [1], [1], [0], [1]], dtype=np.float32)
    result = logistic_probe(x[:4], y[:4], x[4:], y[4:])
    assert result["macro_auc"] == 1.0
    assert result["scores"][1, 0] > 0.5 > result["scores"][0, 0]


@pytest.mark.backend_agnostic
def test_probes_reject_mismatched_inputs():
    x, y = _blobs()
    with pytest.raises(ValueError, match="features"):
        knn_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="label rows"):
        logistic_probe(x, y[:10], x, y)
    with pytest.raises(ValueError, match="k must be"):
        knn_probe(x, y, x, y, k=0)


def _records(signals, sampling_rate=10):
    return ECGDataset(
        signals=signals,
        record_ids=[f"r{i}" for i in range(len(signals))],
        sampling_rate=sampling_rate,
        lead_names=("I", "II"),
    )


def test_extract_embeddings_averages_window_outputs_per_record():
    rng = np.random.default_rng(0)
    signals = [rng.normal(size=(n, 2)).astype("float32") for n in (20, 27)]
    backbone = keras.Sequential(
        [keras.Input((None, 2)), keras.layers.GlobalAveragePooling1D()]
    )
    # 0.8 s windows, 0.5 s stride at 10 Hz: 8 and 5 samples.
    emb = extract_embeddings(
        backbone, _records(signals), window_seconds=0.8, stride_seconds=0.5
    )
    expected = [
        np.mean([s[a : a + 8].mean(0) for a in window_starts(len(s), 8, 5)], axis=0)
        for s in signals
    ]
    np.testing.assert_allclose(emb, np.stack(expected), atol=1e-5)


def test_extract_embeddings_mean_pools_sequence_outputs():
    signals = [np.arange(24, dtype="float32").reshape(12, 2)]
    backbone = keras.Sequential([keras.Input((None, 2)), keras.layers.Identity()])
    # One window of the whole 1.2 s record.
    emb = extract_embeddings(
        backbone, _records(signals), window_seconds=1.2, stride_seconds=1.2
    )
    np.testing.assert_allclose(emb, [signals[0].mean(0)], atol=1e-6)


def test_extract_embeddings_standardizer_matches_a_standardised_copy(monkeypatch):
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    rng = np.random.default_rng(3)
    signals = [
        (rng.normal(size=(n, 2)) * [30.0, 0.1] + [100.0, -2.0]).astype("float32")
        for n in (40, 55, 47)
    ]
    data = _records(signals)
    standardizer = LeadStandardizer().fit(data)
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [keras.Input((None, 2)), keras.layers.Conv1D(3, 3, activation="tanh")]
    )
    window = dict(window_seconds=2.0, stride_seconds=1.0)
    expected = extract_embeddings(backbone, standardizer.transform(data), **window)

    def refuse(self, data):
        raise AssertionError("LeadStandardizer.transform copied the data")

    monkeypatch.setattr(LeadStandardizer, "transform", refuse)
    actual = extract_embeddings(backbone, data, standardizer=standardizer, **window)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    raw = extract_embeddings(backbone, data, **window)
    assert not np.allclose(raw, expected, rtol=1e-5, atol=1e-6)
