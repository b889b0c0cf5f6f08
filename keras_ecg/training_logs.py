"""What a run folder records while it trains: a CSV log, TensorBoard event
files and, at the end, a PNG of the curves.

Every CLI command that trains writes, into its `--output` folder:

- `training_log.csv`: one row per epoch (`epoch`, 1-based as Keras prints
  "Epoch 1/N", then every logged value: `loss`, the method's metrics,
  `val_macro_auc` downstream, `probe_macro_auc` with the online probe);
- `tensorboard/<name>/`: the same values as TensorBoard scalars, so a run is
  watched live with `tensorboard --logdir runs/...`;
- `training_curves.png`: loss and AUC curves, drawn when training ends.

Only the chief process of a multi-process job writes them.
"""

import csv
import math
import os
import shutil

import keras
import numpy as np

from keras_ecg import distribute

CSV_NAME = "training_log.csv"
TENSORBOARD_DIR = "tensorboard"
CURVES_NAME = "training_curves.png"


def tensorboard_problem():
    """Why TensorBoard event files cannot be written here, or None.

    `keras.callbacks.TensorBoard` writes through `tf.summary` under every
    Keras backend (JAX and PyTorch included), so it needs TensorFlow, which
    keras-ecg installs for its tf.data input pipelines. (The `tensorboard`
    package is only needed to view the files: see `TrainingTensorBoard`.)
    """
    try:
        import tensorflow.summary  # noqa: F401
    except ImportError as error:
        return (
            "no TensorBoard event files: keras.callbacks.TensorBoard writes "
            "through tf.summary under every backend and TensorFlow is not "
            f"importable ({error}); pip install tensorflow-cpu. The CSV log "
            "is written anyway."
        )
    return None


