"""Downstream protocols: linear evaluation, a frozen-feature MLP head,
finetuning (LP-FT) and training from scratch.

Training uses random crops of the training records; validation and test use
sliding windows (2.5 s, stride 1.25 s) whose sigmoid outputs are averaged per
record before the macro ROC AUC is computed, as in Mehari & Strodthoff (2022)
(`keras_ecg.inference.predict_records`, which `ECGClassifier.predict_records`
uses as well).
Every duration is given in seconds and converted with the data's sampling
rate.

The default recipes (`DOWNSTREAM_DEFAULTS`) were chosen by measurement on the
PTB-XL subset over several seeds (`benchmarks/finetune_protocols_ptbxl.py`,
table in `benchmarks/README.md`), except `"frozen"`'s (see its entry).

`evaluate_records(..., bootstrap=1000)` adds percentile bootstrap intervals of
the test macro AUROC and AUPRC (`keras_ecg.evaluation.bootstrap`).
"""

import copy
import math
import warnings

import keras
import numpy as np

from keras_ecg.data.pipelines import make_supervised_dataset
from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics
from keras_ecg.evaluation.bootstrap import macro_metrics
from keras_ecg.evaluation.finetuning import discriminative_optimizer
from keras_ecg.evaluation.metrics import macro_auc

# WINDOW_SECONDS, STRIDE_SECONDS and predict_records stay importable from here.
from keras_ecg.inference.windowed_prediction import STRIDE_SECONDS  # noqa: F401
from keras_ecg.inference.windowed_prediction import WINDOW_SECONDS  # noqa: F401
from keras_ecg.inference.windowed_prediction import predict_records
from keras_ecg.inference.windowed_prediction import predict_windows
from keras_ecg.inference.windowed_prediction import window_batches
from keras_ecg.inference.windowed_prediction import window_lengths
from keras_ecg.models.ecg_classifier import ECGClassifier

DOWNSTREAM_MODES = ("linear", "frozen", "finetune", "scratch")
# The protocols that train the head only, on a frozen backbone.
FROZEN_BACKBONE_MODES = ("linear", "frozen")
SCHEDULES = ("cosine", "constant")
BATCH_NORM_MODES = ("train", "frozen")

# Shared by the protocols: AdamW, up to 50 epochs with early stopping on the
# validation macro AUC, warm-up + cosine decay, a BatchNorm head (linear unless
# a protocol says otherwise).
_COMMON_DEFAULTS = dict(
    weight_decay=1e-3,
    epochs=50,
    patience=10,
    # No early stop in the first 20 epochs: a run from scratch can peak in its
    # first epochs and dip before it improves (seen on PTB-XL: a stop at
    # epoch 13 of 50 at val AUC 0.73 where the other seeds reached 0.82).
    min_epochs=20,
    schedule="cosine",
    head_batch_norm=True,
    head_hidden_dims=(),
    dropout=0.0,
    discriminative_lr=None,
)
DOWNSTREAM_DEFAULTS = {
    # A linear head on frozen features: BatchNorm before it (the features carry
    # a large shared offset), a near-zero start and larger steps.
    "linear": dict(
        _COMMON_DEFAULTS,
        learning_rate=1e-2,
        warmup_epochs=0,
        linear_probe_epochs=0,
        backbone_batch_norm="frozen",
    ),
    # A non-linear head on frozen features: what a linear probe cannot
    # read out is still in the features, without finetuning's cost. The
    # protocol is ecg-fm-benchmarking's `frozen` (AI4HealthUOL, ICLR 2026):
    # backbone in eval mode, only the head trains, AdamW at lr 1e-3 with
    # weight decay 1e-3. Its head is a learnable-query attention pooling
    # (V-JEPA's); this one is the paper's reference code's head-only
    # training (`--train-head-only`): fastai's MLP head, BatchNorm ->
    # Dropout -> Dense, one hidden layer of 512 with ReLU, dropout 0.25
    # before it and 0.5 before the output. Not yet measured on PTB-XL.
    "frozen": dict(
        _COMMON_DEFAULTS,
        learning_rate=1e-3,
        warmup_epochs=0,
        linear_probe_epochs=0,
        backbone_batch_norm="frozen",
        head_hidden_dims=(512,),
        dropout=(0.25, 0.5),
    ),
    # LP-FT (Kumar et al. 2022; the reference code's CPC recipe): fit the head
    # on frozen features first, then train everything. A backbone learning
    # rate below the head's (the reference's 0.1) scored lower at every budget
    # measured (benchmarks/README.md).
    "finetune": dict(
        _COMMON_DEFAULTS,
        learning_rate=1e-3,
        warmup_epochs=2,
        linear_probe_epochs=20,
        backbone_batch_norm="train",
    ),
    # Supervised training of a fresh encoder: the finetuning budget and
    # schedule without the linear stage.
    "scratch": dict(
        _COMMON_DEFAULTS,
        learning_rate=1e-3,
        warmup_epochs=2,
        linear_probe_epochs=0,
        backbone_batch_norm="train",
    ),
}
# Kept for callers that only need the learning rates.
DEFAULT_LEARNING_RATES = {
    mode: defaults["learning_rate"] for mode, defaults in DOWNSTREAM_DEFAULTS.items()
}


