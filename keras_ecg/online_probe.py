"""An online probe: how good the encoder's embeddings are while it pretrains.

Every few epochs `OnlineProbe` embeds a small labelled, held-out set of
records with the current encoder (`extract_embeddings`), fits a kNN or
logistic probe (`knn_probe` / `logistic_probe`) on one part and logs its
macro ROC AUC on the other as `probe_macro_auc` (in the `fit` history, the
CSV log and TensorBoard). As lightly's and solo-learn's online kNN, it shows
a run that learns nothing long before a downstream evaluation would; it can
also pick the weights to keep (`keep="best-probe"`).
"""

import json
import math
import os
import threading
import time
import warnings

import keras
import numpy as np

from keras_ecg import distribute
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.evaluation.linear_probe import embed_windows
from keras_ecg.evaluation.linear_probe import knn_probe
from keras_ecg.evaluation.linear_probe import logistic_probe
from keras_ecg.evaluation.linear_probe import window_inputs

PROBES = ("knn", "logistic")
KEEP = ("last", "best-probe")
MONITOR = "probe_macro_auc"
DEFAULT_RECORDS = 256
DEFAULT_VAL_FRACTION = 0.5
# The fewest records on either side of the split for a probe to mean anything.
MIN_RECORDS = 4


class ProbeUnavailable(ValueError):
    """No usable labelled records for the probe; the message says why."""


def resolve_every(every, epochs):
    """Probe period in epochs: `"auto"` gives about five probes per run.

    Args:
        every: `"auto"`, or an int >= 1 (as text or int).
        epochs: epochs of the run.

    Example:

    >>> resolve_every("auto", 20), resolve_every("auto", 3), resolve_every(2, 9)
    (4, 1, 2)
    """
    if every in (None, "auto"):
        return max(1, int(epochs) // 5)
    value = int(every)
    if value < 1:
        raise ValueError(f"the probe period must be >= 1 epoch, got {every}.")
    return value


def _patients(data):
    metadata = getattr(data, "metadata", None)
    if metadata is None or "patient_id" not in getattr(metadata, "columns", ()):
        return None
    patients = metadata["patient_id"].to_numpy()
    # A missing id stands for a patient of its own.
    return np.asarray(
        [
            f"record:{i}" if p is None or (isinstance(p, float) and math.isnan(p))
            else str(p)
            for i, p in enumerate(patients)
        ]
    )  # fmt: skip


def probe_split(
    data, num_records=DEFAULT_RECORDS, val_fraction=DEFAULT_VAL_FRACTION, seed=0
):
    """The probe's `(train, val)` records: a seeded subset of labelled `data`.

    At most `num_records` records are drawn, then split so that about
    `val_fraction` of them score the probe; when the records carry patient
    ids (`metadata["patient_id"]`, PTB-XL), no patient is on both sides.

    Args:
        data: a labelled `ECGDataset` of records the encoder does not train
            on (the CLI uses the val split).
        num_records: records drawn (all if fewer).
        val_fraction: share of them (by records) that scores the probe.
        seed: seeds the draw and the split.

    Returns:
        `(train, val)` `ECGDataset`s.

    Raises:
        ProbeUnavailable: no labels, too few records, or no class with both
            positive and negative records among the scoring records.

    Example:

    ```python
    probe_train, probe_val = probe_split(val, num_records=256, seed=0)
    ```
    """
    if data is None or len(data) == 0:
        raise ProbeUnavailable("no held-out records")
    if data.labels is None or data.num_classes == 0:
        raise ProbeUnavailable("the data carry no labels")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    patients = _patients(data)
    groups = np.arange(len(data)) if patients is None else patients
    _, group_of = np.unique(groups, return_inverse=True)
    by_group = np.argsort(group_of, kind="stable")
    members = np.split(by_group, np.flatnonzero(np.diff(group_of[by_group])) + 1)
    # Whole patients are drawn (and split) in a seeded order.
    order = rng.permutation(len(members))
    drawn, val, count, val_count = [], [], 0, 0
    target = min(int(num_records), len(data))
    val_target = int(round(float(val_fraction) * target))
    for group in order:
        if count >= target:
            break
        records = members[group]
        if val_count < val_target:
            val.append(records)
            val_count += len(records)
        else:
            drawn.append(records)
        count += len(records)
    train_rows = np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, int)
    val_rows = np.sort(np.concatenate(val)) if val else np.zeros(0, int)
    if min(len(train_rows), len(val_rows)) < MIN_RECORDS:
        raise ProbeUnavailable(
            f"only {len(data)} labelled held-out records; the probe needs at "
            f"least {MIN_RECORDS} to fit and {MIN_RECORDS} to score"
        )
    val_labels = np.asarray(data.labels)[val_rows]
    positives = val_labels.sum(axis=0)
    if not ((positives > 0) & (positives < len(val_rows))).any():
        raise ProbeUnavailable(
            "no class has both positive and negative records among the probe's "
            "scoring records (a macro AUC needs both)"
        )
    return data.subset(train_rows), data.subset(val_rows)


