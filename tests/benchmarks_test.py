"""Smoke test of the PTB-XL benchmark scripts: they run end to end (tiny settings).

The numbers in benchmarks/README.md come from these scripts; an API change
that breaks one would otherwise go unnoticed until the next measurement. The
check is that a run finishes and reports what it measured, not the values.
"""

import os
import re
import subprocess
import sys

import keras
import pytest

from keras_ecg.testing.test_case import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--size", "tiny", "--seeds", "1", "--pretrain-epochs", "1"]
TINY += ["--eval-epochs", "1"]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_reproduce_ptbxl_runs_and_reports(ptbxl_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "reproduce_ptbxl.py")]
    command += [*TINY, "--methods", "simclr", "--data", str(ptbxl_dir)]
    command += ["--output", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    # Header + random init + scratch + simclr linear / finetune.
    assert len(rows) == 5, table
    assert re.search(
        r"\| simclr pretrained \| finetune \| 0\.\d{4} \| 0\.\d{4} \|", table
    )
    assert (
        "Command: `KERAS_BACKEND=tensorflow python benchmarks/reproduce_ptbxl.py"
        in table
    )
    assert "--train-folds 1-7" in table and "--test-folds 9" in table


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_cache_build_runs_and_reports(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "cache_build.py")]
    command += ["--sizes", "40", "--old-sizes", "--batches", "1"]
    command += ["--batch-size", "8", "--workers", "2", "--workdir", str(tmp_path)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    out = process.stdout
    assert "2 decoding worker process(es)" in out
    assert "10 s x 12 leads at 500 Hz" in out
    rows = [line for line in out.splitlines() if line.startswith("| new | 40 |")]
    assert len(rows) == 2, out  # once after the run, once in the final table
    assert len(list((tmp_path / "records").glob("*.hea"))) == 40
    assert not list(tmp_path.glob("cache_*"))  # the caches are removed after
