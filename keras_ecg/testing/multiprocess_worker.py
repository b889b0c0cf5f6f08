"""One process of a multi-process test job
(`tests/distribute/distribute_multiprocess_test.py`).

Run as `python -m keras_ecg.testing.multiprocess_worker MODE OUT_DIR` with the
job described by `KERAS_ECG_JOB_ADDRESSES`, `KERAS_ECG_NUM_PROCESSES` and
`KERAS_ECG_PROCESS_ID`. Modes:

- `equality`: for SimCLR, BYOL, SwAV, CPC (batch negatives) and (TensorFlow,
  torch) JEPA, plus under torch SimCLR with a synchronised-BatchNorm
  XResNet1D and CPC with a synchronised-BatchNorm encoder
  (`equality_methods`), trains 2 SGD
  steps on this process's rows of a global batch of 8 under
  `keras_ecg.distribute.data_parallel()`, and writes the logged loss and
  every weight to `OUT_DIR/<method>-<process>.npz`; process 0 also trains the
  same model on the global batch alone (no distribution) and writes that
  reference to `OUT_DIR/<method>-reference.npz` and the starting weights to
  `OUT_DIR/<method>-start.npz`. Under torch, it first checks the
  collectives themselves (`check_torch_collectives`): uneven all-gathers and
  their gradient, and synchronised BatchNorm moments, written to
  `OUT_DIR/collectives-<process>.json`.
- `resume`: SimCLR for 6 steps through `keras_ecg.callbacks.resumable_fit`
  with a checkpoint every step in `OUT_DIR/backup`. With
  `KERAS_ECG_TEST_DIE_AT_STEP=k`, process 1 kills itself (SIGKILL) after step
  `k`, so the others must fail; a rerun resumes from the last checkpoint and
  writes `OUT_DIR/resume-<process>.json`.
"""

import json
import os
import signal
import sys
import time

import numpy as np

GLOBAL_BATCH = 8
STEPS = 2
METHODS = ("simclr", "byol", "swav", "cpc", "jepa")


def equality_methods(backend):
    """The methods of the `equality` mode under `backend`.

    JEPA runs under TensorFlow and torch: there each worker draws the masks
    for the global batch and keeps its rows (the part a multi-worker job can
    get wrong), while under JAX the step is traced on global arrays exactly
    as on several devices of one process, which
    tests/distribute/distribute_test.py checks for JEPA; its compilation
    would add ~35 s per process here.
    Under torch, two BatchNorm models check keras-ecg's own synchronised
    BatchNorm (TF's is Keras', tested on 4 replicas in distribute_test.py):
    an XResNet1D (its torch fast path) and a CPC encoder (Keras' layer).
    """
    methods = tuple(m for m in METHODS if backend != "jax" or m != "jepa")
    if backend == "torch":
        methods += ("simclr_syncbn", "cpc_syncbn")
    return methods


# Methods trained on plain crops (no views).
SINGLE_CROP = ("cpc", "jepa", "cpc_syncbn")


def _data(steps=STEPS):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * steps, 24, 3)).astype("float32")
    noise = 0.1 * rng.normal(size=x.shape)
    return x, (x, (x[:, ::-1] + noise).astype("float32"))


