"""Fast probes on frozen embeddings: the objective of the hyperparameter searches.

A probe scores a pretrained backbone without training a Keras head: windowed
embeddings are averaged per record (`extract_embeddings`), then a kNN or a
logistic-regression classifier (scikit-learn) is fitted on the train records
and scored with the macro ROC AUC on the validation records. This is much
cheaper than the paper's linear evaluation (`train_downstream`) and ranks
pretraining settings well enough to steer a search.
"""

import numpy as np

from keras_ecg.evaluation.metrics import macro_auc
from keras_ecg.inference.window_aggregation import aggregate_windows
from keras_ecg.inference.windowed_prediction import window_batches


def extract_embeddings(
    backbone,
    data,
    window_seconds=2.5,
    stride_seconds=None,
    batch_size=256,
    standardizer=None,
):
    """Per-record embeddings: sliding-window backbone outputs averaged per record.

    Args:
        backbone: a model mapping `(batch, window, leads)` to
            `(batch, features)`, or to a sequence `(batch, steps, features)`
            (e.g. the CPC backbone), which is mean-pooled over its steps.
        data: an `ECGDataset`. Every record must be at least one window long
            (see `keras_ecg.data.durations.drop_short_records`).
        window_seconds: window duration (default 2.5 s, the paper's).
        stride_seconds: window stride; defaults to half a window.
        batch_size: windows per `predict` batch.
        standardizer: optional fitted `LeadStandardizer` (or
            `ECGPreprocessor`) applied to every window in the input pipeline
            (`data` then in mV), instead of a standardised copy of `data`.

    Returns:
        A float32 numpy array `(num_records, features)`.

    Example:

    ```python
    train_emb = extract_embeddings(model.backbone, train, window_seconds=2.5)
    ```
    """
    return embed_windows(
        backbone,
        window_inputs(data, window_seconds, stride_seconds, batch_size, standardizer),
    )


def window_inputs(
    data, window_seconds=2.5, stride_seconds=None, batch_size=256, standardizer=None
):
    """The sliding-window pipeline `extract_embeddings` predicts on.

    Built once, it embeds the same records again and again (e.g. at every
    online probe) without rebuilding the pipeline: see `embed_windows`.

    Args:
        data, window_seconds, stride_seconds, batch_size, standardizer: as
            in `extract_embeddings`.

    Returns:
        `(dataset, record_index)`, as `make_window_dataset` returns them.

    Example:

    ```python
    inputs = window_inputs(val, window_seconds=2.5)
    embeddings = embed_windows(model.backbone, inputs)
    ```
    """
    return window_batches(
        data, window_seconds, stride_seconds, batch_size, standardizer
    )


def embed_windows(backbone, inputs):
    """Per-record embeddings of `window_inputs(...)`: see `extract_embeddings`.

    Args:
        backbone: as in `extract_embeddings`.
        inputs: `(dataset, record_index)` from `window_inputs`.

    Returns:
        A float32 numpy array `(num_records, features)`.
    """
    dataset, record_index = inputs
    outputs = np.asarray(backbone.predict(dataset, verbose=0), dtype=np.float32)
    if outputs.ndim == 3:
        outputs = outputs.mean(axis=1)
    if outputs.ndim != 2:
        raise ValueError(
            "extract_embeddings: the backbone must return (batch, features) or "
            f"(batch, steps, features); got shape {outputs.shape}."
        )
    if not np.isfinite(outputs).all():
        raise ValueError(
            "extract_embeddings: the backbone produced NaN/infinite embeddings "
            "(diverged pretraining?)."
        )
    return aggregate_windows(outputs, record_index, method="mean").astype(np.float32)


