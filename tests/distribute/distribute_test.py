"""Tests of keras_ecg.distribute: data-parallel pretraining on virtual devices.

Multi-device runs need a fresh process (JAX reads the device-count flag and TF
the logical-device layout once, at start-up), so a worker script trains each
method twice in a subprocess, on one device and on 4 replicas with the same
global batch and initial weights, and reports the logged losses and weights.
Encoders are BatchNorm-free (BN statistics are per replica under TF), except
one JAX case checking that BN statistics there are global-batch statistics.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ecg import distribute
from keras_ecg.losses.nt_xent import nt_xent_loss
from keras_ecg.testing.test_case import subprocess_env

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_WORKER = r"""
import contextlib, json, os, sys
import numpy as np
BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(4)])
import keras
from keras_ecg import distribute
from keras_ecg.models import BYOL, CPC, JEPA, SimCLR, SwAV
from keras_ecg.models.encoders import CPCContext, ECGTransformer, cpc_fc_encoder
from keras_ecg.layers import JEPAPredictor
import keras_ecg.models.simclr as simclr_module

GLOBAL_BATCH, STEPS = 8, 2
rng = np.random.default_rng(0)
x = rng.normal(size=(GLOBAL_BATCH * STEPS, 24, 3)).astype("float32")
views = (x, (x[:, ::-1] + 0.1 * rng.normal(size=x.shape)).astype("float32"))

def conv_encoder(batch_norm=False):
    norm = [keras.layers.BatchNormalization()] if batch_norm else []
    return keras.Sequential([keras.layers.Conv1D(4, 5), *norm,
                             keras.layers.Activation("tanh"),
                             keras.layers.GlobalAveragePooling1D()])

def make(name):
    keras.utils.set_random_seed(1)
    from keras_ecg.layers.projection_head import ProjectionHead
    head = lambda: ProjectionHead(hidden_dims=(6,), output_dim=5,
                                  use_batch_norm=False)
    if name in ("simclr_xresnet", "simclr_syncbn"):
        # TF: BatchNorm statistics are global only when synchronised.
        from keras_ecg.models.encoders import XResNet1D
        encoder = XResNet1D(block_depths=(1,), widths=(4,), expansion=1,
                            kernel_size=3, stem_filters=(4, 4, 4),
                            stem_kernel_size=3, input_leads=3,
                            synchronized_batch_norm=name == "simclr_syncbn")
        return SimCLR(encoder, head(), temperature=0.5), views
    if name == "simclr_s4":
        # Dropout off: its draws differ between one device and 4 replicas.
        # Concat pooling: 4 mean-pooled LayerNorm features are nearly equal
        # across records at init, and the 6 ReLUs of the head could start
        # dead for all of them (then only its output bias learns).
        from keras_ecg.models.encoders import S4Encoder
        encoder = S4Encoder(d_model=4, num_layers=1, d_state=4, dropout=0.0,
                            pooling="concat", input_channels=3)
        return SimCLR(encoder, head(), temperature=0.5), views
    if name == "cpc_syncbn":
        return CPC(cpc_fc_encoder(filters=(6, 5), synchronized_batch_norm=True),
                   CPCContext(units=4, num_layers=1), prediction_steps=2,
                   num_negatives=5, negatives_from="batch", seed=3), x
    if name.startswith("simclr"):
        encoder = conv_encoder(batch_norm=name == "simclr_bn")
        return SimCLR(encoder, head(), temperature=0.5), views
    if name == "byol":
        # total_steps 4 > 2 steps: tau < 1 at step 2, so the target moves.
        return BYOL(conv_encoder(), head(), head(), tau=0.5, total_steps=4), views
    if name == "jepa":
        # 12 tokens of 2 samples; masks drawn for the global batch.
        return JEPA(ECGTransformer(patch_size=2, hidden_dim=8, num_layers=1,
                                   num_heads=2, input_leads=3),
                    JEPAPredictor(hidden_dim=4, num_layers=1, num_heads=2),
                    min_block_size=2, momentum=0.5, final_momentum=0.9,
                    total_steps=4, seed=3), x
    if name == "swav":
        return SwAV(conv_encoder(), head(), num_prototypes=4, queue_length=8,
                    queue_start_step=1, freeze_prototypes_steps=1), views
    negatives = name.split("_")[1]
    return CPC(cpc_fc_encoder(filters=(6, 5), use_batch_norm=False),
               CPCContext(units=4, num_layers=1), prediction_steps=2,
               num_negatives=5, negatives_from=negatives, seed=3), x

replicas_seen = []
original_scale = distribute.scale_loss_for_replicas
def recording_scale(loss):
    replicas_seen.append(distribute.num_replicas())
    return original_scale(loss)
