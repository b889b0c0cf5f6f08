"""Tests of multi-process data-parallel pretraining (2 processes on localhost).

Each test starts two worker processes (`keras_ecg.testing.multiprocess_worker`
or the CLI) that form one job over free localhost ports: JAX through
`jax.distributed` with gloo CPU collectives, TensorFlow through
`MultiWorkerMirroredStrategy`, torch through `torch.distributed` (gloo).
"""

import glob
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ecg import distribute
from keras_ecg.testing.multiprocess_worker import equality_methods
from keras_ecg.testing.test_case import free_ports
from keras_ecg.testing.test_case import subprocess_env

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = equality_methods(BACKEND)
# A dead process must make the job fail well within this (heartbeats and
# collective timeouts of 5 s in the worker); a hang fails the test.
JOB_TIMEOUT = 240


def _start_job(command, tmp_path, name, env_of=None, num_processes=2):
    """Starts `command(index, addresses)` per process on free localhost ports.

    `env_of(index, addresses)` gives extra environment variables.
    """
    addresses = ",".join(f"localhost:{p}" for p in free_ports(num_processes))
    processes = []
    for index in range(num_processes):
        extra = env_of(index, addresses) if env_of else {}
        log = open(tmp_path / f"{name}-{index}.log", "w")
        processes.append(
            subprocess.Popen(
                command(index, addresses),
                env=subprocess_env(BACKEND, **extra),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()  # the child holds its own descriptor
    return processes


def _wait(processes, tmp_path, name):
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=JOB_TIMEOUT))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"{name}: the job did not end within {JOB_TIMEOUT} s")
    logs = [(tmp_path / f"{name}-{i}.log").read_text() for i in range(len(processes))]
    return codes, logs


def _worker_job(mode, out_dir, tmp_path, name, extra_env=None):
    """Runs the test worker in `mode` as a job of 2 processes (env settings)."""

    def command(index, addresses):
        module = "keras_ecg.testing.multiprocess_worker"
        return [sys.executable, "-m", module, mode, str(out_dir)]

    def env_of(index, addresses):
        return {
            "KERAS_ECG_JOB_ADDRESSES": addresses,
            "KERAS_ECG_NUM_PROCESSES": "2",
            "KERAS_ECG_PROCESS_ID": str(index),
            **(extra_env or {}),
        }

    return _wait(_start_job(command, tmp_path, name, env_of), tmp_path, name)


def _arrays(path):
    data = np.load(path)
    weights = [data[k] for k in sorted(data.files, key=_order) if k != "loss"]
    return float(data["loss"]), weights


def _order(key):
    return int(key.split("_")[1]) if key.startswith("arr_") else -1


def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    # Each process feeds its half of every global batch of 8; 2 SGD steps.
    codes, logs = _worker_job("equality", tmp_path, tmp_path, "equality")
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for name in METHODS:
        ref_loss, reference = _arrays(tmp_path / f"{name}-reference.npz")
        _, start = _arrays(tmp_path / f"{name}-start.npz")
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, reference))
        assert moved > 1e-4, (name, moved)  # equal weights are meaningful
        for process in (0, 1):
            loss, weights = _arrays(tmp_path / f"{name}-{process}.npz")
            np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, err_msg=name)
            assert len(weights) == len(reference), name
            for w, r in zip(weights, reference):
                np.testing.assert_allclose(w, r, atol=1e-5, rtol=1e-5, err_msg=name)
    if BACKEND == "torch":
        _check_torch_collectives(tmp_path)


def _check_torch_collectives(tmp_path):
    results = []
    for process in (0, 1):
        with open(tmp_path / f"collectives-{process}.json") as f:
            results.append(json.load(f))
    for process, result in enumerate(results):
        # Uneven all-gather: 2 rows of 0s, then 3 rows of 1s, on both.
        assert result["gathered"] == [0.0, 0.0, 1.0, 1.0, 1.0], result
        assert result["offset"] == 2 * process
        # The gradient of a process's rows is summed over the processes.
        rows = range(result["offset"], result["offset"] + 2 + process)
        expected = [(i + 1) * result["expected_grad_scale"] for i in rows]
        np.testing.assert_allclose(result["grad"], expected)
        # Synchronised BatchNorm: each process's moments are the global ones.
        np.testing.assert_allclose(result["mean"], result["global_mean"], rtol=1e-5)
        np.testing.assert_allclose(
            result["variance"], result["global_variance"], rtol=1e-5
        )
        local = np.abs(np.subtract(result["local_mean"], result["global_mean"]))
        assert local.max() > 0.1, result  # the halves differ: meaningful