def _check_probe_inputs(train_emb, train_y, val_emb, val_y):
    train_emb = np.asarray(train_emb, dtype=np.float64)
    val_emb = np.asarray(val_emb, dtype=np.float64)
    train_y = np.asarray(train_y, dtype=np.float64)
    val_y = None if val_y is None else np.asarray(val_y, dtype=np.float64)
    if train_y.ndim == 1:
        train_y = train_y[:, None]
    if val_y is not None and val_y.ndim == 1:
        val_y = val_y[:, None]
    if train_emb.ndim != 2 or val_emb.ndim != 2:
        raise ValueError(
            f"Embeddings must be 2-D (records, features); got {train_emb.shape} "
            f"and {val_emb.shape}."
        )
    if train_emb.shape[1] != val_emb.shape[1]:
        raise ValueError(
            f"Train embeddings have {train_emb.shape[1]} features, val "
            f"embeddings {val_emb.shape[1]}."
        )
    if len(train_emb) != len(train_y):
        raise ValueError(
            f"{len(train_emb)} train embeddings but {len(train_y)} label rows."
        )
    if val_y is not None and (
        len(val_emb) != len(val_y) or val_y.shape[1] != train_y.shape[1]
    ):
        raise ValueError(
            f"Val embeddings {val_emb.shape} / labels {val_y.shape} do not match "
            f"the train labels' {train_y.shape[1]} classes."
        )
    return train_emb, train_y, val_emb, val_y


def _result(scores, val_y, classes):
    result = {"scores": scores.astype(np.float32)}
    if val_y is not None:
        result["macro_auc"] = float(macro_auc(val_y, scores, classes=classes))
    return result


def knn_probe(train_emb, train_y, val_emb, val_y=None, k=5, classes=None):
    """k-nearest-neighbour probe: a class score is the fraction of the `k`
    nearest train records (Euclidean distance) carrying that class.

    Args:
        train_emb: `(num_train, features)` embeddings.
        train_y: `(num_train, num_classes)` multi-hot labels.
        val_emb: `(num_val, features)` embeddings.
        val_y: optional `(num_val, num_classes)` labels to score.
        k: number of neighbours (capped at the number of train records).
        classes: optional class names for the AUC warning.

    Returns:
        A dict with `scores` `(num_val, num_classes)` and, with `val_y`,
        `macro_auc`.

    Example:

    ```python
    knn_probe(train_emb, train.labels, val_emb, val.labels, k=5)["macro_auc"]
    ```
    """
    train_emb, train_y, val_emb, val_y = _check_probe_inputs(
        train_emb, train_y, val_emb, val_y
    )
    if int(k) < 1:
        raise ValueError(f"knn_probe: k must be >= 1, got {k}.")
    k = min(int(k), len(train_emb))
    # Squared distances via the expansion |a|^2 - 2ab + |b|^2 (no (n, m, f) array).
    distances = (
        (val_emb**2).sum(1)[:, None]
        - 2.0 * val_emb @ train_emb.T
        + (train_emb**2).sum(1)[None, :]
    )
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    scores = train_y[nearest].mean(axis=1)
    return _result(scores, val_y, classes)


def logistic_probe(
    train_emb,
    train_y,
    val_emb,
    val_y=None,
    C=1.0,
    max_iter=1000,
    standardize=True,
    classes=None,
):
    """Linear probe: one L2-regularised logistic regression per class.

    Features are standardised with the train mean/std (when `standardize`).
    A class that is constant in the train labels gets that constant as score.

    Args:
        train_emb: `(num_train, features)` embeddings.
        train_y: `(num_train, num_classes)` multi-hot labels.
        val_emb: `(num_val, features)` embeddings.
        val_y: optional `(num_val, num_classes)` labels to score.
        C: inverse regularisation strength (scikit-learn's `C`).
        max_iter: solver iterations.
        standardize: standardise features on the train statistics.
        classes: optional class names for the AUC warning.

    Returns:
        A dict with `scores` (positive-class probabilities) and, with `val_y`,
        `macro_auc`.

    Example:

    ```python
    logistic_probe(train_emb, train.labels, val_emb, val.labels)["macro_auc"]
    ```
    """
    from sklearn.linear_model import LogisticRegression

    train_emb, train_y, val_emb, val_y = _check_probe_inputs(
        train_emb, train_y, val_emb, val_y
    )
    if standardize:
        mean = train_emb.mean(0)
        std = train_emb.std(0)
        std = np.where(std > 1e-12, std, 1.0)
        train_emb = (train_emb - mean) / std
        val_emb = (val_emb - mean) / std
    scores = np.empty((len(val_emb), train_y.shape[1]), dtype=np.float64)
    for c in range(train_y.shape[1]):
        target = train_y[:, c]
        if target.min() == target.max():
            scores[:, c] = target[0]
            continue
        classifier = LogisticRegression(C=C, max_iter=max_iter)
        classifier.fit(train_emb, target.astype(int))
        scores[:, c] = classifier.predict_proba(val_emb)[:, 1]
    return _result(scores, val_y, classes)
