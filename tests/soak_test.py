"""Soak test: long pretraining on PTB-XL must not leak memory.

Run with `pytest --run-slow tests/soak_test.py`; `KERAS_ECG_SOAK_STEPS`
(default 3000) sets the number of training steps.
"""

import os

import keras
import numpy as np
import pytest

from keras_ecg.callbacks import MemoryMonitor
from keras_ecg.callbacks import resumable_fit
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.ptbxl import load_ptbxl
from keras_ecg.jobs.common import build_on_batch
from keras_ecg.layers.augmentation.presets import paper_augmentations
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset

# Growth allowed after warm-up (tracing, allocator pools, tf.data buffers).
TOLERANCE_MIB = float(os.environ.get("KERAS_ECG_SOAK_TOLERANCE_MIB", 64))


@pytest.mark.slow
def test_pretraining_memory_is_flat(ptbxl_dir, tmp_path):
    steps = int(os.environ.get("KERAS_ECG_SOAK_STEPS", 3000))
    data = load_ptbxl(ptbxl_dir, sampling_rate=100, folds=[1, 2, 3])
    data = LeadStandardizer().fit(data).transform(data)
    keras.utils.set_random_seed(0)
    model = build_method("simclr", size="tiny", input_leads=data.num_leads)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    dataset = make_method_dataset(
        "simclr", data, batch_size=32, augmentation=paper_augmentations("rrc_to")
    )
    build_on_batch(model, dataset)
    per_epoch = int(dataset.cardinality())
    epochs = max(1, -(-steps // per_epoch))
    monitor = MemoryMonitor(every_n_steps=max(1, steps // 30))
    history = resumable_fit(
        model,
        dataset,
        epochs,
        str(tmp_path / "backup"),
        save_every_steps=50,  # the checkpoint writes are part of the soak
        callbacks=[monitor],
        verbose=0,
    )
    assert np.isfinite(history["loss"]).all()
    rss = np.array([mib for _, mib in monitor.samples])
    assert len(rss) >= 6, monitor.samples
    # Warm-up: the first third of the samples.
    settled = rss[len(rss) // 3 :]
    growth = settled.max() - settled[0]
    slope = np.polyfit(np.arange(len(settled)), settled, 1)[0]
    print(
        f"\nsoak: {epochs * per_epoch} steps, RSS MiB samples "
        f"{[round(float(v), 1) for v in rss]}, growth after warm-up {growth:.1f} MiB, "
        f"slope {slope:.3f} MiB/sample"
    )
    assert growth < TOLERANCE_MIB, monitor.samples