def evaluate_records(
    model,
    data,
    trained_classes=None,
    output_indices=None,
    bootstrap=None,
    bootstrap_seed=0,
    confidence=0.95,
    **kwargs,
):
    """Macro ROC AUC and AUPRC of `model` on `data`, windows aggregated per
    record, optionally with bootstrap confidence intervals.

    Args:
        model: a classifier returning logits.
        data: a labelled `ECGDataset`.
        trained_classes: optional boolean mask (or indices) of the classes the
            model saw positives of in training; the others are left out of
            the macro AUC (their output was never trained) and listed in
            `untrained_classes`.
        output_indices: optional model outputs that `data`'s label columns
            belong to, in order (e.g. `LabelAlignment.model_indices` when the
            data label only some of the model's classes); default: all.
        bootstrap: number of bootstrap resamples of the records for
            confidence intervals (at least 1000 for an interval to report);
            `None` or 0: none.
        bootstrap_seed: seed of the resampling; the same seed resamples the
            same records, so that intervals of models scored on the same
            data are paired (`keras_ecg.evaluation.paired_bootstrap`).
        confidence: two-sided coverage of the intervals.
        **kwargs: forwarded to `predict_records` (window, stride,
            `standardizer`, ...).

    Returns:
        A dict with `macro_auc`, `macro_auprc` (over the same classes), the
        per-record `scores`, `per_class_auc` (`{class: auc}`, NaN when
        undefined), the details of `keras_ecg.evaluation.macro_auc` (classes
        excluded for lacking positives or negatives in `data`) and
        `bootstrap`: `None`, or the result of
        `keras_ecg.evaluation.bootstrap_macro_metrics` (`{"macro_auroc":
        {"value", "low", "high"}, "macro_auprc": {...}, "num_resamples",
        "confidence", "num_classes"}`) plus its `"seed"`.

    Example:

    ```python
    result = evaluate_records(classifier, test, bootstrap=1000)
    auroc = result["bootstrap"]["macro_auroc"]
    print(f"{auroc['value']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]")
    ```
    """
    if data.labels is None:
        raise ValueError("evaluate_records needs a labelled ECGDataset.")
    scores = predict_records(model, data, **kwargs)
    if output_indices is not None:
        scores = scores[:, np.asarray(output_indices, dtype=np.int64)]
    if scores.shape[1] != data.labels.shape[1]:
        raise ValueError(
            f"the model scores {scores.shape[1]} classes, the data labels "
            f"{data.labels.shape[1]}; align them (keras_ecg.data.align_labels)."
        )
    labels, columns, untrained = data.labels, np.arange(data.labels.shape[1]), []
    if trained_classes is not None:
        mask = np.zeros(labels.shape[1], dtype=bool)
        mask[np.asarray(trained_classes)] = True
        untrained = [data.classes[i] for i in np.flatnonzero(~mask)]
        columns = np.flatnonzero(mask)
    classes = [data.classes[i] for i in columns] if data.classes else None
    value, details = macro_auc(
        labels[:, columns], scores[:, columns], classes=classes, return_details=True
    )
    names = classes or [str(i) for i in columns]
    per_class = {
        name: float(auc) for name, auc in zip(names, details["per_class"], strict=True)
    }
    # The bootstrap module leaves out the classes macro_auc excludes (no
    # positive or no negative record), so both average the same classes.
    scored_labels, scored = labels[:, columns], scores[:, columns]
    intervals = None
    if bootstrap:
        intervals = bootstrap_macro_metrics(
            scored_labels,
            scored,
            num_resamples=int(bootstrap),
            confidence=confidence,
            seed=bootstrap_seed,
        )
        intervals["seed"] = bootstrap_seed
        auprc = intervals["macro_auprc"]["value"]
    else:
        auprc = macro_metrics(scored_labels, scored, metrics=("macro_auprc",))[
            "macro_auprc"
        ]
    return {
        "macro_auc": float(value),
        "macro_auprc": float(auprc),
        "bootstrap": intervals,
        "scores": scores,
        "per_class_auc": per_class,
        "untrained_classes": untrained,
        **details,
    }