def _make(name):
    import keras

    from keras_ecg.layers import JEPAPredictor
    from keras_ecg.layers.projection_head import ProjectionHead
    from keras_ecg.models import BYOL
    from keras_ecg.models import CPC
    from keras_ecg.models import JEPA
    from keras_ecg.models import SimCLR
    from keras_ecg.models import SwAV
    from keras_ecg.models.encoders import CPCContext
    from keras_ecg.models.encoders import ECGTransformer
    from keras_ecg.models.encoders import cpc_fc_encoder

    # Under torch's initialisation stream seed 1 leaves a row whose head
    # ReLUs are all dead: its projection is exactly 0, and the normalisation
    # then has a 0/0 gradient (SwAV: NaN; SimCLR: a bias jumping by 1e4).
    keras.utils.set_random_seed(2 if keras.backend.backend() == "torch" else 1)

    def encoder():
        # BatchNorm-free: TF statistics are per replica unless synchronised.
        return keras.Sequential(
            [
                keras.layers.Conv1D(4, 5),
                keras.layers.Activation("tanh"),
                keras.layers.GlobalAveragePooling1D(),
            ]
        )

    def head():
        return ProjectionHead(hidden_dims=(6,), output_dim=5, use_batch_norm=False)

    if name == "simclr":
        return SimCLR(encoder(), head(), temperature=0.5)
    if name == "simclr_syncbn":
        from keras_ecg.models.encoders import XResNet1D

        xresnet = XResNet1D(
            block_depths=(1,),
            widths=(4,),
            expansion=1,
            kernel_size=3,
            stem_filters=(4, 4, 4),
            stem_kernel_size=3,
            input_leads=3,
            synchronized_batch_norm=True,
        )
        return SimCLR(xresnet, head(), temperature=0.5)
    if name == "byol":
        # total_steps 4 > 2 steps: tau < 1 at step 2, so the target moves.
        return BYOL(encoder(), head(), head(), tau=0.5, total_steps=4)
    if name == "jepa":
        # 12 tokens of 2 samples; total_steps 4 > 2 steps: the target moves.
        return JEPA(
            ECGTransformer(
                patch_size=2, hidden_dim=8, num_layers=1, num_heads=2, input_leads=3
            ),
            JEPAPredictor(hidden_dim=4, num_layers=1, num_heads=2),
            min_block_size=2,
            momentum=0.5,
            final_momentum=0.9,
            total_steps=4,
            seed=3,
        )
    if name == "swav":
        return SwAV(
            encoder(),
            head(),
            num_prototypes=4,
            queue_length=8,
            queue_start_step=1,
            freeze_prototypes_steps=1,
        )
    if name == "cpc_syncbn":
        cpc_encoder = cpc_fc_encoder(filters=(6, 5), synchronized_batch_norm=True)
    else:
        cpc_encoder = cpc_fc_encoder(filters=(6, 5), use_batch_norm=False)
    return CPC(
        cpc_encoder,
        CPCContext(units=4, num_layers=1),
        prediction_steps=2,
        num_negatives=5,
        negatives_from="batch",
        seed=3,
    )


def _inputs(name, x, views):
    return x if name in SINGLE_CROP else views


def _local_dataset(name, x, views, global_batch=GLOBAL_BATCH):
    import tensorflow as tf

    from keras_ecg import distribute

    rows = distribute.shard_indices(len(x), global_batch)
    data = _inputs(name, x, views)
    local = data[rows] if name in SINGLE_CROP else tuple(v[rows] for v in data)
    dataset = tf.data.Dataset.from_tensor_slices(local)
    if name not in SINGLE_CROP:
        # A tuple of views is `x` (a one-element tuple of views per batch).
        dataset = dataset.map(lambda *v: (tuple(v),))
    return dataset.batch(distribute.local_batch_size(global_batch))


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _save(path, loss, weights):
    np.savez(path, *weights, loss=np.float64(loss))


def check_torch_collectives(out_dir):
    """Uneven all-gathers (values, offset, gradient) and global BN moments."""
    import torch

    from keras_ecg import distribute
    from keras_ecg.distribute import torch_backend

    rank, count = distribute.process_index(), distribute.process_count()
    # Process p holds p + 2 rows of value p (a last partial batch).
    local = torch.full((rank + 2, 3), float(rank), requires_grad=True)
    torch_backend._STATE["uneven"] = True
    try:
        gathered, offset = torch_backend.all_gather(local)
    finally:
        torch_backend._STATE["uneven"] = False
    # Every process weighs row i by (i + 1) * (its rank + 1): the gradient of
    # the sum over processes at row i is (i + 1) * sum_p (p + 1).
    weights = torch.arange(1, gathered.shape[0] + 1, dtype=torch.float32)
    (gathered.sum(dim=1) * weights * (rank + 1)).sum().backward()
    # BatchNorm moments of this process's half of a global batch of 8.
    rng = np.random.default_rng(7)
    batch = rng.normal(2.0, 3.0, size=(GLOBAL_BATCH, 5, 4)).astype("float32")
    rows = distribute.shard_indices(GLOBAL_BATCH, GLOBAL_BATCH)
    mean, variance = torch_backend.global_moments(
        torch.from_numpy(batch[rows]), axes=(0, 1)
    )
    result = {
        "gathered": gathered[:, 0].tolist(),
        "offset": offset,
        "grad": local.grad[:, 0].tolist(),
        "expected_grad_scale": sum(p + 1 for p in range(count)),
        "mean": mean.tolist(),
        "variance": variance.tolist(),
        "global_mean": batch.mean(axis=(0, 1)).tolist(),
        "global_variance": batch.var(axis=(0, 1)).tolist(),
        "local_mean": batch[rows].mean(axis=(0, 1)).tolist(),
    }
    with open(os.path.join(out_dir, f"collectives-{rank}.json"), "w") as f:
        json.dump(result, f)


