import numpy as np
import pandas as pd
import pytest

from keras_ecg.evaluation.embeddings import colour_labels
from keras_ecg.evaluation.embeddings import export_embeddings
from keras_ecg.evaluation.embeddings import plot_embeddings_2d


def _data(n=30, dim=5):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(n, dim)).astype("float32")
    labels = np.zeros((n, 3), "float32")
    labels[np.arange(n), np.arange(n) % 3] = 1.0
    labels[0, 2] = 1.0
    labels[1] = 0.0
    ids = [f"rec_{i}" for i in range(n)]
    return embeddings, labels, ids, ["NORM", "MI", "STTC"]


@pytest.mark.backend_agnostic
def test_export_writes_npz_and_csv(tmp_path):
    embeddings, labels, ids, classes = _data()
    npz, csv = export_embeddings(
        embeddings, ids, labels, classes, tmp_path / "sub" / "emb.npz"
    )
    assert npz.endswith("emb.npz") and csv.endswith("emb.csv")
    stored = np.load(npz)
    np.testing.assert_array_equal(stored["embeddings"], embeddings)
    np.testing.assert_array_equal(stored["labels"], labels)
    assert stored["record_ids"].tolist() == ids
    assert stored["classes"].tolist() == classes
    frame = pd.read_csv(csv, keep_default_na=False)
    assert frame["record_id"].tolist() == ids
    assert frame.loc[0, "labels"] == "NORM;STTC"
    assert frame.loc[1, "labels"] == ""
    assert frame.loc[2, "labels"] == "STTC"
    np.testing.assert_allclose(
        frame[[f"emb_{i}" for i in range(5)]].to_numpy(), embeddings, rtol=1e-6
    )


@pytest.mark.backend_agnostic
def test_export_rejects_bad_input(tmp_path):
    embeddings, labels, ids, classes = _data()
    with pytest.raises(ValueError, match="record ids"):
        export_embeddings(embeddings, ids[:-1], labels, classes, tmp_path / "e")
    embeddings[4, 1] = np.nan
    with pytest.raises(ValueError, match="rec_4"):
        export_embeddings(embeddings, ids, labels, classes, tmp_path / "e")


@pytest.mark.backend_agnostic
def test_colour_by_superclass_or_first_label():
    _, labels, _, classes = _data(4)
    assert colour_labels(labels, classes) == ["NORM", "none", "STTC", "NORM"]
    assert colour_labels(labels, classes, {"STTC": "ST"}) == [
        "NORM",
        "none",
        "ST",
        "NORM",
    ]


@pytest.mark.backend_agnostic
def test_pca_plot_matches_sklearn(tmp_path):
    pytest.importorskip("matplotlib")
    from sklearn.decomposition import PCA

    embeddings, labels, _, classes = _data()
    path = tmp_path / "pca.png"
    coordinates = plot_embeddings_2d(embeddings, labels, classes, path)
    expected = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    np.testing.assert_allclose(coordinates, expected, rtol=1e-5, atol=1e-5)
    # Independent check: centred data projected on the top right-singular vectors.
    centred = embeddings - embeddings.mean(0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    manual = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(coordinates), np.abs(manual), atol=1e-4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.backend_agnostic
def test_tsne_plot_and_bad_method(tmp_path):
    pytest.importorskip("matplotlib")
    embeddings, labels, _, classes = _data(12)
    coordinates = plot_embeddings_2d(
        embeddings, labels, classes, tmp_path / "t.png", method="tsne", max_iter=250
    )
    assert coordinates.shape == (12, 2) and np.isfinite(coordinates).all()
    with pytest.raises(ValueError, match="method"):
        plot_embeddings_2d(embeddings, labels, classes, tmp_path / "u.png", "umap")