def trained_class_mask(train_data):
    """Classes with at least one positive training record."""
    return np.asarray(train_data.labels).sum(axis=0) > 0


class RecordAUCCheckpoint(keras.callbacks.Callback):
    """Logs `val_macro_auc` each epoch and restores the best epoch's weights.

    The paper selects the epoch by validation macro AUC computed on
    aggregated sliding windows; Keras' own validation loss is not that metric,
    so this callback computes it and adds it to `logs` (where `EarlyStopping`,
    `ModelCheckpoint` or KerasTuner can monitor it). The window pipeline of
    the validation records is built once and reused every epoch.

    Args:
        val_data: a labelled `ECGDataset`.
        restore_best_weights: restore the best epoch's weights when training ends.
        window_seconds, stride_seconds: the sliding windows (default 2.5 s,
            half a window).
        batch_size: windows per prediction batch.
        aggregation: `"mean"` or `"max"` over a record's windows.
        standardizer: optional fitted `LeadStandardizer` applied to every
            window in the pipeline (`val_data` then in mV).
    """

    def __init__(
        self,
        val_data,
        restore_best_weights=True,
        window_seconds=None,
        stride_seconds=None,
        batch_size=256,
        aggregation="mean",
        standardizer=None,
    ):
        super().__init__()
        if val_data.labels is None:
            raise ValueError("RecordAUCCheckpoint needs labelled validation data.")
        self.val_data = val_data
        self.restore_best_weights = restore_best_weights
        self.aggregation = aggregation
        self._windows = window_batches(
            val_data, window_seconds, stride_seconds, batch_size, standardizer
        )
        self.best_auc = -math.inf
        self.best_epoch = None
        self.history = []
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        scores = predict_windows(self.model, self._windows, self.aggregation)
        with warnings.catch_warnings():
            # Classes without positives in the validation records are left out
            # of the mean every epoch; one warning per epoch would say nothing.
            warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")
            auc = macro_auc(self.val_data.labels, scores)
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


def _learning_rate(peak, schedule, epochs, steps_per_epoch, warmup_epochs):
    """A float (constant) or a warm-up + cosine `LearningRateSchedule`."""
    if schedule == "constant" or peak == 0:
        return float(peak)
    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(float(peak), total)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total - warmup, warmup_target=float(peak), warmup_steps=warmup
    )


def _set_trainable(layer, trainable):
    """Sets `trainable` on `layer` and every nested layer (see `_freeze`)."""
    layer.trainable = trainable
    for sublayer in layer._flatten_layers(include_self=False, recursive=True):
        sublayer.trainable = trainable


def _freeze_batch_norm(layer):
    for sublayer in layer._flatten_layers(include_self=False, recursive=True):
        if isinstance(sublayer, keras.layers.BatchNormalization):
            sublayer.trainable = False


def _resolve_options(mode, options):
    if mode not in DOWNSTREAM_MODES:
        raise ValueError(f"mode must be one of {DOWNSTREAM_MODES}, got {mode!r}.")
    resolved = dict(DOWNSTREAM_DEFAULTS[mode])
    given = {k: v for k, v in options.items() if v is not None}
    resolved.update(given)
    resolved["head_hidden_dims"] = tuple(int(d) for d in resolved["head_hidden_dims"])
    if isinstance(resolved["dropout"], (list, tuple)):
        resolved["dropout"] = tuple(float(r) for r in resolved["dropout"])
        if "dropout" not in given:
            # fastai's rule for the default rates of any hidden layers asked
            # for: half the output layer's rate before each hidden layer.
            last = resolved["dropout"][-1]
            hidden = len(resolved["head_hidden_dims"])
            resolved["dropout"] = (last / 2,) * hidden + (last,)
    if "linear_probe_epochs" not in given and "epochs" in given:
        # A short run asked for is short in both stages.
        resolved["linear_probe_epochs"] = min(
            resolved["linear_probe_epochs"], resolved["epochs"]
        )
    if resolved["schedule"] not in SCHEDULES:
        raise ValueError(
            f"schedule must be one of {SCHEDULES}, got {resolved['schedule']!r}."
        )
    if resolved["backbone_batch_norm"] not in BATCH_NORM_MODES:
        raise ValueError(
            f"backbone_batch_norm must be one of {BATCH_NORM_MODES}, got "
            f"{resolved['backbone_batch_norm']!r}."
        )
    for name in ("epochs", "patience", "min_epochs", "linear_probe_epochs"):
        value = resolved[name]
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    if resolved["epochs"] < 1:
        raise ValueError(f"epochs must be >= 1, got {resolved['epochs']}.")
    return resolved


