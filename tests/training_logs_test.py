"""Tests of the run folders' training logs: CSV rows, TensorBoard events, PNG."""

import csv
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg import plot
from keras_ecg.training_logs import TrainingCSVLogger
from keras_ecg.training_logs import TrainingLogs
from keras_ecg.training_logs import TrainingTensorBoard


class _Sparse(keras.callbacks.Callback):
    """Logs `probe_macro_auc` at every second epoch only, as the probe does."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch % 2 == 1:
            logs["probe_macro_auc"] = 0.5 + epoch / 100


def _fit(callbacks, epochs, initial_epoch=0):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 3), "float32")
    model.fit(
        x,
        x[:, :1],
        batch_size=4,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=0,
    )


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def scalars(log_dir):
    """`{tag: {step: value}}` of the scalar summaries under `log_dir`."""
    values = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.*"), recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                # Written as TensorBoard's scalar plugin writes them.
                assert value.metadata.plugin_data.plugin_name == "scalars"
                number = float(tf.make_ndarray(value.tensor))
                values.setdefault(value.tag, {})[event.step] = number
    return values


def test_csv_has_one_row_per_run_epoch_across_fits(tmp_path):
    path = str(tmp_path / "log.csv")
    logger = TrainingCSVLogger(path, columns=["probe_macro_auc"])
    # Two stages (LP-FT): the second fit counts from 0 again, the log goes on.
    _fit([_Sparse(), logger], epochs=3)
    _fit([_Sparse(), logger], epochs=2)
    header, rows = _rows(path)
    # The sparse column is there although absent at the first epoch; no
    # invented val_ columns.
    assert header == ["epoch", "loss", "probe_macro_auc"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["probe_macro_auc"] for r in rows] == ["", "0.51", "", "", "0.51"]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert TrainingCSVLogger(**logger.get_config()).columns == ["probe_macro_auc"]


def test_resumed_csv_redoes_the_interrupted_epochs(tmp_path):
    path = str(tmp_path / "log.csv")
    _fit([TrainingCSVLogger(path)], epochs=4)
    # A new process resumes at epoch 3 (initial_epoch=2): rows 3 and 4 of the
    # interrupted attempt are replaced, rows 1 and 2 kept.
    _fit([TrainingCSVLogger(path)], epochs=5, initial_epoch=2)
    _, rows = _rows(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]


def test_tensorboard_events_hold_every_epoch(tmp_path):
    log_dir = str(tmp_path / "tb")
    board = TrainingTensorBoard(log_dir)
    _fit([_Sparse(), board], epochs=2)
    _fit([_Sparse(), board], epochs=2)
    values = scalars(log_dir)
    assert sorted(values["epoch_loss"]) == [1, 2, 3, 4]
    assert values["epoch_probe_macro_auc"] == pytest.approx({2: 0.51, 4: 0.51})
    assert TrainingTensorBoard(**board.get_config()).log_dir == log_dir


def test_training_logs_write_csv_events_and_png(tmp_path):
    logs = TrainingLogs(tmp_path, "pretrain", columns=["probe_macro_auc"])
    assert "tensorboard --logdir" in logs.describe()
    _fit([_Sparse(), *logs.callbacks], epochs=3)
    assert logs.finish("a run") == str(tmp_path / "training_curves.png")
    assert os.path.getsize(tmp_path / "training_curves.png") > 5_000
    assert "epoch_loss" in scalars(str(tmp_path / "tensorboard" / "pretrain"))
    # A fresh start (not a resumed run) drops the earlier logs.
    TrainingLogs(tmp_path, "pretrain")
    assert not (tmp_path / "training_log.csv").exists()
    assert not (tmp_path / "tensorboard" / "pretrain").exists()


@pytest.mark.backend_agnostic
def test_plot_training_log_draws_a_panel_per_kind(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "epoch,contrastive_accuracy,loss,probe_macro_auc\n"
        "1,0.3,2.5,\n2,0.4,2.2,0.61\n3,0.5,2.0,\n4,0.6,1.9,0.66\n"
    )
    figure = plot.plot_training_log(path, title="t", path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 5_000
    loss, auc, other = figure.axes
    assert loss.get_ylabel() == "loss" and other.get_ylabel() == "other metrics"
    # The probe is drawn through its own epochs only.
    (line,) = auc.get_lines()
    assert list(line.get_xdata()) == [2.0, 4.0]
    assert list(line.get_ydata()) == [0.61, 0.66]
