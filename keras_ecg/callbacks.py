"""Callbacks for long pretraining runs: step checkpoints, NaN stop, RSS monitor.

`resumable_fit` wraps `model.fit` so that a run killed at any point restarts
from its last step checkpoint (weights, optimizer state and every model
variable, e.g. BYOL's EMA counter and target or SwAV's queue) instead of from
the start of the epoch as `keras.callbacks.BackupAndRestore` does.
"""

import json
import math
import os
import shutil

import keras
import numpy as np

from keras_ecg import distribute


class NonFiniteLossError(RuntimeError):
    """Raised by `StopOnNonFiniteLoss` when the training loss is NaN or inf."""


@keras.saving.register_keras_serializable(package="keras_ecg")
class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with a clear error as soon as the loss is NaN or inf.

    Unlike `keras.callbacks.TerminateOnNaN` (which stops silently), this
    records where it happened and, with `raise_error=True`, raises
    `NonFiniteLossError` so a CLI exits non-zero with the message. Place it
    BEFORE any checkpoint callback: raising from `on_train_batch_end` keeps
    the later callbacks from saving the corrupted weights.

    Args:
        method: name of the method being trained, used in the message.
        raise_error: raise `NonFiniteLossError`; if False only set
            `model.stop_training` and keep the message in `self.message`.
        monitor: the log key to check.

    Example:
    >>> stop = StopOnNonFiniteLoss(method="simclr")
    >>> stop.message is None
    True
    """

    def __init__(self, method="model", raise_error=True, monitor="loss"):
        super().__init__()
        self.method = method
        self.raise_error = raise_error
        self.monitor = monitor
        self.message = None
        self.stopped_at = None
        self._epoch = 0
        self._global_step = None

    def on_train_begin(self, logs=None):
        self.message = None
        self.stopped_at = None
        optimizer = getattr(self.model, "optimizer", None)
        # Counts from the optimizer so resumed runs report the true step.
        self._global_step = (
            int(keras.ops.convert_to_numpy(optimizer.iterations))
            if optimizer is not None and optimizer.built
            else 0
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._global_step += 1
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(np.asarray(keras.ops.convert_to_numpy(value)))
        if math.isfinite(value):
            return
        self.stopped_at = {
            "epoch": self._epoch,
            "batch": batch,
            "global_step": self._global_step,
        }
        self.message = (
            f"{self.method}: non-finite {self.monitor} ({value}) at epoch "
            f"{self._epoch + 1}, batch {batch + 1} (global step "
            f"{self._global_step}); training stopped and the last good "
            "checkpoint was kept. Hints: lower the learning rate (--lr), check "
            "the input for NaN/inf or extreme values (standardisation), reduce "
            "the batch size or the temperature."
        )
        self.model.stop_training = True
        if self.raise_error:
            raise NonFiniteLossError(self.message)

    def get_config(self):
        return {
            "method": self.method,
            "raise_error": self.raise_error,
            "monitor": self.monitor,
        }


@keras.saving.register_keras_serializable(package="keras_ecg")
class StepCheckpoint(keras.callbacks.Callback):
    """Saves the full training state every `save_every_steps` steps and epoch.

    Writes `step-<global step>.weights.h5` (model variables AND optimizer
    state) and `training_metadata.json` (epoch, batch within the epoch, global
    step, weights file, history of finished epochs) into `backup_dir`. The
    previous checkpoint is kept too, so a kill during a save never leaves only
    a truncated checkpoint.
    Use through `resumable_fit`, which restores it and skips the batches of a
    partially done epoch.

    Args:
        backup_dir: folder of the checkpoint.
        save_every_steps: save every this many training steps (also at the
            end of every epoch); `None` or 0: at epoch ends only.

    Example:
    >>> ckpt = StepCheckpoint("/tmp/backup", save_every_steps=50)
    >>> ckpt.read_metadata() is None or isinstance(ckpt.read_metadata(), dict)
    True
    """

    METADATA = "training_metadata.json"
    PREVIOUS_METADATA = "previous_training_metadata.json"

    def __init__(self, backup_dir, save_every_steps=50):
        super().__init__()
        if not backup_dir:
            raise ValueError("StepCheckpoint: empty `backup_dir`.")
        if save_every_steps is not None and int(save_every_steps) < 0:
            raise ValueError(
                f"StepCheckpoint: save_every_steps must be >= 0, got "
                f"{save_every_steps}."
            )
        self.backup_dir = str(backup_dir)
        self.save_every_steps = int(save_every_steps or 0)
        # Set by `resumable_fit` for an epoch resumed in its middle: Keras
        # numbers that epoch's batches from 0 again.
        self.batch_offset = 0
        self.history = {}
        self.weights_path = None
        self._epoch = 0
        self._global_step = 0
        self._steps_since_save = 0

    @property
    def metadata_path(self):
        return os.path.join(self.backup_dir, self.METADATA)

    def _candidates(self):
        """(metadata, weights path) of the current and the previous checkpoint."""
        found = []
        for name in (self.METADATA, self.PREVIOUS_METADATA):
            path = os.path.join(self.backup_dir, name)
            try:
                with open(path) as f:
                    metadata = json.load(f)
                weights = os.path.join(self.backup_dir, metadata["weights_file"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # missing or damaged: try the previous checkpoint
            if os.path.exists(weights):
                found.append((metadata, weights))
        return found

    def read_metadata(self):
        """The last checkpoint's metadata dict, or None if there is none."""
        candidates = self._candidates()
        return candidates[0][0] if candidates else None

    def restore(self, model):
        """Loads the last checkpoint into `model` (built, compiled).

        Falls back to the previous checkpoint if the last one is damaged.

        Returns:
            The metadata dict, or None if there is no checkpoint.
        """
        candidates = self._candidates()
        for index, (metadata, weights) in enumerate(candidates):
            try:
                if model.optimizer is not None and not model.optimizer.built:
                    model.optimizer.build(model.trainable_variables)
                model.load_weights(weights)
            except (OSError, ValueError) as error:
                if index == len(candidates) - 1:
                    raise ValueError(
                        f"StepCheckpoint: cannot restore {weights}: {error}"
                    ) from error
                continue
            self.history = {k: list(v) for k, v in metadata["history"].items()}
            self._global_step = int(metadata["global_step"])
            self.weights_path = weights
            return metadata
        return None

    def delete(self):
        # In a multi-process job only the chief (process 0) writes.
        if distribute.is_chief() and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def on_train_begin(self, logs=None):
        self._steps_since_save = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    @staticmethod
    def _finite(logs):
        # Never checkpoint a diverged state, even when training was only
        # flagged to stop (e.g. StopOnNonFiniteLoss(raise_error=False)).
        value = (logs or {}).get("loss")
        if value is None:
            return True
        return bool(np.isfinite(np.asarray(keras.ops.convert_to_numpy(value))).all())

    def on_train_batch_end(self, batch, logs=None):
        self._global_step += 1
        self._steps_since_save += 1
        if not self._finite(logs):
            return
        if self.save_every_steps and self._steps_since_save >= self.save_every_steps:
            self._save(self._epoch, self.batch_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if not self._finite(logs):
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(
                float(np.asarray(keras.ops.convert_to_numpy(value)))
            )
        self.batch_offset = 0
        self._save(epoch + 1, 0)

    def _save(self, epoch, batch):
        self._steps_since_save = 0
        weights_file = f"step-{self._global_step}.weights.h5"
        path = os.path.join(self.backup_dir, weights_file)
        # In a multi-process job every process saves (a collective under
        # JAX), only the chief's file is kept: all resume from it.
        with distribute.chief_writes(path) as where:
            if where == path:
                os.makedirs(self.backup_dir, exist_ok=True)
            self.model.save_weights(where, overwrite=True)
        if not distribute.is_chief():
            return
        metadata = {
            "epoch": int(epoch),
            "batch": int(batch),
            "global_step": int(self._global_step),
            "weights_file": weights_file,
            "history": self.history,
        }
        tmp = os.path.join(self.backup_dir, "tmp." + self.METADATA)
        with open(tmp, "w") as f:
            json.dump(metadata, f)
        # Each metadata file names its own weights file and is switched by an
        # atomic rename, so a kill at any point leaves a consistent pair.
        previous = os.path.join(self.backup_dir, self.PREVIOUS_METADATA)
        if os.path.exists(self.metadata_path):
            os.replace(self.metadata_path, previous)
        os.replace(tmp, self.metadata_path)
        keep = {weights_file}
        if os.path.exists(previous):
            with open(previous) as f:
                keep.add(json.load(f).get("weights_file"))
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in keep:
                os.remove(os.path.join(self.backup_dir, name))
        self.weights_path = os.path.join(self.backup_dir, weights_file)

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_every_steps": self.save_every_steps,
        }