for module in ("simclr", "swav", "cpc", "byol", "jepa"):
    setattr(sys.modules["keras_ecg.models." + module],
            "scale_loss_for_replicas", recording_scale)

def train(name, weights, parallel):
    context = distribute.data_parallel() if parallel else contextlib.nullcontext()
    with context as dist:
        model, data = make(name)
        small = tuple(v[:2] for v in data) if isinstance(data, tuple) else data[:2]
        model(small)
        if weights is not None:
            model.set_weights(weights)
        elif name == "jepa":
            # From a ViT initialisation (std 0.02) two SGD steps barely move
            # the weights: start from larger ones (the target differs too).
            rng = np.random.default_rng(5)
            model.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype)
                               if w.ndim else w for w in model.get_weights()])
        start = [np.array(w) for w in model.get_weights()]
        target_start = [np.array(v) for v in getattr(model, "target_weights", [])]
        # The single-device reference runs eagerly: no tracing, faster here
        # (except JEPA under JAX, whose eager ops compile one by one).
        eager = not parallel and not (BACKEND == "jax" and name == "jepa")
        model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=eager)
        history = model.fit(data, batch_size=GLOBAL_BATCH, epochs=1,
                            shuffle=False, verbose=0)
        devices = 1
        if parallel:
            devices = (dist.num_replicas_in_sync if BACKEND == "tensorflow"
                       else int(np.prod(dist.device_mesh.shape)))
    target_moved = max([float(np.max(np.abs(a - np.array(v)))) for a, v in
                        zip(target_start, getattr(model, "target_weights", []))]
                       or [0.0])
    return (start, float(history.history["loss"][0]),
            [np.array(w) for w in model.get_weights()], devices, target_moved)

def augmenter_draws():
    # The same seeded noise layer, one device vs each replica of 4.
    import tensorflow as tf
    from keras_ecg.layers.augmentation import GaussianNoise
    zeros = np.zeros((8, 16, 2), "float32")
    single = np.array(GaussianNoise(1.0, seed=4)(zeros))
    with distribute.data_parallel() as strategy:
        layer = GaussianNoise(1.0, seed=4)
        step = tf.function(lambda x: strategy.run(layer, args=(x,)))
        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(zeros).batch(8))
        local = [np.array(v) for v in
                 strategy.experimental_local_results(step(next(iter(dataset))))]
    return {"single": single[:2].tolist(), "replicas": [v.tolist() for v in local]}

results = {}
names = sys.argv[1].split(",")
for name in names:
    if name == "augmenter":
        results[name] = augmenter_draws()
        continue
    if name == "simclr_nogather":
        # Negative control: without gathering, per-replica losses differ.
        simclr_module.gather_across_replicas = (
            lambda z, return_offset=False: (z, 0) if return_offset else z)
    start, loss_1, weights_1, _, target_moved_1 = train(name, None, False)
    del replicas_seen[:]
    _, loss_4, weights_4, devices, target_moved_4 = train(name, start, True)
    results[name] = {
        "loss_1": loss_1, "loss_4": loss_4, "devices": devices,
        "replicas_seen": sorted(set(replicas_seen)),
        "target_moved": [target_moved_1, target_moved_4],
        "moved": max(float(np.max(np.abs(a - b)))
                     for a, b in zip(start, weights_1)),
        "weight_diff": max(float(np.max(np.abs(a - b)))
                           for a, b in zip(weights_1, weights_4)),
    }