def test_a_killed_process_fails_the_job_and_a_restart_resumes(tmp_path):
    # Process 1 kills itself after step 3 of 6 (checkpoint every step).
    codes, logs = _worker_job(
        "resume", tmp_path, tmp_path, "killed", {"KERAS_ECG_TEST_DIE_AT_STEP": "3"}
    )
    assert codes[1] == -signal.SIGKILL, codes
    # The survivor stops (instead of waiting forever) and says why.
    assert codes[0] != 0, logs[0][-3000:]
    # Which error reaches the survivor first depends on timing: the missed
    # heartbeats, or (TF) the collective's closed connection; the CLI turns
    # either into one message (`keras_ecg.jobs.pretrain.lost_process_error`).
    lost = ("heartbeat", "UnavailableError")
    if BACKEND == "torch":
        # gloo fails the next collective at once; keras-ecg names the lost
        # process (the survivor's roll call in the job's store).
        lost = ("ProcessLostError: process 0 of 2: process 1 of the job stopped",)
    assert any(text in logs[0] for text in lost), logs[0][-3000:]
    with open(tmp_path / "backup" / "training_metadata.json") as f:
        saved_step = json.load(f)["global_step"]
    assert 1 <= saved_step <= 3, saved_step
    # Only the chief wrote checkpoints.
    assert glob.glob(str(tmp_path / "backup" / "*.weights.h5"))

    codes, logs = _worker_job("resume", tmp_path, tmp_path, "restart")
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    results = []
    for process in (0, 1):
        with open(tmp_path / f"resume-{process}.json") as f:
            results.append(json.load(f))
    for result in results:
        assert result["resumed_from_step"] == saved_step, result
        assert result["steps"] == 6, result
    # Both processes resumed from the same checkpoint and stayed in sync.
    assert results[0]["weights_sum"] == results[1]["weights_sum"]
    assert results[0]["loss"] == results[1]["loss"]


def test_cli_pretrain_with_two_processes(tmp_path):
    output = tmp_path / "run"

    def command(index, addresses):
        return [
            sys.executable,
            "-m",
            "keras_ecg.cli",
            "pretrain",
            "--method",
            "simclr",
            "--size",
            "tiny",
            "--num-records",
            "40",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--output",
            str(output),
            "--distributed",
            "multi-process",
            "--job-addresses",
            addresses,
            "--num-processes",
            "2",
            "--process-id",
            str(index),
            "--collective-timeout-seconds",
            "30",
            # 12 val records for the online probe, which only the chief runs.
            "--train-folds",
            "1-6",
            "--val-folds",
            "7-9",
            "--keep",
            "best-probe",
        ]

    codes, logs = _wait(_start_job(command, tmp_path, "cli"), tmp_path, "cli")
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for index in (0, 1):
        assert f"process {index} of 2 joined" in logs[index]
        # 24 training records, 12 per process, global batch 8 = 2 x 4.
        assert f"(process {index} of 2: 12 records, 4 per batch)" in logs[index]
    assert "Results written" in logs[0]
    assert "results are written by process 0" in logs[1]
    assert "probe_macro_auc" in logs[0] and "online probe cost" in logs[0]
    assert "probe_macro_auc" not in logs[1]
    assert "kept the weights of epoch 1" in logs[0]
    with open(output / "pretrain_results.json") as f:
        results = json.load(f)
    assert results["processes"] == 2
    assert results["settings"]["distributed"] == "multi-process"
    # Where the processes ran is not part of the run's identity (a restart may
    # move them); the number of processes is.
    assert "job_addresses" not in results["settings"]
    assert results["settings"]["num_processes"] == 2
    assert len(results["loss"]) == 1 and np.isfinite(results["loss"][0])
    assert (output / "pretrained.keras").exists()
    assert not (output / "backup").exists()


# ----------------------------------------------------------------------------
# Flags (no second process); settings and shards: settings_test.py,
# sharding_test.py
# ----------------------------------------------------------------------------