@keras.saving.register_keras_serializable(package="keras_ecg")
class MemoryMonitor(keras.callbacks.Callback):
    """Samples the process's resident memory (VmRSS) every `every_n_steps`.

    Linux only (reads `/proc/self/status`). Samples are `(global_step, MiB)`
    tuples in `self.samples`.

    Args:
        every_n_steps: sampling period in training steps.

    Example:
    >>> monitor = MemoryMonitor(every_n_steps=10)
    >>> monitor.samples
    []
    """

    def __init__(self, every_n_steps=10):
        super().__init__()
        if int(every_n_steps) < 1:
            raise ValueError(
                f"MemoryMonitor: every_n_steps must be >= 1, got {every_n_steps}."
            )
        self.every_n_steps = int(every_n_steps)
        self.samples = []
        self._step = 0

    @staticmethod
    def rss_mib():
        """Current resident set size of this process in MiB."""
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise OSError("MemoryMonitor: no VmRSS line in /proc/self/status.")

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every_n_steps == 0:
            self.samples.append((self._step, self.rss_mib()))

    def get_config(self):
        return {"every_n_steps": self.every_n_steps}


def resumable_fit(
    model,
    dataset,
    epochs,
    backup_dir,
    save_every_steps=50,
    callbacks=(),
    delete_on_success=False,
    verbose="auto",
    **fit_kwargs,
):
    """`model.fit` that resumes from the last step checkpoint in `backup_dir`.

    If a checkpoint exists, its weights and optimizer state are loaded; an
    epoch interrupted after `b` batches is finished on `dataset.skip(b)` and
    the remaining epochs run as usual. `model` must be built and compiled.

    Note: the input pipeline's position is not checkpointed: after a resume,
    the rest of the interrupted epoch is drawn from a fresh pass over
    `dataset` (the same batches only if `dataset` is unshuffled).

    Args:
        model: a built, compiled `keras.Model`.
        dataset: a finite `tf.data.Dataset` (one epoch).
        epochs: total number of epochs of the run.
        backup_dir: checkpoint folder (see `StepCheckpoint`).
        save_every_steps: checkpoint period in steps (0: epoch ends only).
        callbacks: further callbacks; a `StopOnNonFiniteLoss` among them is
            run before the checkpoint so that no non-finite state is saved.
        delete_on_success: remove `backup_dir` once all epochs are done.
        verbose: passed to `fit`.
        **fit_kwargs: passed to `fit` (not `epochs`/`initial_epoch`).

    Returns:
        The history dict of all epochs of the run, including those done
        before an interruption; `"resumed_from"` holds the restored metadata
        (None for a fresh run).
    """
    # A tf.data pipeline shuffles itself; fit's default would only warn.
    fit_kwargs.setdefault("shuffle", False)
    checkpoint = StepCheckpoint(backup_dir, save_every_steps=save_every_steps)
    metadata = checkpoint.restore(model)
    callbacks = list(callbacks) + [checkpoint]
    epoch, batch = (
        (0, 0) if metadata is None else (metadata["epoch"], metadata["batch"])
    )
    steps = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    if 0 < steps <= batch:  # killed between the last batch's and the epoch's save
        epoch, batch = epoch + 1, 0
    if metadata is not None and verbose:
        print(
            f"resuming from {checkpoint.weights_path}: epoch {epoch + 1}, batch "
            f"{batch} done (global step {metadata['global_step']})",
            flush=True,
        )
    if batch > 0 and epoch < epochs:
        checkpoint.batch_offset = batch
        # BYOL and JEPA derive their EMA schedule length from fit's epochs: keep the
        # restored schedule variable for this partial epoch.
        schedule_from_fit = getattr(model, "total_steps", 0) is None and hasattr(
            model, "total_steps_variable"
        )
        if schedule_from_fit:
            model.total_steps = max(
                int(keras.ops.convert_to_numpy(model.total_steps_variable)), 1
            )
        try:
            model.fit(
                distribute.distribute_local_dataset(dataset.skip(batch)),
                initial_epoch=epoch,
                epochs=epoch + 1,
                callbacks=callbacks,
                verbose=verbose,
                **fit_kwargs,
            )
        finally:
            if schedule_from_fit:
                model.total_steps = None
        epoch += 1
    if epoch < epochs and not model.stop_training:
        model.fit(
            distribute.distribute_local_dataset(dataset),
            initial_epoch=epoch,
            epochs=epochs,
            callbacks=callbacks,
            verbose=verbose,
            **fit_kwargs,
        )
    history = {k: list(v) for k, v in checkpoint.history.items()}
    history["resumed_from"] = metadata
    if delete_on_success and not model.stop_training:
        checkpoint.delete()
    return history