print("RESULT " + json.dumps(results))
"""


def _run_worker(names):
    env = subprocess_env(BACKEND)
    if BACKEND == "jax":
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
        ).strip()
    process = subprocess.run(
        [sys.executable, "-c", _WORKER, ",".join(names)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT")]
    assert process.returncode == 0 and lines, process.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


_MULTI_DEVICE = pytest.mark.skipif(
    BACKEND not in ("jax", "tensorflow"),
    reason="several devices in one process: JAX and TensorFlow (torch runs one "
    "process per device, see distribute_multiprocess_test.py)",
)


@_MULTI_DEVICE
def test_four_replicas_match_one_device_on_the_global_batch():
    # The worker also accepts "cpc_sequence" (same-sequence negatives, drawn
    # for the global batch); left out here to keep the test fast.
    names = ["simclr", "swav", "cpc_batch", "byol", "jepa"]
    if BACKEND == "tensorflow":
        # simclr_xresnet: unsynchronised BatchNorm (negative control).
        # simclr_nogather stays last: it switches SimCLR's gathering off.
        # simclr_s4 (an S4Encoder; ~10 s here, ~18 s under JAX, which traces
        # the step on global arrays anyway, so TensorFlow's replicas only).
        names += [
            "simclr_s4",
            "simclr_syncbn",
            "cpc_syncbn",
            "simclr_xresnet",
            "augmenter",
            "simclr_nogather",
        ]
    else:
        # JAX traces the step on global arrays: BatchNorm statistics are
        # global-batch statistics too, so even a BN encoder matches.
        names.append("simclr_bn")
    results = _run_worker(names)
    for name in names:
        if name in ("simclr_nogather", "augmenter", "simclr_xresnet"):
            continue
        result = results[name]
        assert result["devices"] == 4, (name, result)
        # The step really changed the weights, so equal weights are meaningful.
        assert result["moved"] > 1e-4, (name, result)
        np.testing.assert_allclose(
            result["loss_4"], result["loss_1"], rtol=1e-5, err_msg=name
        )
        assert result["weight_diff"] < 1e-5, (name, result)
        if name in ("byol", "jepa"):
            # The in-graph EMA ran on every replica setup (weights compared
            # above include the target network; JEPA's masks were drawn for
            # the global batch, else the losses would differ).
            assert min(result["target_moved"]) > 1e-5, result
        if BACKEND == "tensorflow":
            # compute_loss ran per replica (scaled by 1/4), not on one device.
            assert result["replicas_seen"] == [4], (name, result)
        else:
            # JAX traces the step on global arrays: one "replica".
            assert result["replicas_seen"] == [1], (name, result)
    if BACKEND == "tensorflow":
        control = results["simclr_nogather"]
        assert abs(control["loss_4"] - control["loss_1"]) > 1e-3, control
        # Per-replica BatchNorm statistics (not synchronised) do NOT match.
        unsynchronised = results["simclr_xresnet"]
        assert unsynchronised["weight_diff"] > 1e-4, unsynchronised
        # On-device augmentation: each replica draws its own noise (not four
        # copies of one draw); replica 0 continues the single-device stream.
        draws = results["augmenter"]
        replicas = [np.asarray(r) for r in draws["replicas"]]
        assert len(replicas) == 4
        np.testing.assert_allclose(replicas[0], draws["single"], rtol=1e-6)
        for i in range(4):
            assert np.std(replicas[i]) > 0.5
            for j in range(i):
                assert np.max(np.abs(replicas[i] - replicas[j])) > 0.5, (i, j)


def test_helpers_are_identities_outside_a_replica_context():
    z = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    assert distribute.num_replicas() == 1
    gathered, offset = distribute.gather_across_replicas(z, return_offset=True)
    assert offset == 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gathered), z)
    np.testing.assert_array_equal(distribute.gather_across_replicas(z), z)
    loss = keras.ops.convert_to_tensor(2.5)
    assert float(distribute.scale_loss_for_replicas(loss)) == 2.5


def test_nt_xent_with_gathered_keys_averages_to_the_global_loss():
    # What each replica computes under TF: its anchors against global keys at
    # its offset. The mean over replicas must be the global-batch loss.
    rng = np.random.default_rng(1)
    z_a, z_b = rng.normal(size=(2, 8, 5)).astype("float32")
    full = float(nt_xent_loss(z_a, z_b, temperature=0.3))
    per_replica = [
        float(
            nt_xent_loss(
                z_a[r : r + 2],
                z_b[r : r + 2],
                temperature=0.3,
                keys_a=z_a,
                keys_b=z_b,
                offset=r,
            )
        )
        for r in range(0, 8, 2)
    ]
    np.testing.assert_allclose(np.mean(per_replica), full, rtol=1e-6)


def test_replicated_seed_generator_matches_keras_seed_generator():
    ours = distribute.replicated_seed_generator(5)
    reference = keras.random.SeedGenerator(5)
    for _ in range(2):
        a = keras.random.randint((6,), 0, 100, seed=ours)
        b = keras.random.randint((6,), 0, 100, seed=reference)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )
    assert ours.state.aggregation == "only_first_replica"


@pytest.mark.skipif(BACKEND != "torch", reason="torch-only behaviour")
def test_torch_data_parallel_needs_a_multi_process_job():
    # One process per device under torch: a single process is pointed to
    # torchrun (tests/distribute/distribute_multiprocess_test.py runs the jobs).
    with pytest.raises(NotImplementedError, match="torchrun"):
        with distribute.data_parallel():
            pass


@pytest.mark.skipif(BACKEND != "jax", reason="JAX-only behaviour")
def test_jax_distribution_is_restored_on_exit():
    before = keras.distribution.distribution()
    with distribute.data_parallel() as distribution:
        assert keras.distribution.distribution() is distribution
    assert keras.distribution.distribution() is before
