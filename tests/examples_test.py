"""Smoke tests of `examples/`: each script runs end to end with tiny settings.

The examples are user-facing and otherwise untested, so an API change that
breaks one would go unnoticed. Each runs in a subprocess on a small synthetic
set (1 pretraining and 1 downstream epoch): the check is that it finishes and
prints its result table with finite AUCs in [0, 1], not the AUC values. They
run in one backend's pass only (the one whose pass is cheapest in CI).
"""

import os
import re
import subprocess
import sys

import keras
import pytest

from keras_ecg.testing.test_case import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_BACKEND = "torch"
TINY = ["--size", "tiny", "--num-records", "160", "--epochs", "1", "--batch-size", "32"]
CASES = {
    "pretrain_and_linear_eval.py": TINY + ["--eval-epochs", "1"],
    "finetune.py": TINY + ["--eval-epochs", "1"],
    "label_efficiency.py": TINY + ["--eval-epochs", "1", "--fractions", "0.5", "1.0"],
    "robustness.py": TINY + ["--eval-epochs", "1", "--levels", "1", "6"],
    "tune_simclr.py": TINY + ["--max-trials", "2", "--directory", "{tmp}/tune"],
    # ECG-CPC: CPC with the causal S4 context network.
    "pretrain_and_linear_eval.py[cpc-s4]": TINY
    + ["--eval-epochs", "1", "--method", "cpc", "--encoder", "s4"],
}
AUC = re.compile(r"\b[01]\.\d{4}\b")


@pytest.mark.skipif(
    keras.backend.backend() != EXAMPLES_BACKEND,
    reason=f"examples run in the {EXAMPLES_BACKEND} pass only",
)
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs_and_prints_results(script, tmp_path):
    args = [a.format(tmp=tmp_path) for a in CASES[script]]
    # "name.py[variant]": the same script with other arguments.
    script = script.split("[")[0]
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args],
        env=subprocess_env(),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-4000:]
    output = process.stdout
    assert "done in" in output, output[-2000:]
    if script == "tune_simclr.py":
        # The table lists hyperparameters; the scores are on their own lines.
        results = [line for line in output.splitlines() if "probe" in line]
        assert len(results) == 2, output[-2000:]
    else:
        results = [line for line in output.splitlines() if line.startswith("|")]
        assert len(results) >= 3, output[-2000:]
    # AUCs are printed with 4 decimals, each in [0, 1] (no nan).
    values = [float(v) for line in results for v in AUC.findall(line)]
    assert values, output[-2000:]
    assert all(0.0 <= v <= 1.0 for v in values), values
    assert "nan" not in "\n".join(results).lower(), results