def train_downstream(
    backbone,
    train_data,
    val_data,
    mode="finetune",
    epochs=None,
    patience=None,
    min_epochs=None,
    batch_size=128,
    learning_rate=None,
    weight_decay=None,
    schedule=None,
    warmup_epochs=None,
    linear_probe_epochs=None,
    linear_probe_learning_rate=None,
    discriminative_lr=None,
    backbone_batch_norm=None,
    window_seconds=None,
    stride_seconds=None,
    preprocessor=None,
    standardizer=None,
    pooling="concat",
    head_hidden_dims=None,
    dropout=None,
    head_batch_norm=None,
    output_initializer=None,
    augmentation=None,
    seed=0,
    callbacks=None,
    verbose="auto",
):
    """Trains a classifier on `backbone`; selects epochs by val macro AUC.

    Four protocols (`mode`), each with its defaults
    (`DOWNSTREAM_DEFAULTS[mode]`; any argument left `None` takes them):

    - `"linear"`: linear evaluation. The backbone is frozen (BatchNorm in
      inference mode), the head is BatchNorm -> Dense, trained at lr 1e-2.
    - `"frozen"`: the backbone frozen as in `"linear"`, a non-linear head:
      BatchNorm -> Dropout(0.25) -> Dense(512, ReLU) -> BatchNorm ->
      Dropout(0.5) -> Dense, trained at lr 1e-3 (the protocol of
      ecg-fm-benchmarking, the head of the paper's reference code; see
      `DOWNSTREAM_DEFAULTS`).
    - `"finetune"`: LP-FT. A linear stage as above (`linear_probe_epochs`,
      at `linear_probe_learning_rate`, default the linear mode's rate), then
      every weight trains at `learning_rate` (the backbone at
      `discriminative_lr * learning_rate` if given), warm-up then cosine
      decay. Fitting the head first means the pretrained features are not
      hit by the large, random gradients of a fresh head.
    - `"scratch"`: supervised training of a freshly initialised backbone (the
      caller passes it), with the finetuning budget and schedule.

    Every stage trains up to `epochs` (the linear stage of `"finetune"` up to
    `linear_probe_epochs`) and stops when the validation macro AUC has not
    improved for `patience` epochs (`0`: never stops early), counted from
    epoch `min_epochs` on; the best epoch's
    weights are restored.

    Args:
        backbone: an encoder mapping `(batch, T, leads)` to a vector or a
            sequence (see `keras_ecg.models.ECGClassifier`).
        train_data: labelled `ECGDataset` to train on (random crops).
        val_data: labelled `ECGDataset` for epoch selection (sliding windows).
        mode: `"linear"`, `"frozen"`, `"finetune"` or `"scratch"`.
        epochs: maximum epochs of the (last) stage.
        patience: early-stopping patience in epochs, on val macro AUC.
        min_epochs: epochs before early stopping starts counting (Keras'
            `EarlyStopping(start_from_epoch=...)`); the best epoch is still
            chosen over all epochs.
        batch_size: records per training batch.
        learning_rate: peak learning rate of the head (and of the whole model
            in `"scratch"`).
        weight_decay: AdamW decoupled weight decay.
        schedule: `"cosine"` (linear warm-up over `warmup_epochs`, then cosine
            decay to 0 at `epochs`) or `"constant"`.
        warmup_epochs: warm-up length in epochs (may be fractional).
        linear_probe_epochs: `"finetune"` only: epochs of the linear stage
            (`0` skips it: plain finetuning); default 20, at most `epochs`.
        linear_probe_learning_rate: learning rate of that stage.
        discriminative_lr: optional factor `f` (`"finetune"`/`"scratch"`): the
            backbone trains at `f * learning_rate` (the reference code uses
            0.1 per layer group); `None` trains everything at one rate.
        backbone_batch_norm: `"train"` (BatchNorm layers of the backbone
            update their statistics and affine weights while it trains) or
            `"frozen"` (they stay in inference mode with fixed weights).
        window_seconds: training crop and evaluation window duration; default
            the `preprocessor`'s, else 2.5 s.
        stride_seconds: evaluation window stride; default the
            `preprocessor`'s, else half a window.
        preprocessor: optional `keras_ecg.models.ECGPreprocessor` the data
            were prepared with (rate, leads, standardisation). It is attached
            to the classifier, with this run's window and stride, so that the
            saved model predicts on raw records (`predict_records`). The class
            names, descriptions and label vocabulary of `train_data` are
            attached in any case.
        standardizer: optional fitted `LeadStandardizer` (or
            `ECGPreprocessor`): `train_data` and `val_data` are then in mV
            and every training crop and validation window is standardised in
            the input pipeline, with no standardised copy of the records
            (they may be a memory-mapped cache). Pass it once: data already
            standardised must not get it again.
        pooling: `ECGClassifier` pooling of a sequence backbone's output.
        head_hidden_dims: widths of the head's hidden layers; default `()`
            (a linear head), `(512,)` for `"frozen"`.
        dropout: dropout before every head `Dense`, or one rate per `Dense`;
            default 0; for `"frozen"` 0.5 before the output and 0.25 before
            each hidden layer (`(0.25, 0.5)`).
        head_batch_norm: whether the head batch-normalises its input features
            (`ECGClassifier(use_batch_norm=...)`). Frozen features carry a
            large offset shared by all records; a plain `Dense` trained on
            them with BCE first moves along that offset (a random encoder
            scored macro AUC 0.43 on PTB-XL that way vs 0.73 with BatchNorm).
        output_initializer: initializer of the output layer's kernel; default
            `TruncatedNormal(stddev=0.01)` (MAE's linear probe): the first
            steps do not have to undo a random ranking, and a fresh head
            sends a pretrained backbone small gradients.
        augmentation: optional augmentation layer for training crops.
        seed: seeds the crops, the shuffling and the head's initialisation.
        callbacks: extra Keras callbacks (every stage).
        verbose: Keras `fit` verbosity.

    Returns:
        A dict with the trained `model` (best epoch restored), `history`
        (Keras logs of every stage, concatenated), `best_epoch` (0-based, in
        the last stage), `best_val_auc`, the per-epoch `val_auc` of every
        stage, `stages` (per stage: name, epochs run, best epoch and AUC) and
        `options` (the settings used, defaults resolved).

    Example:

    ```python
    result = train_downstream(pretrained.backbone, train, val, mode="finetune")
    test_auc = evaluate_records(result["model"], test)["macro_auc"]
    ```
    """
    options = _resolve_options(
        mode,
        dict(
            epochs=epochs,
            patience=patience,
            min_epochs=min_epochs,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            linear_probe_epochs=linear_probe_epochs if mode == "finetune" else 0,
            discriminative_lr=discriminative_lr,
            backbone_batch_norm=backbone_batch_norm,
            head_batch_norm=head_batch_norm,
            head_hidden_dims=head_hidden_dims,
            dropout=dropout,
        ),
    )
    options["linear_probe_learning_rate"] = (
        linear_probe_learning_rate or DOWNSTREAM_DEFAULTS["linear"]["learning_rate"]
    )
    options["batch_size"] = batch_size
    if train_data.labels is None or val_data.labels is None:
        raise ValueError("train_downstream needs labelled train and val data.")
    if preprocessor is not None:
        if float(preprocessor.sampling_rate) != float(train_data.sampling_rate):
            raise ValueError(
                f"train_downstream: the preprocessor is at "
                f"{preprocessor.sampling_rate} Hz, the training data at "
                f"{train_data.sampling_rate} Hz."
            )
        if window_seconds is None:
            window_seconds = preprocessor.window_seconds
            stride_seconds = stride_seconds or preprocessor.stride_seconds
    window_length, stride = window_lengths(train_data, window_seconds, stride_seconds)
    options["window_seconds"] = window_length / train_data.sampling_rate
    options["stride_seconds"] = stride / train_data.sampling_rate

    if preprocessor is not None:
        preprocessor = preprocessor.__class__.from_config(
            {
                **preprocessor.get_config(),
                "window_seconds": options["window_seconds"],
                "stride_seconds": options["stride_seconds"],
            }
        )
    classes = list(train_data.classes) or None
    model = ECGClassifier(
        backbone,
        num_classes=train_data.labels.shape[1],
        preprocessor=preprocessor,
        class_names=classes,
        class_descriptions=getattr(train_data, "class_descriptions", None),
        label_vocabulary=getattr(train_data, "label_vocabulary", None),
        pooling=pooling,
        head_hidden_dims=options["head_hidden_dims"],
        dropout=options["dropout"],
        use_batch_norm=bool(options["head_batch_norm"]),
        freeze_backbone=(
            mode in FROZEN_BACKBONE_MODES or options["linear_probe_epochs"] > 0
        ),
        output_initializer=output_initializer
        or keras.initializers.TruncatedNormal(stddev=0.01, seed=seed),
    )
    model.build((None, window_length, train_data.num_leads))
    train_ds = make_supervised_dataset(
        train_data,
        train_data.labels,
        crop_length=window_length,
        augmentation=augmentation,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        standardizer=standardizer,
    )
    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    stages, history, val_auc = [], {}, []

    def run_stage(name, stage_epochs, optimizer):
        model.compile(optimizer=optimizer, loss=loss)
        selector = RecordAUCCheckpoint(
            val_data,
            window_seconds=window_length / val_data.sampling_rate,
            stride_seconds=stride / val_data.sampling_rate,
            batch_size=256,
            standardizer=standardizer,
        )
        stage_callbacks = [selector]
        if options["patience"]:
            stage_callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_macro_auc",
                    mode="max",
                    patience=options["patience"],
                    start_from_epoch=options["min_epochs"],
                )
            )
        fit = model.fit(
            train_ds,
            epochs=stage_epochs,
            callbacks=[*stage_callbacks, *(callbacks or [])],
            verbose=verbose,
            shuffle=False,
        )
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(values)
        val_auc.extend(selector.history)
        stages.append(
            {
                "name": name,
                "epochs_run": len(selector.history),
                "best_epoch": selector.best_epoch,
                "best_val_auc": selector.best_auc,
            }
        )

    def adamw(peak, epochs_, warmup):
        rate = _learning_rate(
            peak, options["schedule"], epochs_, steps_per_epoch, warmup
        )
        return keras.optimizers.AdamW(
            learning_rate=rate, weight_decay=options["weight_decay"]
        )

    if mode in FROZEN_BACKBONE_MODES:
        run_stage(
            mode,
            options["epochs"],
            adamw(
                options["learning_rate"], options["epochs"], options["warmup_epochs"]
            ),
        )
    else:
        if options["linear_probe_epochs"]:
            lp_epochs = options["linear_probe_epochs"]
            run_stage(
                "linear_probe",
                lp_epochs,
                adamw(options["linear_probe_learning_rate"], lp_epochs, 0),
            )
        # Every backbone weight trains from here, also weights a pretraining
        # method kept frozen (JEPA's backbone is its EMA target encoder).
        _set_trainable(model.backbone, True)
        model.freeze_backbone = False
        if options["backbone_batch_norm"] == "frozen":
            _freeze_batch_norm(model.backbone)
        factor = options["discriminative_lr"]
        if factor is None or factor == 1:
            optimizer = adamw(
                options["learning_rate"], options["epochs"], options["warmup_epochs"]
            )
        else:

            def rate(peak):
                return _learning_rate(
                    peak,
                    options["schedule"],
                    options["epochs"],
                    steps_per_epoch,
                    options["warmup_epochs"],
                )

            optimizer = discriminative_optimizer(
                model,
                backbone_lr=rate(float(factor) * options["learning_rate"]),
                head_lr=rate(options["learning_rate"]),
                weight_decay=options["weight_decay"],
            )
        run_stage(mode, options["epochs"], optimizer)

    last = stages[-1]
    return {
        "model": model,
        "history": history,
        "best_epoch": last["best_epoch"],
        "best_val_auc": last["best_val_auc"],
        "val_auc": val_auc,
        "stages": stages,
        "options": options,
    }