class _ScalarSummaries:
    """`tf.summary` whose `scalar` needs no `tensorboard` package.

    TensorFlow 2.21 no longer installs `tensorboard`, and `tf.summary.scalar`
    is implemented there: without it, Keras' TensorBoard callback fails at
    the first epoch's end (`TBNotInstalledError`) under every backend. This
    writes the very records `tensorboard.summary.v2.scalar` writes (a float32
    tensor tagged with the "scalars" plugin) through TensorFlow's own
    `tf.summary.write`.
    """

    def __init__(self, summary):
        self._summary = summary

    def __getattr__(self, name):
        return getattr(self._summary, name)

    def scalar(self, name, data, step=None, description=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            summary_description=description or "",
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        metadata.plugin_data.plugin_name = "scalars"
        value = tf.cast(keras.ops.convert_to_numpy(data), tf.float32)
        return self._summary.write(name, value, step=step, metadata=metadata)


class _ContinuedEpochs:
    """Numbers epochs on across `fit` calls.

    A finetuning run calls `fit` once per stage (LP-FT: linear probe, then
    finetune), each counting epochs from 0; its log must not restart. A
    resumed pretraining passes `initial_epoch`, so its epochs already go on.
    """

    def _reset_epochs(self):
        self._offset = 0
        self._last = None

    def _continued(self, epoch):
        """The 1-based run epoch of Keras' 0-based `epoch` of this `fit`."""
        run_epoch = epoch + self._offset
        if self._last is not None and run_epoch <= self._last:
            self._offset = self._last + 1 - epoch
            run_epoch = self._last + 1
        self._last = run_epoch
        return run_epoch + 1


def _cell(value):
    if value is None:
        return ""
    try:
        value = float(np.asarray(keras.ops.convert_to_numpy(value)))
    except (TypeError, ValueError):
        return str(value)
    return value if math.isfinite(value) else str(value)


@keras.saving.register_keras_serializable(package="keras_ecg")
class TrainingCSVLogger(keras.callbacks.CSVLogger, _ContinuedEpochs):
    """`keras.callbacks.CSVLogger` for run folders: one row per run epoch.

    Differs from Keras' logger where a long, resumable or multi-stage run
    needs it:

    - the columns are fixed by the first epoch's logs plus `columns`, so a
      value logged only every few epochs (`probe_macro_auc`) gets its column
      (empty where not measured), and no `val_*` columns are invented;
    - epochs are 1-based and go on across `fit` calls (the stages of LP-FT);
    - the file is appended to, after dropping rows from the first epoch this
      run writes on: a resumed run redoes an epoch interrupted after its row
      was written, and the rows of an abandoned earlier attempt go.

    Args:
        filename: the CSV file.
        columns: log keys that get a column even if absent from the first
            epoch's logs.

    Example:

    ```python
    logger = TrainingCSVLogger("runs/x/training_log.csv", ["probe_macro_auc"])
    model.fit(dataset, epochs=10, callbacks=[logger])
    ```
    """

    def __init__(self, filename, columns=()):
        super().__init__(filename, append=True)
        self.columns = [str(c) for c in columns]
        self._reset_epochs()

    def on_train_begin(self, logs=None):
        # The file is opened at the first epoch's end, once its number is known.
        self.keys = None
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        epoch = self._continued(epoch)
        if self.writer is None:
            self._open(epoch, logs)
        row = {"epoch": epoch}
        row.update((key, _cell(logs.get(key))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def _open(self, epoch, logs):
        header, rows = [], []
        if os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if _int(r.get("epoch")) < epoch]
        self.keys = header[1:] if header[:1] == ["epoch"] else []
        if not self.keys:
            self.keys = sorted(set(logs) | set(self.columns))
        tmp = self.filename + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, ["epoch", *self.keys], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.filename)
        self.csv_file = open(self.filename, "a", newline="")
        self.writer = csv.DictWriter(
            self.csv_file, ["epoch", *self.keys], extrasaction="ignore"
        )

    def get_config(self):
        return {"filename": self.filename, "columns": list(self.columns)}


def _int(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return math.inf


@keras.saving.register_keras_serializable(package="keras_ecg")
class TrainingTensorBoard(keras.callbacks.TensorBoard, _ContinuedEpochs):
    """`keras.callbacks.TensorBoard` with 1-based epochs that go on across
    `fit` calls (as `TrainingCSVLogger`), epoch scalars only.

    Works under every backend with TensorFlow installed, also without the
    `tensorboard` package (which TensorFlow 2.21 no longer installs): the
    scalars are then written through `tf.summary.write`. Viewing them needs
    `pip install tensorboard`, anywhere.

    Args:
        log_dir: the folder of the event files.

    Example:

    ```python
    model.fit(dataset, epochs=10, callbacks=[TrainingTensorBoard("runs/x/tb")])
    ```
    """

    def __init__(self, log_dir):
        # No graph: tracing it costs time and TensorBoard shows no graph of a
        # JAX or PyTorch model anyway.
        super().__init__(log_dir=log_dir, write_graph=False)
        self._reset_epochs()

    @property
    def summary(self):
        if self._summary_module is None:
            import tensorflow.summary as summary

            try:
                import tensorboard.summary  # noqa: F401
            except ImportError:
                summary = _ScalarSummaries(summary)
            self._summary_module = summary
        return self._summary_module

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self._continued(epoch), logs)

    def get_config(self):
        return {"log_dir": self.log_dir}


class TrainingLogs:
    """The CSV log, TensorBoard events and curves PNG of one training.

    Args:
        folder: the run folder.
        name: the training's TensorBoard run name (e.g. `"pretrain"`);
            with `subfolder`, its CSV and PNG go into `folder/subfolder`.
        columns: log keys that always get a CSV column.
        fresh: delete this training's earlier logs (not for a resumed run).
        subfolder: optional folder (relative to `folder`) of the CSV and PNG.

    Example:

    ```python
    logs = TrainingLogs("runs/simclr", "pretrain", columns=["probe_macro_auc"])
    model.fit(dataset, epochs=20, callbacks=logs.callbacks)
    logs.finish("simclr pretraining")  # training_curves.png
    ```
    """

    def __init__(self, folder, name, columns=(), fresh=True, subfolder=None):
        self.folder = str(folder)
        self.name = name
        where = os.path.join(self.folder, subfolder) if subfolder else self.folder
        self.csv_path = os.path.join(where, CSV_NAME)
        self.png_path = os.path.join(where, CURVES_NAME)
        self.tensorboard_dir = os.path.join(self.folder, TENSORBOARD_DIR, name)
        self.writes = distribute.is_chief()
        self.problem = tensorboard_problem() if self.writes else None
        self.callbacks = []
        if not self.writes:
            return
        if fresh:
            for path in (self.csv_path, self.png_path):
                if os.path.exists(path):
                    os.remove(path)
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
        os.makedirs(where, exist_ok=True)
        self.callbacks.append(TrainingCSVLogger(self.csv_path, columns))
        if self.problem is None:
            self.callbacks.append(TrainingTensorBoard(self.tensorboard_dir))

    def describe(self):
        """One line saying where the logs go (printed before training)."""
        if not self.writes:
            return "training logs are written by process 0"
        line = f"logs: {self.csv_path}"
        if self.problem is None:
            tensorboard = os.path.join(self.folder, TENSORBOARD_DIR)
            line += f"; watch with `tensorboard --logdir {tensorboard}`"
        else:
            line += f"; {self.problem}"
        return line

    def finish(self, title=None):
        """Draws `training_curves.png` from the CSV log.

        Returns:
            The PNG's path, or None (nothing logged, not the chief, or no
            matplotlib: a line says so).
        """
        if not self.writes or not os.path.exists(self.csv_path):
            return None
        from keras_ecg import plot

        try:
            plot.plot_training_log(self.csv_path, title=title, path=self.png_path)
        except ImportError:
            print(
                f"no {CURVES_NAME}: it needs matplotlib (pip install "
                "'keras-ecg[plot]')",
                flush=True,
            )
            return None
        return self.png_path
