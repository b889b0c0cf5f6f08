"""The paper's downstream protocol: linear evaluation, finetuning, from scratch.

Training uses random crops of the training records; validation and test use
sliding windows (250 samples, stride 125 at 100 Hz) whose sigmoid outputs are
averaged per record before the macro ROC AUC is computed, as in Mehari &
Strodthoff (2022).
"""

import copy
import math

import keras
import numpy as np

from keras_ecg.data.pipelines import make_supervised_dataset
from keras_ecg.data.pipelines import make_window_dataset
from keras_ecg.evaluation.metrics import macro_auc
from keras_ecg.evaluation.window_aggregation import aggregate_windows

DOWNSTREAM_MODES = ("linear", "finetune", "scratch")
# A linear head on frozen features needs larger steps than a network trained
# end to end (as in common linear-probe setups); measured on the PTB-XL subset
# (benchmarks/README.md).
DEFAULT_LEARNING_RATES = {"linear": 1e-2, "finetune": 1e-3, "scratch": 1e-3}


def predict_records(
    model,
    data,
    window_length=250,
    stride=125,
    batch_size=256,
    aggregation="mean",
):
    """Per-record probabilities from sliding-window predictions.

    Args:
        model: a classifier returning logits for `(batch, window_length, leads)`.
        data: an `ECGDataset`.
        window_length: window length in samples.
        stride: window stride in samples.
        batch_size: windows per prediction batch.
        aggregation: `"mean"` (the paper's) or `"max"` over a record's windows.

    Returns:
        A `(num_records, num_classes)` float32 array of sigmoid probabilities.
    """
    dataset, record_index = make_window_dataset(
        data,
        labels=None,
        window_length=window_length,
        stride=stride,
        batch_size=batch_size,
    )
    logits = model.predict(dataset, verbose=0)
    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return aggregate_windows(probabilities, record_index, method=aggregation).astype(
        np.float32
    )


def evaluate_records(model, data, **kwargs):
    """Macro ROC AUC of `model` on `data`, windows aggregated per record.

    Returns:
        A dict with `macro_auc`, the per-record `scores`, and the details of
        `keras_ecg.evaluation.macro_auc` (classes excluded for lacking
        positives or negatives).
    """
    if data.labels is None:
        raise ValueError("evaluate_records needs a labelled ECGDataset.")
    scores = predict_records(model, data, **kwargs)
    value, details = macro_auc(
        data.labels, scores, classes=data.classes, return_details=True
    )
    return {"macro_auc": float(value), "scores": scores, **details}


class RecordAUCCheckpoint(keras.callbacks.Callback):
    """Logs `val_macro_auc` each epoch and restores the best epoch's weights.

    The paper selects the epoch by validation macro AUC computed on
    aggregated sliding windows; Keras' own validation loss is not that metric,
    so this callback computes it and adds it to `logs` (where `EarlyStopping`,
    `ModelCheckpoint` or KerasTuner can monitor it).

    Args:
        val_data: a labelled `ECGDataset`.
        restore_best_weights: restore the best epoch's weights when training ends.
        **evaluate_kwargs: forwarded to `evaluate_records` (window length, ...).
    """

    def __init__(self, val_data, restore_best_weights=True, **evaluate_kwargs):
        super().__init__()
        self.val_data = val_data
        self.restore_best_weights = restore_best_weights
        self.evaluate_kwargs = evaluate_kwargs
        self.best_auc = -math.inf
        self.best_epoch = None
        self.history = []
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        auc = evaluate_records(self.model, self.val_data, **self.evaluate_kwargs)[
            "macro_auc"
        ]
        self.history.append(auc)
        if logs is not None:
            logs["val_macro_auc"] = auc
        if auc > self.best_auc:
            self.best_auc = auc
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._best_weights = copy.deepcopy(self.model.get_weights())

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_weights is not None:
            self.model.set_weights(self._best_weights)