class OnlineProbe(keras.callbacks.Callback):
    """Logs a kNN or logistic probe's macro AUC every `every` epochs.

    At the end of epochs `every, 2 * every, ...` and of the last epoch, the
    encoder (`model.backbone`) embeds `train_data` and `val_data` (sliding
    windows averaged per record, `extract_embeddings`), the probe is fitted
    on the first and scored on the second, and the macro ROC AUC goes into
    the epoch's logs as `probe_macro_auc`, so `History`, CSV and TensorBoard
    loggers placed after this callback record it.

    With `best_weights_path`, the weights of the epoch with the best probe
    AUC so far are saved there (an `.npz`, with a `.json` of its epoch and
    AUC), which survives a killed and resumed run; `restore_best` loads them
    into the model when training is done.

    In a multi-process job only the chief (process 0) probes, on its own
    copy of the encoder, so that no other process waits for it.

    Args:
        train_data: labelled `ECGDataset` the probe is fitted on.
        val_data: labelled `ECGDataset` the probe is scored on.
        every: probe period in epochs.
        probe: `"knn"` or `"logistic"`.
        k: neighbours of the kNN probe.
        window_seconds: embedding window (default 2.5 s, as downstream).
        stride_seconds: window stride; default three windows, so that a
            10 s record gives its first and last 2.5 s (the last window is
            end-aligned): 2 windows per record where the downstream
            evaluation's half-window stride takes 7, keeping a probe of 256
            records under a tenth of an epoch on the PTB-XL subset.
        batch_size: windows per prediction batch.
        standardizer: optional fitted `LeadStandardizer` / `ECGPreprocessor`
            applied to every window (the records then in mV).
        best_weights_path: optional `.npz` file for the best epoch's weights.
        epochs: epochs of the whole run, whose last epoch is always probed;
            default `fit`'s (a resumed run may call `fit` more than once).
        verbose: print a line when the probe fails.

    Example:

    ```python
    probe_train, probe_val = probe_split(val, num_records=256)
    probe = OnlineProbe(probe_train, probe_val, every=2)
    model.fit(dataset, epochs=10, callbacks=[probe, TrainingCSVLogger(path)])
    probe.summary()["macro_auc"]  # one value per probed epoch
    ```
    """

    def __init__(
        self,
        train_data,
        val_data,
        every=1,
        probe="knn",
        k=5,
        window_seconds=2.5,
        stride_seconds=None,
        batch_size=256,
        standardizer=None,
        best_weights_path=None,
        epochs=None,
        verbose=True,
    ):
        super().__init__()
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {probe!r}.")
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        for name, split in (("train_data", train_data), ("val_data", val_data)):
            if split.labels is None:
                raise ValueError(f"OnlineProbe: {name} carries no labels.")
        self.train_data = train_data
        self.val_data = val_data
        self._records = ECGDataset(
            signals=list(train_data.signals) + list(val_data.signals),
            record_ids=[f"train:{r}" for r in train_data.record_ids]
            + [f"val:{r}" for r in val_data.record_ids],
            sampling_rate=train_data.sampling_rate,
            lead_names=tuple(train_data.lead_names),
        )
        self.every = int(every)
        self.probe = probe
        self.k = int(k)
        self.window_seconds = float(window_seconds)
        self.stride_seconds = float(
            3 * window_seconds if stride_seconds is None else stride_seconds
        )
        self.batch_size = int(batch_size)
        self.standardizer = standardizer
        self.best_weights_path = best_weights_path
        self.total_epochs = epochs
        self.verbose = verbose
        self.epochs, self.aucs, self.seconds, self.epoch_seconds = [], [], [], []
        self.best_auc, self.best_epoch = -math.inf, None
        self._epoch_start = None
        self._encoder = None
        self._copy = None
        self._inputs = None

    # -- scheduling ---------------------------------------------------------

    def _due(self, epoch):
        last = self.total_epochs or (self.params or {}).get("epochs")
        return (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)

    def on_train_begin(self, logs=None):
        if self.best_weights_path and os.path.exists(self._best_json):
            # A resumed run: the best epoch before the interruption still counts.
            with open(self._best_json) as f:
                best = json.load(f)
            self.best_auc, self.best_epoch = best["macro_auc"], best["epoch"]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not distribute.is_chief() or not self._due(epoch):
            return
        epoch_seconds = time.perf_counter() - (self._epoch_start or time.perf_counter())
        start = time.perf_counter()
        try:
            auc = self._measure()
        except ValueError as error:
            # E.g. embeddings of a diverged encoder: a missing point, not a
            # crash of a run of hours.
            if self.verbose:
                print(f"online probe at epoch {epoch + 1} failed: {error}")
            return
        self.seconds.append(time.perf_counter() - start)
        self.epoch_seconds.append(epoch_seconds)
        self.epochs.append(epoch + 1)
        self.aucs.append(auc)
        if logs is not None:
            logs[MONITOR] = auc
        if auc > self.best_auc:
            self.best_auc, self.best_epoch = auc, epoch + 1
            if self.best_weights_path:
                self._save_best()

    # -- measuring ----------------------------------------------------------

    def _measure(self):
        if distribute.process_count() > 1:
            # The model's variables span every process (a JAX global array, a
            # TF MirroredVariable): predicting with them would be a collective
            # the other processes never join. A local copy, built in a thread
            # of its own, is outside the job's distribution scope (Keras'
            # distribution and TF's strategy scope are thread-local).
            result = {}

            def run():
                try:
                    result["auc"] = self._score(self._local_encoder())
                except Exception as error:  # re-raised in the caller's thread
                    result["error"] = error

            thread = threading.Thread(target=run, name="keras_ecg-online-probe")
            thread.start()
            thread.join()
            if "error" in result:
                raise result["error"]
            return result["auc"]
        return self._score(self._model_encoder())

    def _model_encoder(self):
        if self._encoder is None:
            backbone = self.model.backbone
            # A layer has no `predict`; wrapped once, so prediction compiles once.
            if not isinstance(backbone, keras.Model):
                backbone = keras.Sequential([backbone])
            self._encoder = backbone
        return self._encoder

    def _local_encoder(self):
        source = self.model.backbone
        if self._copy is None:
            copy = source.__class__.from_config(source.get_config())
            copy.build((None, None, self.train_data.num_leads))
            self._copy = copy if isinstance(copy, keras.Model) else (
                keras.Sequential([copy])
            )  # fmt: skip
        self._copy.set_weights(
            [np.asarray(keras.ops.convert_to_numpy(w)) for w in source.weights]
        )
        return self._copy

    def _score(self, encoder):
        if self._inputs is None:
            # Both sides in one pipeline, built once: one `predict` per probe,
            # compiled once for its batch shapes (extract_embeddings's steps).
            self._inputs = window_inputs(
                self._records,
                window_seconds=self.window_seconds,
                stride_seconds=self.stride_seconds,
                batch_size=self.batch_size,
                standardizer=self.standardizer,
            )
        embeddings = embed_windows(encoder, self._inputs)
        split = len(self.train_data)
        train_emb, val_emb = embeddings[:split], embeddings[split:]
        args = (train_emb, self.train_data.labels, val_emb, self.val_data.labels)
        with warnings.catch_warnings():
            # Classes absent from the few scoring records are left out of the
            # mean at every probe; a warning each time would say nothing.
            warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")
            if self.probe == "knn":
                return knn_probe(*args, k=self.k)["macro_auc"]
            return logistic_probe(*args)["macro_auc"]

    # -- keeping the best weights -------------------------------------------

    @property
    def _best_json(self):
        return os.path.splitext(self.best_weights_path)[0] + ".json"

    def _save_best(self):
        os.makedirs(os.path.dirname(self.best_weights_path) or ".", exist_ok=True)
        weights = [
            np.asarray(keras.ops.convert_to_numpy(w)) for w in self.model.weights
        ]
        tmp = self.best_weights_path + ".tmp.npz"
        np.savez(tmp, *weights)
        os.replace(tmp, self.best_weights_path)
        with open(self._best_json + ".tmp", "w") as f:
            json.dump({"epoch": self.best_epoch, "macro_auc": self.best_auc}, f)
        os.replace(self._best_json + ".tmp", self._best_json)

    def restore_best(self, model=None):
        """Loads the best probe epoch's weights into `model` (default: the
        trained model). In a multi-process job every process calls it.

        Returns:
            The 1-based epoch restored, or None (no probe result saved).
        """
        model = model or self.model
        distribute.barrier()  # the chief's file is complete
        if not self.best_weights_path or not os.path.exists(self.best_weights_path):
            return None
        with np.load(self.best_weights_path) as stored:
            weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        for variable, value in zip(model.weights, weights, strict=True):
            variable.assign(value)
        with open(self._best_json) as f:
            return json.load(f)["epoch"]

    # -- reporting ----------------------------------------------------------

    def summary(self):
        """What the probe measured: settings, per-probe AUC and timings."""
        return {
            "probe": self.probe,
            "every": self.every,
            "train_records": len(self.train_data),
            "val_records": len(self.val_data),
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "epochs": list(self.epochs),
            "macro_auc": [float(a) for a in self.aucs],
            "seconds": [float(s) for s in self.seconds],
            "epoch_seconds": [float(s) for s in self.epoch_seconds],
            "best_epoch": self.best_epoch,
            "best_macro_auc": None if self.best_epoch is None else self.best_auc,
        }

    def cost_line(self):
        """One line comparing the probe's time with an epoch's, or None."""
        if not self.seconds:
            return None
        probe = float(np.median(self.seconds))
        epoch = float(np.median(self.epoch_seconds))
        share = probe / epoch if epoch > 0 else math.inf
        amortised = share / self.every
        return (
            f"online probe cost: {probe:.2f} s per probe vs {epoch:.2f} s per "
            f"epoch (medians over {len(self.seconds)} probes) = {share:.0%} of an "
            f"epoch, {amortised:.1%} of the run at one probe every "
            f"{self.every} epoch{'s' if self.every > 1 else ''}"
        )

    def get_config(self):
        # The records are not serialised: the settings describe the probe.
        return {
            "every": self.every,
            "probe": self.probe,
            "k": self.k,
            "window_seconds": self.window_seconds,
            "stride_seconds": self.stride_seconds,
            "batch_size": self.batch_size,
            "best_weights_path": self.best_weights_path,
            "epochs": self.total_epochs,
            "train_records": len(self.train_data),
            "val_records": len(self.val_data),
        }
