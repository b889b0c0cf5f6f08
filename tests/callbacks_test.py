import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.callbacks import MemoryMonitor
from keras_ecg.callbacks import NonFiniteLossError
from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.callbacks import StopOnNonFiniteLoss
from keras_ecg.callbacks import resumable_fit

STEPS_PER_EPOCH = 5
BATCH = 4


class _Kill(Exception):
    pass


class _KillAt(keras.callbacks.Callback):
    """Simulates a SIGKILL: aborts fit after `step` steps, nothing saved after."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise _Kill()


class _Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def _data(nan_batch=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 2))).astype("float32")
    if nan_batch is not None:
        x = x.copy()
        x[nan_batch * BATCH, 0] = np.nan
    # Unshuffled: an interrupted+resumed run sees the very same batches.
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(2)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def _iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path):
    reference = _model(1)
    ref_history = resumable_fit(
        reference, _data(), 2, str(tmp_path / "a"), save_every_steps=2, verbose=0
    )
    # Checkpoints at global steps 2, 4, 5 (epoch end), 7; killed after step 8.
    interrupted = _model(1)
    with pytest.raises(_Kill):
        resumable_fit(
            interrupted,
            _data(),
            2,
            str(tmp_path / "b"),
            save_every_steps=2,
            callbacks=[_KillAt(8)],
            verbose=0,
        )
    with open(tmp_path / "b" / StepCheckpoint.METADATA) as f:
        meta = json.load(f)
    assert (meta["epoch"], meta["batch"], meta["global_step"]) == (1, 2, 7)

    resumed = _model(99)  # different init: everything must come from the backup
    history = resumable_fit(
        resumed, _data(), 2, str(tmp_path / "b"), save_every_steps=2, verbose=0
    )
    assert history["resumed_from"]["global_step"] == 7
    assert _iterations(resumed) == 2 * STEPS_PER_EPOCH
    assert len(history["loss"]) == 2
    np.testing.assert_allclose(history["loss"][0], ref_history["loss"][0], rtol=1e-6)
    for got, want in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_raises_clear_message_before_checkpointing(tmp_path):
    model = _model(2)
    backup = str(tmp_path / "backup")
    # NaN in the 2nd batch = global step 2, which is also a checkpoint step.
    with pytest.raises(NonFiniteLossError) as info:
        resumable_fit(
            model,
            _data(nan_batch=1),
            2,
            backup,
            save_every_steps=2,
            callbacks=[StopOnNonFiniteLoss(method="simclr")],
            verbose=0,
        )
    message = str(info.value)
    assert message.startswith("simclr: non-finite loss (nan)")
    assert "epoch 1, batch 2 (global step 2)" in message
    assert "learning rate" in message
    assert StepCheckpoint(backup).read_metadata() is None


def test_non_finite_loss_keeps_last_good_checkpoint(tmp_path):
    model = _model(2)
    snapshots = _Snapshots()
    backup = str(tmp_path / "backup")
    clean = _data()
    nan = _data(nan_batch=1)
    # Epoch 1 clean (checkpoints at steps 2, 4, 5), epoch 2 hits NaN at step 7.
    resumable_fit(
        model, clean, 1, backup, save_every_steps=2, callbacks=[snapshots], verbose=0
    )
    stop = StopOnNonFiniteLoss(method="byol")
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 2 \(global step 7\)"):
        resumable_fit(
            model,
            nan,
            2,
            backup,
            save_every_steps=2,
            callbacks=[snapshots, stop],
            verbose=0,
        )
    assert stop.stopped_at == {"epoch": 1, "batch": 1, "global_step": 7}
    assert not np.isfinite(snapshots.weights[-1][0]).all()
    meta = StepCheckpoint(backup).read_metadata()
    assert meta["global_step"] == 5
    restored = _model(50)
    StepCheckpoint(backup).restore(restored)
    assert _iterations(restored) == 5
    for got, want in zip(restored.get_weights(), snapshots.weights[4]):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_stop_without_raising_sets_message(tmp_path):
    model = _model(3)
    stop = StopOnNonFiniteLoss(method="cpc", raise_error=False)
    resumable_fit(
        model,
        _data(nan_batch=0),
        3,
        str(tmp_path / "b"),
        save_every_steps=0,
        callbacks=[stop],
        verbose=0,
    )
    assert stop.stopped_at == {"epoch": 0, "batch": 0, "global_step": 1}
    assert stop.message.startswith("cpc: non-finite loss (nan) at epoch 1, batch 1")
    assert _iterations(model) == 1
    assert StepCheckpoint(str(tmp_path / "b")).read_metadata() is None


def test_damaged_checkpoint_falls_back_to_previous(tmp_path):
    model = _model(4)
    backup = tmp_path / "backup"
    resumable_fit(model, _data(), 1, str(backup), save_every_steps=2, verbose=0)
    # Saves at steps 2, 4, 5: the previous pair holds step 4.
    assert sorted(os.listdir(backup)) == [
        "previous_training_metadata.json",
        "step-4.weights.h5",
        "step-5.weights.h5",
        "training_metadata.json",
    ]
    (backup / "step-5.weights.h5").write_bytes(b"truncated")
    restored = _model(5)
    meta = StepCheckpoint(str(backup)).restore(restored)
    assert meta["global_step"] == 4
    assert _iterations(restored) == 4


def test_memory_monitor_samples_rss():
    model = _model(6)
    monitor = MemoryMonitor(every_n_steps=2)
    model.fit(_data(), epochs=1, callbacks=[monitor], verbose=0)
    assert [s for s, _ in monitor.samples] == [2, 4]
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    statm_mib = resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    assert abs(MemoryMonitor.rss_mib() - statm_mib) < 16


def test_bad_arguments_and_configs():
    with pytest.raises(ValueError, match="save_every_steps"):
        StepCheckpoint("x", save_every_steps=-1)
    with pytest.raises(ValueError, match="backup_dir"):
        StepCheckpoint("")
    with pytest.raises(ValueError, match="every_n_steps"):
        MemoryMonitor(0)
    for callback in (
        StepCheckpoint("d", save_every_steps=7),
        StopOnNonFiniteLoss(method="swav", raise_error=False),
        MemoryMonitor(every_n_steps=3),
    ):
        config = callback.get_config()
        assert type(callback)(**config).get_config() == config