def train_downstream(
    backbone,
    train_data,
    val_data,
    mode="linear",
    epochs=10,
    batch_size=128,
    learning_rate=None,
    weight_decay=1e-3,
    crop_length=250,
    stride=None,
    pooling="concat",
    head_hidden_dims=(),
    dropout=0.0,
    head_batch_norm=None,
    augmentation=None,
    seed=0,
    callbacks=None,
    verbose="auto",
    discriminative_lr=None,
):
    """Trains a classifier on `backbone` and selects the epoch by val macro AUC.

    Args:
        backbone: an encoder mapping `(batch, T, leads)` to a vector or a
            sequence (see `keras_ecg.models.ECGClassifier`).
        train_data: labelled `ECGDataset` to train on (random crops).
        val_data: labelled `ECGDataset` for epoch selection (sliding windows).
        mode: `"linear"` (frozen backbone incl. BatchNorm, linear head),
            `"finetune"` (all weights train) or `"scratch"` (same as finetune;
            the caller passes a freshly initialised backbone).
        epochs, batch_size, learning_rate, weight_decay: AdamW training setup;
            `learning_rate=None` takes `DEFAULT_LEARNING_RATES[mode]` (1e-2
            for a linear head, 1e-3 when the backbone trains).
        crop_length: training crop and evaluation window length in samples.
        stride: evaluation window stride; defaults to `crop_length // 2`.
        pooling, head_hidden_dims, dropout: `ECGClassifier` head settings.
        head_batch_norm: whether the head batch-normalises its input features
            (`ECGClassifier(use_batch_norm=...)`); None (default) means True
            for `"linear"` and False otherwise. Frozen features are far from
            standardised (a large shared offset, little spread), and a plain
            `Dense` trained on them with BCE first moves its weights along
            that offset, which can rank records by signal energy rather than
            class: a random-init encoder scored macro AUC 0.43 on PTB-XL
            without it vs. 0.73 for a logistic regression on standardised
            features of the same encoder. BatchNorm before the linear layer,
            as in fastai's `bn_drop_lin` head and MAE's linear probe, keeps
            the classifier linear (it folds into the `Dense` at inference).
        augmentation: optional augmentation layer for training crops.
        seed: seeds the crops and shuffling.
        callbacks: extra Keras callbacks.
        verbose: Keras `fit` verbosity.
        discriminative_lr: optional factor `f` (finetune/scratch): the backbone
            trains with `f * learning_rate`, the head with `learning_rate`
            (see `keras_ecg.evaluation.finetuning.discriminative_optimizer`).

    Returns:
        A dict with the trained `model` (best epoch restored), `history`,
        `best_epoch` (0-based), `best_val_auc` and the per-epoch `val_auc` list.
    """
    from keras_ecg.models.ecg_classifier import ECGClassifier

    if mode not in DOWNSTREAM_MODES:
        raise ValueError(f"mode must be one of {DOWNSTREAM_MODES}, got {mode!r}.")
    if train_data.labels is None or val_data.labels is None:
        raise ValueError("train_downstream needs labelled train and val data.")
    stride = stride or crop_length // 2
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[mode]
    if head_batch_norm is None:
        head_batch_norm = mode == "linear"
    model = ECGClassifier(
        backbone,
        num_classes=train_data.labels.shape[1],
        pooling=pooling,
        head_hidden_dims=head_hidden_dims,
        dropout=dropout,
        use_batch_norm=bool(head_batch_norm),
        freeze_backbone=mode == "linear",
        # Linear probe: start near zero (MAE's std 0.01), not from a random
        # ranking the few training steps must first undo.
        output_initializer=keras.initializers.TruncatedNormal(stddev=0.01, seed=seed)
        if mode == "linear"
        else "glorot_uniform",
    )
    if discriminative_lr is not None and mode != "linear":
        from keras_ecg.evaluation.finetuning import discriminative_optimizer

        model.build((None, crop_length, train_data.num_leads))
        optimizer = discriminative_optimizer(
            model,
            backbone_lr=float(discriminative_lr) * learning_rate,
            head_lr=learning_rate,
            weight_decay=weight_decay,
        )
    else:
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate, weight_decay=weight_decay
        )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    train_ds = make_supervised_dataset(
        train_data,
        train_data.labels,
        crop_length=crop_length,
        augmentation=augmentation,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
    )
    selector = RecordAUCCheckpoint(
        val_data, window_length=crop_length, stride=stride, batch_size=256
    )
    history = model.fit(
        train_ds,
        epochs=epochs,
        callbacks=[selector, *(callbacks or [])],
        verbose=verbose,
        shuffle=False,
    )
    return {
        "model": model,
        "history": history.history,
        "best_epoch": selector.best_epoch,
        "best_val_auc": selector.best_auc,
        "val_auc": selector.history,
    }
