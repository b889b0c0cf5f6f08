"""Tests of keras_ecg.distribute.settings: a job's settings from each source."""

import json

import pytest

from keras_ecg import distribute


@pytest.mark.backend_agnostic
def test_process_settings_from_each_source():
    resolve = distribute.resolve_process_settings
    assert resolve(environ={}) is None
    # Arguments win over the environment.
    env = {
        "TF_CONFIG": json.dumps(
            {
                "cluster": {"worker": ["a:1", "b:2", "c:3"]},
                "task": {"type": "worker", "index": 2},
            }
        )
    }
    settings = resolve("h:9", 2, 1, environ=env)
    assert settings[:] == (("h:9",), 2, 1, "arguments")
    settings = resolve(environ=env)
    assert settings[:] == (("a:1", "b:2", "c:3"), 3, 2, "TF_CONFIG")
    env = {
        "KERAS_ECG_JOB_ADDRESSES": "x:5,y:6",
        "KERAS_ECG_NUM_PROCESSES": "2",
        "KERAS_ECG_PROCESS_ID": "0",
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "3",
    }
    assert resolve(environ=env)[:] == (("x:5", "y:6"), 2, 0, "KERAS_ECG_*")
    slurm = {
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "3",
        "SLURM_STEP_NODELIST": "gpu[012-015,020],cpu7",
        "KERAS_ECG_COORDINATOR_PORT": "4000",
    }
    assert resolve(environ=slurm)[:] == (("gpu012:4000",), 4, 3, "SLURM")
    # torchrun's variables (inside a SLURM task: `srun torchrun ...`).
    torchrun = {
        **slurm,
        "WORLD_SIZE": "8",
        "RANK": "5",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu012",
        "MASTER_PORT": "29500",
    }
    settings = resolve(environ=torchrun)
    assert settings[:3] == (("gpu012:29500",), 8, 5)
    assert settings.source.startswith("torchrun")
    # One process: nothing to join.
    assert resolve("h:1", 1, 0, environ={}) is None
    assert resolve(environ={"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "args, env, message",
    [
        (("h:1", 2, None), {}, "process's id"),
        ((None, None, None), {"KERAS_ECG_NUM_PROCESSES": "2"}, "KERAS_ECG_"),
        (("h:1", 2, 2), {}, "not in 0..1"),
        (("h:1,h:2,h:3", 2, 0), {}, "3 job addresses for 2 processes"),
        (("localhost", 2, 0), {}, "not host:port"),
        (("h:1", "two", 0), {}, "must be an integer"),
        ((None, None, None), {"TF_CONFIG": "{not json"}, "TF_CONFIG"),
    ],
)
def test_incomplete_or_inconsistent_settings_are_refused(args, env, message):
    with pytest.raises(ValueError, match=message):
        distribute.resolve_process_settings(*args, environ=env)
