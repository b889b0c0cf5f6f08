"""Long-run robustness: kill/resume of the CLI, counters restored, determinism."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.callbacks import resumable_fit
from keras_ecg.data.sources import load_source
from keras_ecg.jobs.common import build_on_batch
from keras_ecg.layers.augmentation.presets import paper_augmentations
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.utils import enable_determinism


def _to_numpy(v):
    return np.array(keras.ops.convert_to_numpy(v))


def test_cli_pretrain_resumes_after_sigkill(tmp_path):
    out = str(tmp_path / "run")
    command = [
        sys.executable, "-m", "keras_ecg.cli", "pretrain", "--data", "synthetic",
        "--num-records", "30", "--size", "tiny", "--method", "swav",
        "--epochs", "2", "--batch-size", "4", "--checkpoint-every-steps", "2",
        "--output", out,
    ]  # fmt: skip
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    checkpoint = StepCheckpoint(os.path.join(out, "backup"))
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            meta = checkpoint.read_metadata()
            if meta is not None and meta["batch"] > 0:
                break  # a mid-epoch checkpoint exists
            time.sleep(0.02)
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    meta = checkpoint.read_metadata()
    assert meta["global_step"] >= 2 and meta["batch"] > 0
    assert not os.path.exists(os.path.join(out, "pretrained.keras"))

    result = subprocess.run(command, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert (
        f"epoch {meta['epoch'] + 1}, batch {meta['batch']} done "
        f"(global step {meta['global_step']})"
    ) in log
    # The resumed (partial) epoch runs only its remaining batches.
    counts = [int(n) for n in re.findall(r"^(\d+)/\1 - ", log, flags=re.M)]
    steps_per_epoch = counts[-1]
    remaining = steps_per_epoch - meta["batch"]
    expected = [remaining] if meta["epoch"] == 1 else [remaining, steps_per_epoch]
    assert counts == expected, log[-3000:]
    with open(os.path.join(out, "pretrain_results.json")) as f:
        losses = json.load(f)["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert not os.path.exists(os.path.join(out, "backup"))

    import keras_ecg.models  # noqa: F401
    import keras_ecg.models.encoders.xresnet1d  # noqa: F401

    model = keras.saving.load_model(os.path.join(out, "pretrained.keras"))
    total = 2 * steps_per_epoch
    # Not restored counters would read total - global_step_at_kill.
    assert int(_to_numpy(model.optimizer.iterations)) == total
    assert int(_to_numpy(model.train_step_counter)) == total


def _tiny_setup(method, seed, num_records=12, **kwargs):
    data = load_source("synthetic", num_synthetic_records=num_records, seed=0)
    model = build_method(method, size="tiny", input_leads=12, **kwargs)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    dataset = make_method_dataset(
        method,
        data,
        batch_size=4,
        augmentation=paper_augmentations("rrc_to", seed=seed),
        seed=seed,
    )
    build_on_batch(model, dataset)
    return model, dataset


class _Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(_to_numpy(logs["loss"])))


def _deterministic_run(seed):
    enable_determinism(seed)
    model, dataset = _tiny_setup("simclr", seed)
    losses = _Losses()
    model.fit(dataset.take(3), epochs=1, callbacks=[losses], verbose=0)
    return losses.values, [_to_numpy(v) for v in model.weights]


def test_same_seed_gives_identical_losses_and_weights():
    losses_a, weights_a = _deterministic_run(7)
    losses_b, weights_b = _deterministic_run(7)
    assert len(losses_a) == 3
    assert losses_a == losses_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


# SwAV's counter is checked by the SIGKILL test; its queue is a model
# variable like BYOL's, so one in-process method keeps the budget.
@pytest.mark.parametrize("method", ["byol"])
def test_model_state_restored(tmp_path, method):
    kwargs = {"queue_length": 8} if method == "swav" else {}
    keras.utils.set_random_seed(3)
    model, dataset = _tiny_setup(method, seed=3, **kwargs)
    resumable_fit(model, dataset, 1, str(tmp_path), save_every_steps=2, verbose=0)
    keras.utils.set_random_seed(4)
    fresh, _ = _tiny_setup(method, seed=4, **kwargs)
    meta = StepCheckpoint(str(tmp_path)).restore(fresh)
    assert meta["global_step"] == 3
    if method == "swav":
        assert int(_to_numpy(fresh.train_step_counter)) == 3
        assert np.abs(_to_numpy(fresh.queue)).sum() > 0  # filled by training
    else:
        assert int(_to_numpy(fresh.ema_step)) == 3
        assert int(_to_numpy(fresh.total_steps_variable)) == 3
    assert int(_to_numpy(fresh.optimizer.iterations)) == 3
    for trained, restored in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(_to_numpy(trained), _to_numpy(restored))
    opt = [_to_numpy(v) for v in model.optimizer.variables]
    for a, b in zip(opt, [_to_numpy(v) for v in fresh.optimizer.variables]):
        np.testing.assert_array_equal(a, b)
