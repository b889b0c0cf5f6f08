"""Export of record embeddings and a 2-D map of them coloured by label."""

import os

import numpy as np

PROJECTIONS = ("pca", "tsne")


def _check(embeddings, record_ids, labels, classes):
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be (num_records, dim), got shape {embeddings.shape}."
        )
    if not np.isfinite(embeddings).all():
        row = int(np.argwhere(~np.isfinite(embeddings))[0, 0])
        name = record_ids[row] if record_ids is not None else row
        raise ValueError(f"The embedding of record {name!r} holds NaN/inf values.")
    if record_ids is not None and len(record_ids) != len(embeddings):
        raise ValueError(
            f"{len(record_ids)} record ids for {len(embeddings)} embeddings."
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 2 or len(labels) != len(embeddings):
            raise ValueError(
                f"labels must be (num_records, num_classes) with {len(embeddings)} "
                f"rows, got shape {labels.shape}."
            )
        if classes is not None and len(classes) != labels.shape[1]:
            raise ValueError(
                f"{len(classes)} class names for {labels.shape[1]} label columns."
            )
    return embeddings, labels


def export_embeddings(embeddings, record_ids, labels, classes, path):
    """Writes embeddings to `<path>.npz` and `<path>.csv`.

    The `.npz` holds `embeddings`, `record_ids`, `labels` and `classes`; the
    `.csv` has one row per record: `record_id`, `labels` (";"-joined class
    names), then `emb_0 ... emb_{D-1}`.

    Args:
        embeddings: `(num_records, dim)` array.
        record_ids: `num_records` record ids.
        labels: `(num_records, num_classes)` multi-hot array or `None`.
        classes: class names of the label columns (or `None`).
        path: output path; a `.npz` / `.csv` suffix is dropped.

    Returns:
        `(npz_path, csv_path)`.

    Example:

    ```python
    export_embeddings(emb, test.record_ids, test.labels, test.classes, "out/emb")
    ```
    """
    import pandas as pd

    record_ids = [str(r) for r in record_ids]
    embeddings, labels = _check(embeddings, record_ids, labels, classes)
    if classes is None and labels is not None:
        classes = [str(i) for i in range(labels.shape[1])]
    stem, ext = os.path.splitext(str(path))
    if ext not in (".npz", ".csv"):
        stem = str(path)
    directory = os.path.dirname(stem)
    if directory:
        os.makedirs(directory, exist_ok=True)
    npz_path, csv_path = stem + ".npz", stem + ".csv"
    np.savez(
        npz_path,
        embeddings=embeddings,
        record_ids=np.asarray(record_ids, dtype=str),
        labels=labels if labels is not None else np.zeros((len(embeddings), 0)),
        classes=np.asarray(classes if classes is not None else [], dtype=str),
    )
    frame = pd.DataFrame(
        embeddings, columns=[f"emb_{i}" for i in range(embeddings.shape[1])]
    )
    names = [
        ";".join(c for c, on in zip(classes, row) if on) if labels is not None else ""
        for row in (labels if labels is not None else [None] * len(embeddings))
    ]
    frame.insert(0, "labels", names)
    frame.insert(0, "record_id", record_ids)
    frame.to_csv(csv_path, index=False)
    return npz_path, csv_path


def project_2d(embeddings, method="pca", seed=0, perplexity=30.0, **kwargs):
    """2-D coordinates of `embeddings` with scikit-learn PCA or t-SNE.

    `**kwargs` go to the scikit-learn estimator (e.g. t-SNE's `max_iter`).
    """
    embeddings = np.asarray(embeddings)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed, **kwargs).fit_transform(
            embeddings
        )
    if method == "tsne":
        from sklearn.manifold import TSNE

        # t-SNE needs perplexity < number of samples.
        perplexity = min(perplexity, max(1.0, (len(embeddings) - 1) / 3))
        return TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=seed,
            **kwargs,
        ).fit_transform(embeddings)
    raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}.")


def colour_labels(labels, classes, superclasses=None):
    """One name per record to colour by: its superclass or its first label.

    Args:
        labels: `(num_records, num_classes)` multi-hot array.
        classes: class names.
        superclasses: optional `{class: superclass}` mapping (e.g. PTB-XL's
            diagnostic superclasses); unmapped classes keep their own name.

    Returns:
        A list of names; `"none"` for records without a label.
    """
    mapping = superclasses or {}
    names = []
    for row in np.asarray(labels):
        on = np.flatnonzero(row > 0.5)
        names.append(mapping.get(classes[on[0]], classes[on[0]]) if len(on) else "none")
    return names


def plot_embeddings_2d(
    embeddings,
    labels,
    classes,
    path,
    method="pca",
    superclasses=None,
    seed=0,
    title=None,
    **projection_kwargs,
):
    """Saves a 2-D scatter plot of `embeddings` coloured by label.

    Args:
        embeddings: `(num_records, dim)` array.
        labels: `(num_records, num_classes)` multi-hot array.
        classes: class names.
        path: image path (`.png`, `.pdf`, ...).
        method: `"pca"` or `"tsne"` (scikit-learn).
        superclasses: optional `{class: superclass}` to colour by superclass;
            otherwise each record is coloured by its first label.
        seed: seed of the projection.
        title: optional plot title.
        **projection_kwargs: forwarded to the scikit-learn estimator.

    Returns:
        The `(num_records, 2)` coordinates that were plotted.

    Example:

    ```python
    plot_embeddings_2d(emb, test.labels, test.classes, "emb.png", method="tsne")
    ```
    """
    embeddings, labels = _check(embeddings, None, labels, classes)
    if labels is None:
        raise ValueError("plot_embeddings_2d needs labels to colour the points.")
    try:
        # The object API leaves pyplot's global state and backend untouched.
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plot_embeddings_2d needs matplotlib: pip install 'keras-ecg[plot]'."
        ) from error
    coordinates = project_2d(embeddings, method=method, seed=seed, **projection_kwargs)
    names = np.asarray(colour_labels(labels, classes, superclasses))
    figure = Figure(figsize=(6, 5))
    axis = figure.subplots()
    for name in sorted(set(names)):
        keep = names == name
        axis.scatter(*coordinates[keep].T, s=8, label=f"{name} ({keep.sum()})")
    axis.set_xlabel(f"{method.upper()} 1")
    axis.set_ylabel(f"{method.upper()} 2")
    axis.set_title(title or f"ECG embeddings ({method.upper()})")
    axis.legend(fontsize="small", markerscale=2)
    figure.tight_layout()
    directory = os.path.dirname(str(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120)
    return coordinates