def run_equality(out_dir):
    import keras

    from keras_ecg import distribute

    x, views = _data()
    rank = distribute.process_index()
    if keras.backend.backend() == "torch":
        check_torch_collectives(out_dir)
    for name in equality_methods(keras.backend.backend()):
        began = time.time()
        inputs = _inputs(name, x, views)
        small = inputs[:2] if name in SINGLE_CROP else tuple(v[:2] for v in inputs)
        # The starting weights, built outside the job (identical everywhere:
        # seeded), copied into both runs.
        model = _make(name)
        model(small)
        if name == "jepa":
            # From a ViT initialisation (std 0.02) two SGD steps barely move
            # the weights: start from larger ones (the target differs too).
            rng = np.random.default_rng(5)
            model.set_weights(
                [
                    rng.normal(0.0, 0.5, w.shape).astype(w.dtype) if w.ndim else w
                    for w in model.get_weights()
                ]
            )
        start = _weights(model)
        if distribute.is_chief():
            _save(os.path.join(out_dir, f"{name}-start.npz"), 0.0, start)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            history = model.fit(
                inputs, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0
            )
            _save(
                os.path.join(out_dir, f"{name}-reference.npz"),
                history.history["loss"][0],
                _weights(model),
            )
        reference_seconds = time.time() - began
        with distribute.data_parallel():
            model = _make(name)
            dataset = _local_dataset(name, x, views)
            model(small)
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            history = model.fit(
                distribute.distribute_local_dataset(dataset), epochs=1, verbose=0
            )
            _save(
                os.path.join(out_dir, f"{name}-{rank}.npz"),
                history.history["loss"][0],
                _weights(model),
            )
        print(
            f"process {rank}: {name} done (reference {reference_seconds:.1f} s, "
            f"job {time.time() - began - reference_seconds:.1f} s)",
            flush=True,
        )


def run_resume(out_dir):
    import keras

    from keras_ecg import distribute
    from keras_ecg.callbacks import resumable_fit

    steps = 6
    x, views = _data(steps)
    rank = distribute.process_index()
    die_at = int(os.environ.get("KERAS_ECG_TEST_DIE_AT_STEP", "0"))

    class Die(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            print(f"process {rank}: step {step}", flush=True)
            if die_at and rank == 1 and step >= die_at:
                os.kill(os.getpid(), signal.SIGKILL)

    with distribute.data_parallel():
        model = _make("simclr")
        model((views[0][:2], views[1][:2]))
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        distribute.barrier()
        history = resumable_fit(
            model,
            _local_dataset("simclr", x, views),
            epochs=1,
            backup_dir=os.path.join(out_dir, "backup"),
            save_every_steps=1,
            callbacks=[Die()],
            verbose=0,
        )
    resumed = history["resumed_from"]
    result = {
        "resumed_from_step": None if resumed is None else resumed["global_step"],
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "loss": history["loss"],
        "weights_sum": float(sum(np.sum(np.abs(w)) for w in _weights(model))),
    }
    with open(os.path.join(out_dir, f"resume-{rank}.json"), "w") as f:
        json.dump(result, f)


def main(argv):
    import keras

    keras.config.disable_traceback_filtering()  # whole tracebacks in test logs
    mode, out_dir = argv[1], argv[2]
    from keras_ecg import distribute

    # `resume`: short timeouts, a killed process must fail the job quickly.
    # `equality`: process 1 waits while process 0 trains the reference.
    timeout = 5 if mode == "resume" else 120
    settings = distribute.initialize_multi_process(timeout_seconds=timeout)
    print(
        f"process {settings.process_id} of {settings.num_processes} joined", flush=True
    )
    {"equality": run_equality, "resume": run_resume}[mode](out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