def test_cli_single_process_flags(tmp_path, monkeypatch):
    # --distributed auto without a job in the environment: one process;
    # --synchronized-batch-norm reaches the encoder's config.
    from keras_ecg import cli

    for name in (
        "TF_CONFIG",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "KERAS_ECG_JOB_ADDRESSES",
        "KERAS_ECG_NUM_PROCESSES",
        "KERAS_ECG_PROCESS_ID",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES",
        "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "KERAS_DISTRIBUTION_PROCESS_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    output = tmp_path / "run"
    tiny = ["--size", "tiny", "--num-records", "24", "--batch-size", "8"]
    code = cli.main(
        [
            "pretrain",
            "--method",
            "simclr",
            "--epochs",
            "1",
            *tiny,
            "--output",
            str(output),
            "--distributed",
            "auto",
            "--synchronized-batch-norm",
        ]
    )
    assert code == 0
    with open(output / "pretrain_results.json") as f:
        results = json.load(f)
    assert "processes" not in results
    assert results["settings"]["synchronized_batch_norm"] is True
    model = keras.saving.load_model(output / "pretrained.keras")
    assert model.encoder.get_config()["synchronized_batch_norm"] is True
    norms = [
        layer
        for layer in model.encoder._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms
    # Keras synchronises BatchNorm under TensorFlow only; keras-ecg under torch.
    assert all(n.synchronized == (BACKEND == "tensorflow") for n in norms)
    assert all(
        distribute.batch_norm_is_synchronized(n) == (BACKEND != "jax") for n in norms
    )
    # --distributed multi-process without any settings: a clear usage error.
    code = cli.main(
        [
            "pretrain",
            "--method",
            "simclr",
            *tiny,
            "--output",
            str(tmp_path / "other"),
            "--distributed",
            "multi-process",
        ]
    )
    assert code == 2
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("encoder_name", ["xresnet1d", "cpc"])
def test_synchronized_batch_norm_option_round_trips(encoder_name, tmp_path):
    from keras_ecg.models.encoders import CPCEncoder
    from keras_ecg.models.encoders import XResNet1D
    from keras_ecg.testing import assert_config_round_trip
    from keras_ecg.testing import assert_saved_model_round_trip

    if encoder_name == "xresnet1d":
        encoder = XResNet1D(
            block_depths=(1,),
            widths=(4,),
            expansion=1,
            stem_filters=(4, 4, 4),
            input_leads=2,
            synchronized_batch_norm=True,
        )
    else:
        encoder = CPCEncoder(filters=(4, 3), synchronized_batch_norm=True)
    x = np.random.default_rng(0).normal(size=(2, 32, 2)).astype("float32")
    encoder(x)
    assert encoder.get_config()["synchronized_batch_norm"] is True
    assert_config_round_trip(encoder)
    restored = assert_saved_model_round_trip(
        keras.Sequential([keras.Input((32, 2)), encoder]), x, tmp_path
    )
    norms = [
        layer
        for layer in restored._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms
    # Keras synchronises BatchNorm under TensorFlow only, keras-ecg under
    # torch (JAX: global anyway).
    assert all(n.synchronized == (BACKEND == "tensorflow") for n in norms)
    assert all(
        distribute.batch_norm_is_synchronized(n) == (BACKEND != "jax") for n in norms
    )
    # Default: off, as before.
    plain = CPCEncoder(filters=(4,)) if encoder_name == "cpc" else XResNet1D()
    assert plain.get_config()["synchronized_batch_norm"] is False


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF's collective errors")
def test_a_lost_tf_peer_becomes_a_clear_cli_error():
    import tensorflow as tf

    from keras_ecg.jobs.common import LostProcessError
    from keras_ecg.jobs.pretrain import lost_process_error

    settings = distribute.ProcessSettings(("h:1", "h:2"), 2, 0, "arguments")
    error = tf.errors.UnavailableError(
        None, None, "Collective ops is aborted by: tasks are unhealthy\nmore"
    )
    lost = lost_process_error(error, settings, "runs/x")
    assert isinstance(lost, LostProcessError)
    message = str(lost)
    assert message.startswith("process 0 of 2: another process of the job")
    assert "tasks are unhealthy" in message and "more" not in message
    assert os.path.join("runs/x", "backup") in message
    # Other errors, or one process: unchanged.
    assert lost_process_error(ValueError("x"), settings, "o") is None
    assert lost_process_error(error, None, "o") is None


@pytest.mark.skipif(BACKEND != "torch", reason="torch's lost-process error")
def test_a_lost_torch_process_becomes_a_clear_cli_error():
    from keras_ecg.jobs.common import LostProcessError
    from keras_ecg.jobs.pretrain import lost_process_error

    settings = distribute.ProcessSettings(("h:1",), 2, 0, "arguments")
    error = distribute.ProcessLostError(
        "process 0 of 2: process 1 of the job stopped answering (gloo: x)"
    )
    lost = lost_process_error(error, settings, "runs/x")
    assert isinstance(lost, LostProcessError)
    assert str(lost).startswith("process 0 of 2: process 1 of the job stopped")
    assert os.path.join("runs/x", "backup") in str(lost)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF reads TF_CONFIG")
def test_tf_refuses_settings_that_contradict_tf_config(monkeypatch):
    config = {
        "cluster": {"worker": ["a:1", "b:2"]},
        "task": {"type": "worker", "index": 1},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    # Refused before any strategy is built.
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.initialize_multi_process("a:1,b:2", 2, 0)
    assert distribute.multi_process_settings() is None
