"""The `keras-ecg` command line, tested the way users reach it.

Most runs call `cli.main` in-process on tiny synthetic data (the active
backend); what depends on the process (the backend switch, `--help` importing
no framework) runs in subprocesses, in the tensorflow pass only.
"""

import csv
import importlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from keras_ecg import cli
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.testing.test_case import subprocess_env
from tests.data.format_writers import EXPORTS
from tests.data.format_writers import write_export
from tests.models.record_helpers import link_record
from tests.models.record_helpers import ptbxl_header
from tests.models.record_helpers import write_record
from tests.training_logs_test import scalars

TINY = ["--size", "tiny", "--num-records", "120", "--batch-size", "16"]
# Subprocess tests and the CLI's own logic (flags, run folders, errors) run in
# the tensorflow pass; training, evaluation and prediction through the CLI run
# under every backend.
ONE_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="CLI logic / subprocess test: runs in the tensorflow pass",
)
# A framework's native log line: `E0000 00:00:1796674390.191371  1299 file.cc:682] `.
NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\]", re.M)


def _read(path):
    with open(path) as f:
        return json.load(f)


def _run(args, capsys=None):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr() if capsys is not None else None
    return code, captured


def _wfdb_folder(tmp_path, num_records, seed, short=()):
    """`tmp_path/wfdb` with 10 s records r0, r1, ... and 1 s records `short`
    (12 leads, 100 Hz, noise)."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / "wfdb"
    folder.mkdir()
    for i in range(num_records):
        write_record(folder, f"r{i}", rng.normal(size=(1000, 12)) * 0.1)
    for name in short:
        write_record(folder, name, rng.normal(size=(100, 12)) * 0.1)
    return folder


def _pretrain(out, *extra):
    args = ["pretrain", "--method", "simclr", "--epochs", "1", *TINY, *extra]
    assert cli.main([*args, "--output", str(out)]) == 0
    return out / "pretrained.keras"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny pretrained SimCLR and a classifier finetuned from it."""
    root = tmp_path_factory.mktemp("trained")
    checkpoint = _pretrain(root / "pretrain")
    args = ["finetune", "--checkpoint", checkpoint, "--eval-epochs", "1"]
    args += ["--linear-probe-epochs", "1", "--num-records", "120"]
    assert cli.main([str(a) for a in args] + ["--output", str(root / "ft")]) == 0
    return {
        "checkpoint": checkpoint,
        "classifier": root / "ft" / "classifier.keras",
        "results": _read(root / "ft" / "finetune_results.json"),
    }


# ----------------------------------------------------------------------------
# Backend and start-up
# ----------------------------------------------------------------------------


def _help_commands():
    commands = [[sys.executable, "-m", "keras_ecg.cli", "--help"]]
    # The console script installed beside this interpreter (pip install -e).
    script = shutil.which("keras-ecg", path=os.path.dirname(sys.executable))
    if script:
        commands.append([script, "--help"])
    return commands


@ONE_PASS
@pytest.mark.parametrize("command", _help_commands(), ids=lambda c: c[-2])
def test_help_imports_no_framework(command):
    env = subprocess_env(PYTHONPROFILEIMPORTTIME="1")
    process = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0, process.stderr[-2000:]
    assert "pretrain" in process.stdout and "predict" in process.stdout
    # PYTHONPROFILEIMPORTTIME lists every module imported, one per line.
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in process.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "keras_ecg" in imported
    assert not imported & {"keras", "tensorflow", "jax", "torch", "numpy"}


@ONE_PASS
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_backend_flag_is_the_backend_the_run_uses(tmp_path, backend):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "keras_ecg.cli", "pretrain", "--backend"]
    command += [backend, "--method", "simclr", "--epochs", "1", "--size", "tiny"]
    command += ["--num-records", "40", "--batch-size", "8", "--output", str(out)]
    # The environment asks for another backend: the flag must win.
    other = "torch" if backend != "torch" else "jax"
    env = subprocess_env(backend=other)
    # As a user runs it: the CLI itself must keep the frameworks quiet.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    process = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"backend={backend}" in process.stdout
    assert _read(out / "pretrain_results.json")["backend"] == backend
    # No framework log lines (TF's C++ `E0000 ... use_unbounded_threadpool`,
    # `I0000 ... oneDNN`, absl's notice) at default verbosity.
    for stream in (process.stdout, process.stderr):
        assert not NATIVE_LOG_LINE.search(stream), stream[-3000:]
        assert "absl::InitializeLog" not in stream, stream[-3000:]


def test_backend_that_cannot_be_switched_in_process_is_refused(tmp_path, capsys):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    code, captured = _run(
        ["pretrain", "--backend", other, "--method", "simclr", "--output", tmp_path],
        capsys,
    )
    assert code == 2
    assert "cannot switch" in captured.err
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# Seconds, not samples
# ----------------------------------------------------------------------------


@ONE_PASS
def test_sampling_rate_500_keeps_durations_in_seconds(tmp_path, capsys):
    # 48 records: 500 Hz records are five times the samples of the 100 Hz ones.
    few = ["--num-records", "48"]
    checkpoint = _pretrain(tmp_path / "p500", "--sampling-rate", "500", *few)
    printed = capsys.readouterr().out
    assert "2.5 s crops (1250 samples at 500 Hz)" in printed
    pretrained = keras.saving.load_model(checkpoint)
    assert pretrained.preprocessor.sampling_rate == 500
    args = ["linear-eval", "--checkpoint", checkpoint, "--eval-epochs", "1"]
    args += [*few, "--window-seconds", "2", "--output"]
    code, _ = _run([*args, tmp_path / "lin"], capsys)
    assert code == 0
    classifier = keras.saving.load_model(tmp_path / "lin" / "classifier.keras")
    assert classifier.preprocessor.sampling_rate == 500
    assert classifier.preprocessor.window_seconds == 2.0
    assert classifier.preprocessor.window_length == 1000
    options = _read(tmp_path / "lin" / "linear-eval_results.json")["options"]
    assert options["window_seconds"] == 2.0 and options["stride_seconds"] == 1.0
    # The model's rate is the data's: another --sampling-rate is refused.
    code, captured = _run([*args, tmp_path / "lin2", "--sampling-rate", "100"], capsys)
    assert code == 2 and "trained at 500 Hz" in captured.err


@ONE_PASS
def test_short_record_is_skipped_and_crops_keep_their_length(tmp_path, capsys):
    folder = _wfdb_folder(tmp_path, 8, seed=0, short=("short",))
    args = ["pretrain", "--method", "simclr", "--epochs", "1", "--size", "tiny"]
    args += ["--data", folder, "--batch-size", "4", "--val-fraction", "0"]
    args += ["--test-fraction", "0", "--output", tmp_path / "run"]
    with pytest.warns(UserWarning, match=r"skipped 1 of 9 record\(s\) shorter"):
        code, captured = _run(args, capsys)
    assert code == 0
    assert "2.5 s crops (250 samples at 100 Hz)" in captured.out


@ONE_PASS
def test_pretraining_flags_set_crop_lr_and_augmentation(tmp_path, capsys):
    args = ["--crop-seconds", "2", "--lr", "0.005", "--augmentation", "gn_chr_to"]
    checkpoint = _pretrain(tmp_path / "run", *args)
    printed = capsys.readouterr().out
    assert "2 s crops (200 samples at 100 Hz)" in printed
    assert "lr 0.005, augmentation gn_chr_to" in printed
    model = keras.saving.load_model(checkpoint)
    learning_rate = keras.ops.convert_to_numpy(model.optimizer.learning_rate)
    np.testing.assert_allclose(learning_rate, 0.005, rtol=1e-6)
    settings = _read(tmp_path / "run" / "manifest.json")["settings"]
    assert (settings["crop_seconds"], settings["augmentation"]) == (2.0, "gn_chr_to")
    # An unknown preset is refused before the run folder exists.
    bad = ["--augmentation", "rrc_warp", "--output", tmp_path / "bad"]
    code, captured = _run(["pretrain", "--method", "simclr", *TINY, *bad], capsys)
    assert code == 2 and "'warp'" in captured.err
    assert not (tmp_path / "bad").exists()


@ONE_PASS
def test_folds_choose_the_split(tmp_path, capsys):
    from keras_ecg.data.sources import load_source

    folds = load_source("synthetic", num_synthetic_records=120, seed=0).folds
    expected = [
        int(np.isin(folds, chosen).sum())
        for chosen in ([1, 2, 3, 4, 5], [6, 7], [8, 9, 10])
    ]
    args = ["linear-eval", "--random-init", "--size", "tiny", "--eval-epochs", "1"]
    args += ["--num-records", "120", "--train-folds", "1-5", "--val-folds", "6,7"]
    args += ["--test-folds", "8-10", "--output", tmp_path]
    code, captured = _run(args, capsys)
    assert code == 0
    train, val, test = expected
    assert f"split: {train} train / {val} val / {test} test records" in captured.out


@ONE_PASS
def test_cache_dir_holds_the_decoded_signals(tmp_path, capsys):
    folder = _wfdb_folder(tmp_path, 6, seed=2)
    cache = tmp_path / "cache"
    args = ["pretrain", "--method", "simclr", "--size", "tiny", "--epochs", "1"]
    args += ["--data", folder, "--batch-size", "2", "--cache-dir", cache]
    assert _run([*args, "--output", tmp_path / "a"], capsys)[0] == 0
    (entry,) = cache.glob("*.npy")  # the folder's decoded signals, one array
    assert entry.with_suffix(".json").exists()
    stamp = entry.stat().st_mtime_ns
    # A second run reads that entry (not rewritten) and sees the same records.
    assert _run([*args, "--output", tmp_path / "b"], capsys)[0] == 0
    assert list(cache.glob("*.npy")) == [entry]
    assert entry.stat().st_mtime_ns == stamp
    fingerprints = [
        _read(tmp_path / run / "manifest.json")["data"]["fingerprint"]
        for run in ("a", "b")
    ]
    assert fingerprints[0] == fingerprints[1]


# ----------------------------------------------------------------------------
# Run folders
# ----------------------------------------------------------------------------


@ONE_PASS
def test_finished_run_is_not_overwritten_without_flag(trained, capsys):
    out = trained["checkpoint"].parent
    results = out / "pretrain_results.json"
    before = (results.read_bytes(), trained["checkpoint"].read_bytes())
    args = ["pretrain", "--method", "simclr", "--epochs", "1", *TINY]
    code, captured = _run([*args, "--output", out], capsys)
    assert code == 2 and "already holds this finished run" in captured.err
    code, captured = _run(
        ["pretrain", "--method", "byol", "--epochs", "1", *TINY, "--output", out],
        capsys,
    )
    assert code == 2
    assert "settings.method: 'simclr' -> 'byol'" in captured.err
    assert (results.read_bytes(), trained["checkpoint"].read_bytes()) == before


@ONE_PASS
def test_overwrite_replaces_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    _pretrain(out)
    code, _ = _run(
        ["pretrain", "--method", "byol", "--epochs", "1", *TINY, "--output", out]
        + ["--overwrite"],
        capsys,
    )
    assert code == 0
    assert _read(out / "manifest.json")["settings"]["method"] == "byol"
    assert _read(out / "pretrain_results.json")["settings"]["method"] == "byol"


@ONE_PASS
def test_foreign_folder_is_never_touched(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    args = ["pretrain", "--method", "simclr", *TINY, "--output", tmp_path]
    code, captured = _run([*args, "--overwrite"], capsys)
    assert code == 2 and "not a keras-ecg run folder" in captured.err
    assert os.listdir(tmp_path) == ["notes.txt"]


# ----------------------------------------------------------------------------
# Errors a user can act on
# ----------------------------------------------------------------------------


@ONE_PASS
def test_missing_data_is_one_line_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code, captured = _run(
        ["pretrain", "--method", "cpc", "--data", tmp_path / "nope", "--output", out],
        capsys,
    )
    assert code == 2
    assert captured.err.strip().count("\n") == 0, captured.err
    assert "nope" in captured.err and "Traceback" not in captured.err
    assert not out.exists()


@ONE_PASS
def test_bad_record_names_the_record_and_hints_at_skipping(tmp_path, capsys):
    folder = _wfdb_folder(tmp_path, 6, seed=1)
    bad = folder / "r3.dat"
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated signal file
    args = ["pretrain", "--method", "simclr", "--size", "tiny", "--epochs", "1"]
    args += ["--data", folder, "--batch-size", "2", "--output", tmp_path / "run"]
    code, captured = _run(args, capsys)
    assert code == 2
    assert "r3" in captured.err and "--skip-bad-records" in captured.err
    assert not (tmp_path / "run").exists()
    with pytest.warns(UserWarning, match="skipped 1"):
        code, _ = _run([*args, "--skip-bad-records"], capsys)
    assert code == 0


@ONE_PASS
def test_label_set_of_a_wfdb_folder(cinc_dir, tmp_path, capsys):
    args = ["linear-eval", "--random-init", "--size", "tiny", "--data", cinc_dir]
    args += ["--eval-epochs", "1", "--output"]
    code, captured = _run([*args, tmp_path / "bad", "--label-set", "rhythm"], capsys)
    assert code == 2 and "scored" in captured.err
    assert not (tmp_path / "bad").exists()
    code, _ = _run([*args, tmp_path / "ok", "--label-set", "scored"], capsys)
    assert code == 0
    classifier = keras.saving.load_model(tmp_path / "ok" / "classifier.keras")
    assert classifier.label_set == "scored"
    assert classifier.label_vocabulary == "snomed"
    assert "426783006" in classifier.class_names  # sinus rhythm


# ----------------------------------------------------------------------------
# Downstream flags
# ----------------------------------------------------------------------------


def test_finetune_results_carry_settings_stages_and_per_class_auc(trained):
    results = trained["results"]
    assert results["mode"] == "finetune"
    assert results["settings"]["linear_probe_epochs"] == 1
    assert results["data"]["path"] == "synthetic"
    assert len(results["data"]["fingerprint"]) == 32
    assert [s["name"] for s in results["stages"]] == ["linear_probe", "finetune"]
    assert set(results["test_per_class_auc"]) <= set(
        keras.saving.load_model(trained["classifier"]).class_names
    )
    assert 0.0 <= results["test_macro_auc"] <= 1.0
    assert "keras" in results["versions"]


def _assert_intervals(results, prefix="test_", num_resamples=1000, seed=0):
    """The results JSON carries the macro AUROC / AUPRC with their intervals."""
    auroc, auprc = results[f"{prefix}macro_auroc"], results[f"{prefix}macro_auprc"]
    point = results[f"{prefix}macro_auc" if prefix else "macro_auc"]
    assert auroc["value"] == pytest.approx(point)
    assert auroc["low"] <= auroc["value"] <= auroc["high"]
    assert 0.0 <= auprc["low"] <= auprc["high"] <= 1.0
    settings = results["bootstrap"]
    assert (settings["num_resamples"], settings["seed"]) == (num_resamples, seed)
    assert settings["confidence"] == 0.95


def test_test_auc_has_a_bootstrap_interval_and_auprc(trained):
    _assert_intervals(trained["results"])
    assert trained["results"]["settings"]["bootstrap_resamples"] == 1000


@ONE_PASS
@pytest.mark.parametrize(
    "flags, check",
    [
        (["--linear-probe-epochs", "0"], lambda r: len(r["stages"]) == 1),
        (
            ["--discriminative-lr", "0.5", "--backbone-batch-norm", "frozen"],
            lambda r: (
                r["options"]["discriminative_lr"] == 0.5
                and r["options"]["backbone_batch_norm"] == "frozen"
            ),
        ),
        (
            ["--eval-epochs", "3", "--patience", "1", "--eval-lr", "0.002"]
            + ["--min-epochs", "1"],
            lambda r: (
                (r["options"]["epochs"], r["options"]["patience"]) == (3, 1)
                and r["options"]["min_epochs"] == 1
                and r["options"]["learning_rate"] == 0.002
                and 1 <= r["stages"][-1]["epochs_run"] <= 3
            ),
        ),
        (["--eval-batch-size", "8"], lambda r: r["options"]["batch_size"] == 8),
        (
            ["--window-seconds", "2", "--stride-seconds", "0.5"],
            lambda r: (
                (r["options"]["window_seconds"], r["options"]["stride_seconds"])
                == (2.0, 0.5)
            ),
        ),
    ],
)
def test_finetune_flags_change_the_protocol(trained, tmp_path, capsys, flags, check):
    args = ["finetune", "--checkpoint", trained["checkpoint"], "--num-records", "120"]
    args += ["--eval-epochs", "1", "--linear-probe-epochs", "1", *flags]
    code, _ = _run([*args, "--output", tmp_path], capsys)
    assert code == 0
    assert check(_read(tmp_path / "finetune_results.json"))


@ONE_PASS
def test_protocol_choices_are_the_downstream_modes():
    from keras_ecg.evaluation.downstream import DOWNSTREAM_MODES

    assert cli.PROTOCOLS == DOWNSTREAM_MODES


def _backbone_values(model):
    return [keras.ops.convert_to_numpy(w) for w in model.backbone.weights]


@ONE_PASS  # the protocols' training runs under every backend (downstream_test)
@pytest.mark.parametrize(
    "protocol, flags, stages",
    [
        ("linear", ["--random-init-baseline"], ["linear"]),
        ("frozen", ["--bootstrap-resamples", "200", "--bootstrap-seed", "7"], None),
        (
            "finetune",
            ["--linear-probe-epochs", "1", "--head-hidden-dims", "32"]
            + ["--head-dropout", "0.2"],
            ["linear_probe", "finetune"],
        ),
        ("scratch", ["--backbone-batch-norm", "frozen"], ["scratch"]),
    ],
)
def test_downstream_protocol(trained, tmp_path, capsys, protocol, flags, stages):
    args = ["downstream", "--protocol", protocol, "--checkpoint", trained["checkpoint"]]
    args += ["--num-records", "120", "--eval-epochs", "1", "--patience", "0", *flags]
    code, captured = _run([*args, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    results = _read(tmp_path / "downstream_results.json")
    assert results["protocol"] == results["mode"] == protocol
    assert [s["name"] for s in results["stages"]] == (stages or [protocol])
    classifier = keras.saving.load_model(tmp_path / "classifier.keras")
    pretrained = keras.saving.load_model(trained["checkpoint"])
    if protocol == "frozen":
        _assert_intervals(results, num_resamples=200, seed=7)
        assert classifier.head_hidden_dims == (512,)
        assert results["options"]["dropout"] == [0.25, 0.5]
        # Only the head trained: the backbone is the checkpoint's, value for
        # value (BatchNorm statistics included).
        for a, b in zip(
            _backbone_values(classifier), _backbone_values(pretrained), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    else:
        _assert_intervals(results)
        hidden = (32,) if protocol == "finetune" else ()
        assert classifier.head_hidden_dims == hidden
    if protocol == "finetune":
        # --head-dropout before the output, half of it before hidden layers.
        assert classifier.dropout == (0.1, 0.2)
    if protocol == "scratch":
        # A fresh encoder of the checkpoint's architecture, its preprocessing.
        assert "freshly initialised" in captured.out
        assert type(classifier.backbone) is type(pretrained.backbone)
        assert [w.shape for w in classifier.backbone.weights] == [
            w.shape for w in pretrained.backbone.weights
        ]
        np.testing.assert_array_equal(
            classifier.preprocessor.mean, pretrained.preprocessor.mean
        )
        assert results["options"]["backbone_batch_norm"] == "frozen"
    if protocol == "linear":
        # The same protocol on a fresh copy of the architecture, paired.
        baseline = results["random_init_baseline"]
        _assert_intervals(baseline)
        difference = results["paired_difference"]["macro_auroc"]
        assert difference["difference"] == pytest.approx(
            results["test_macro_auc"] - baseline["test_macro_auc"], abs=1e-9
        )
        assert difference["low"] <= difference["difference"] <= difference["high"]
        assert difference["excludes_zero"] == (
            difference["low"] > 0 or difference["high"] < 0
        )
        assert "| random init |" in captured.out
        assert "pretrained - random init:" in captured.out


@ONE_PASS
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--protocol", "frozen", "--linear-probe-epochs", "1"], "applies to"),
        (["--protocol", "linear", "--backbone-batch-norm", "train"], "applies to"),
        (["--protocol", "scratch", "--random-init-baseline"], "already starts"),
    ],
)
def test_downstream_refuses_flags_its_protocol_ignores(
    trained, tmp_path, capsys, flags, message
):
    args = ["downstream", "--checkpoint", trained["checkpoint"], *flags]
    code, captured = _run([*args, "--output", tmp_path / "out"], capsys)
    assert code == 2
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _forbid_standardised_copies(monkeypatch):
    """Standardising a whole dataset (a copy) raises; the pipelines may not."""
    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    def refuse(*args, **kwargs):
        raise AssertionError("a standardised copy of the records was made")

    monkeypatch.setattr(LeadStandardizer, "transform", refuse)
    monkeypatch.setattr(ECGPreprocessor, "standardize", refuse)


@pytest.mark.parametrize("command", ["linear-eval", "finetune"])
def test_downstream_makes_no_standardised_copy(
    trained, tmp_path, capsys, monkeypatch, command
):
    _forbid_standardised_copies(monkeypatch)
    args = [command, "--checkpoint", trained["checkpoint"], "--num-records", "120"]
    args += ["--eval-epochs", "1", "--patience", "0"]
    if command == "finetune":
        args += ["--linear-probe-epochs", "1"]
    code, captured = _run([*args, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    results = _read(tmp_path / f"{command}_results.json")
    assert 0.0 <= results["test_macro_auc"] <= 1.0


def test_evaluate_and_embed_make_no_standardised_copy(
    trained, tmp_path, capsys, monkeypatch
):
    _forbid_standardised_copies(monkeypatch)
    args = ["evaluate", "--model", trained["classifier"], "--num-records", "120"]
    code, captured = _run(
        [*args, "--split", "test", "--output", tmp_path / "e"], capsys
    )
    assert code == 0, captured.err
    evaluated = _read(tmp_path / "e" / "evaluate_results.json")
    np.testing.assert_allclose(
        evaluated["macro_auc"], trained["results"]["test_macro_auc"], atol=1e-6
    )
    args = ["embed", "--checkpoint", trained["checkpoint"], "--num-records", "120"]
    code, captured = _run(
        [*args, "--split", "test", "--output", tmp_path / "m"], capsys
    )
    assert code == 0, captured.err
    assert np.isfinite(np.load(tmp_path / "m" / "embeddings.npz")["embeddings"]).all()


@ONE_PASS
def test_random_init_finetune_is_supervised_from_scratch(tmp_path, capsys):
    args = ["finetune", "--random-init", "--method", "cpc", "--size", "tiny"]
    args += ["--num-records", "120"]
    code, captured = _run([*args, "--eval-epochs", "1", "--output", tmp_path], capsys)
    assert code == 0
    results = _read(tmp_path / "finetune_results.json")
    assert results["mode"] == "scratch"
    assert [s["name"] for s in results["stages"]] == ["scratch"]


@ONE_PASS  # JEPA's training itself is tested under every backend (jepa_test)
def test_jepa_pretrains_on_plain_10_s_crops_with_the_reference_optimizer(
    tmp_path, capsys
):
    from keras_ecg.models import JEPA

    args = ["pretrain", "--method", "jepa", "--epochs", "2", *TINY]
    code, captured = _run([*args, "--lr", "0.002", "--output", tmp_path], capsys)
    assert code == 0
    line = next(
        x for x in captured.out.splitlines() if x.startswith("pretraining jepa")
    )
    assert "10 s crops (1000 samples at 100 Hz)" in line
    assert "augmentation" not in line and "lr 0.002" in line
    model = keras.saving.load_model(tmp_path / "pretrained.keras")
    assert isinstance(model, JEPA) and model.preprocessor is not None
    optimizer = model.optimizer
    assert (optimizer.beta_2, optimizer.epsilon, optimizer.weight_decay) == (
        0.99,
        1e-6,
        0.055,
    )
    # Two epochs of the schedule ran: warm-up to 0.002, then the cosine decay
    # to its floor (2e-6) at the last step.
    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    assert int(keras.ops.convert_to_numpy(model.ema_step)) == steps
    assert float(keras.ops.convert_to_numpy(model.total_steps_variable)) == steps
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    np.testing.assert_allclose(rate, 2e-6, rtol=0.05)


@ONE_PASS
def test_random_init_jepa_finetunes_its_transformer_from_scratch(tmp_path, capsys):
    args = ["finetune", "--random-init", "--method", "jepa", "--size", "tiny"]
    args += ["--num-records", "120", "--eval-epochs", "1", "--output", tmp_path]
    code, captured = _run(args, capsys)
    assert code == 0
    results = _read(tmp_path / "finetune_results.json")
    assert results["mode"] == "scratch"
    classifier = keras.saving.load_model(tmp_path / "classifier.keras")
    assert type(classifier.backbone).__name__ == "ECGTransformer"
    assert classifier.backbone.trainable_weights


@ONE_PASS
def test_progress_is_one_line_per_epoch_off_a_terminal(trained, tmp_path, capsys):
    args = ["linear-eval", "--checkpoint", trained["checkpoint"], "--eval-epochs"]
    args += ["2", "--patience", "0", "--num-records", "120", "--output", tmp_path]
    code, captured = _run([*args, "--bootstrap-resamples", "0"], capsys)
    assert code == 0
    assert "Epoch 2/2" in captured.out
    assert "━" not in captured.out  # no per-step progress bar in a log file
    # No resampling asked for: point estimates, no interval.
    results = _read(tmp_path / "linear-eval_results.json")
    assert results["bootstrap"] is None
    assert results["test_macro_auroc"]["low"] is None
    assert 0.0 <= results["test_macro_auprc"]["value"] <= 1.0
    assert "no interval: --bootstrap-resamples 0" in captured.out


# ----------------------------------------------------------------------------
# Evaluate, embed, predict
# ----------------------------------------------------------------------------


def test_evaluate_uses_the_model_standardisation(trained, tmp_path, capsys):
    args = ["evaluate", "--model", trained["classifier"], "--num-records", "120"]
    code, _ = _run([*args, "--split", "test", "--output", tmp_path / "t"], capsys)
    assert code == 0
    evaluated = _read(tmp_path / "t" / "evaluate_results.json")
    # Refitting the statistics on the test records would change the scores.
    np.testing.assert_allclose(
        evaluated["macro_auc"], trained["results"]["test_macro_auc"], atol=1e-6
    )
    code, _ = _run([*args, "--split", "all", "--output", tmp_path / "a"], capsys)
    assert code == 0
    assert _read(tmp_path / "a" / "evaluate_results.json")["records"] == 120


@ONE_PASS
def test_evaluate_bootstrap_flags(trained, tmp_path, capsys):
    args = ["evaluate", "--model", trained["classifier"], "--num-records", "120"]
    args += ["--bootstrap-resamples", "300", "--bootstrap-seed", "5"]
    code, captured = _run([*args, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    results = _read(tmp_path / "evaluate_results.json")
    _assert_intervals(results, prefix="", num_resamples=300, seed=5)
    line = next(x for x in captured.out.splitlines() if "AUROC" in x)
    low, high = results["macro_auroc"]["low"], results["macro_auroc"]["high"]
    assert f"[{low:.4f}, {high:.4f}]" in line
    assert "95% bootstrap CI over 12 records, 300 resamples, seed 5" in line
    # The finetune run scored the same records with other resamples (seed 0,
    # 1000): same point, another interval.
    finetuned = trained["results"]["test_macro_auroc"]
    assert results["macro_auroc"]["value"] == pytest.approx(finetuned["value"])
    assert (low, high) != (finetuned["low"], finetuned["high"])


@ONE_PASS
def test_evaluate_maps_scp_classes_to_a_snomed_folder(
    trained, cinc_dir, tmp_path, capsys
):
    args = ["evaluate", "--model", trained["classifier"], "--data", cinc_dir]
    code, captured = _run([*args, "--split", "all", "--output", tmp_path], capsys)
    assert code == 0, captured.err
    results = _read(tmp_path / "evaluate_results.json")
    # The synthetic classes are SCP codes. NORM and IMI have no SNOMED
    # counterpart in the packaged mapping; AFIB and CLBBB map to codes that
    # label some of the CinC records. Every model class is either scored or
    # reported.
    unmatched = set(results["classes_without_counterpart"])
    scored = set(results["per_class_auc"])
    assert {"NORM", "IMI"} <= unmatched and {"AFIB", "CLBBB"} <= scored
    assert not unmatched & scored
    classes = keras.saving.load_model(trained["classifier"]).class_names
    assert unmatched | scored == set(classes)
    assert results["records"] == 156


@ONE_PASS
def test_embed_all_records_with_window_in_seconds(trained, tmp_path, capsys):
    args = ["embed", "--checkpoint", trained["checkpoint"], "--num-records", "120"]
    code, _ = _run([*args, "--split", "all", "--output", tmp_path], capsys)
    assert code == 0
    archive = np.load(tmp_path / "embeddings.npz")
    assert archive["embeddings"].shape[0] == len(archive["record_ids"]) == 120
    assert np.isfinite(archive["embeddings"]).all()


@ONE_PASS
def test_embed_plot_draws_a_png(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = ["embed", "--checkpoint", trained["checkpoint"], "--num-records", "120"]
    code, captured = _run([*args, "--plot", "pca", "--output", tmp_path], capsys)
    assert code == 0
    png = tmp_path / "embeddings_pca.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_writes_one_row_per_record(
    trained, ptbxl_dir, tmp_path, capsys, monkeypatch
):
    _forbid_standardised_copies(monkeypatch)
    folder = tmp_path / "records"
    folder.mkdir()
    for ecg_id in ("00001", "00002", "00003"):
        # The 500 Hz files: the 100 Hz model resamples them.
        for suffix in (".hea", ".dat"):
            source = ptbxl_dir / "records500" / "00000" / f"{ecg_id}_hr{suffix}"
            os.symlink(source, folder / source.name)
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", trained["classifier"], "--data", folder]
    code, _ = _run([*args, "--output", out, "--threshold", "0.5"], capsys)
    assert code == 0
    frame = pd.read_csv(out)
    names = list(keras.saving.load_model(trained["classifier"]).class_names)
    assert list(frame["record_id"]) == ["00001_hr", "00002_hr", "00003_hr"]
    assert list(frame.columns) == [
        "record_id",
        *names,
        *(f"{n}_pred" for n in names),
    ]
    probabilities = frame[names].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_array_equal(
        frame[[f"{n}_pred" for n in names]].to_numpy(), probabilities >= 0.5
    )
    # Named as `predict --help` says.
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "`<class>_pred`" in " ".join(capsys.readouterr().out.split())
    # An existing output is kept unless --overwrite.
    code, captured = _run([*args, "--output", out], capsys)
    assert code == 2 and "--overwrite" in captured.err
    code, _ = _run([*args, "--output", out, "--overwrite"], capsys)
    assert code == 0
    assert list(pd.read_csv(out).columns) == ["record_id", *names]


def test_predict_explain_writes_a_plot_and_lead_shares_per_record(
    trained, ptbxl_dir, tmp_path, capsys
):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "records"
    for ecg_id in ("00001", "00002"):
        link_record(ptbxl_header(ptbxl_dir, ecg_id, 100), folder)
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", trained["classifier"], "--data", folder]
    args += ["--output", out, "--explain", "2", "--explain-steps", "4"]
    code, captured = _run(args, capsys)
    assert code == 0, captured.err
    frame = pd.read_csv(out)
    names = list(keras.saving.load_model(trained["classifier"]).class_names)
    ranks = [
        [f"explain_{r}_class", *(f"explain_{r}_{lead}" for lead in STANDARD_LEADS)]
        for r in (1, 2)
    ]
    assert list(frame.columns) == [
        "record_id",
        *names,
        *ranks[0],
        *ranks[1],
        "explain_plot",
    ]
    plots = tmp_path / "preds_explanations"
    assert sorted(p.name for p in plots.iterdir()) == ["00001_lr.png", "00002_lr.png"]
    for _, row in frame.iterrows():
        assert pathlib.Path(row["explain_plot"]).read_bytes()[:4] == b"\x89PNG"
        # The two most probable classes, in order (ties at float32 noise).
        first, second = (row[row[f"explain_{r}_class"]] for r in (1, 2))
        assert first >= second - 1e-6
        others = [
            row[n] for n in names if n not in (row[ranks[0][0]], row[ranks[1][0]])
        ]
        assert all(second >= p - 1e-6 for p in others)
        for columns in ranks:
            shares = row[columns[1:]].to_numpy(float)
            assert (shares >= 0).all() and abs(shares.sum() - 1.0) < 1e-5


@ONE_PASS
def test_predict_explain_checks_its_options_before_reading(trained, tmp_path, capsys):
    model = trained["classifier"]
    num_classes = keras.saving.load_model(model).num_classes
    # No record is read: --data does not even exist.
    args = ["predict", "--model", model, "--data", tmp_path / "none"]
    args += ["--output", tmp_path / "p.csv"]
    code, captured = _run([*args, "--explain", str(num_classes + 1)], capsys)
    _one_line_error(
        code,
        captured,
        f"--explain {num_classes + 1}: K must be between 1 and the model's "
        f"number of classes, {num_classes}",
    )
    code, captured = _run([*args, "--explain", "0"], capsys)
    _one_line_error(code, captured, "--explain 0: K must be between 1")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "old.png").write_bytes(b"")
    code, captured = _run([*args, "--explain", "1", "--explain-dir", plots], capsys)
    _one_line_error(code, captured, "already holds PNG files", "--overwrite")


# ----------------------------------------------------------------------------
# Clinical exports (GE MUSE / Philips Sierra XML, HL7 aECG, DICOM, EDF, SCP)
# ----------------------------------------------------------------------------

SUPERCLASSES = ["NORM", "MI", "STTC"]


def _standard_order(signal, names):
    index = {name.lower(): j for j, name in enumerate(names)}
    return signal[:, [index[name.lower()] for name in STANDARD_LEADS]]


@pytest.fixture(scope="module")
def clinical(tmp_path_factory, ptbxl_dir):
    """PTB-XL records 1-4 at 500 Hz as WFDB and as clinical exports, and a
    tiny 100 Hz classifier whose output is computable in numpy."""
    import wfdb

    from keras_ecg.models.ecg_classifier import ECGClassifier
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    root = tmp_path_factory.mktemp("clinical")
    every_format = root / "every_format"  # record 1, WFDB + each format
    every_format.mkdir()
    four = root / "four"  # records 1-4, one format each
    four.mkdir()
    signals = []
    for k, ecg_id in enumerate(("00001", "00002", "00003", "00004")):
        header = ptbxl_header(ptbxl_dir, ecg_id, 500)
        raw, fields = wfdb.rdsamp(str(header.with_suffix("")))
        signals.append(_standard_order(raw, fields["sig_name"]))
        fmt = ("GE MUSE XML", "SCP-ECG", "DICOM Waveform", "HL7 aECG")[k]
        write_export(fmt, four / f"{ecg_id}{EXPORTS[fmt][0][-4:]}", signals[-1], 500)
        if k == 0:
            link_record(header, every_format)
            for fmt, (name, _, _) in EXPORTS.items():
                write_export(fmt, every_format / name, signals[0], 500)
    stacked = np.concatenate(signals)
    preprocessor = ECGPreprocessor(100, mean=stacked.mean(0), std=stacked.std(0))
    inputs = keras.Input((None, 12))
    backbone = keras.Model(inputs, keras.layers.Dense(4, name="proj")(inputs))
    model = ECGClassifier(
        backbone,
        num_classes=3,
        preprocessor=preprocessor,
        class_names=SUPERCLASSES,
        label_set="superdiagnostic",
        label_vocabulary="scp_superdiagnostic",
    )
    model(np.zeros((1, 250, 12), "float32"))
    model.save(root / "classifier.keras")
    return {
        "every_format": every_format,
        "four": four,
        "classifier": root / "classifier.keras",
        "model": model,
    }


def _probability_bound(model, x, reference):
    """Largest change of the probabilities `x` can cause vs `reference`.

    Both are standardised records at the model's rate. The classifier is
    Dense(4) per time step, concat (max, mean) pooling, a dense head and a
    sigmoid (slope <= 1/4), and windows are averaged: a class moves by at most
    1/4 * sum_j (|W_max,j| + |W_mean,j|) * max_t |(x - reference)(t) @ K_j|.
    """
    kernel = model.backbone.get_layer("proj").get_weights()[0]
    head = model.head_denses[0].get_weights()[0]
    change = np.abs((x - reference) @ kernel).max(axis=0)
    weights = np.abs(head[:4]) + np.abs(head[4:])
    return 0.25 * change @ weights


def test_predict_on_clinical_exports_equals_predict_on_the_wfdb_original(
    clinical, tmp_path, capsys
):
    folder = clinical["every_format"]
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", clinical["classifier"], "--data", folder]
    code, captured = _run([*args, "--output", out], capsys)
    assert code == 0, captured.err
    # MUSE and SCP-ECG store 8 leads: the output says which were derived.
    assert (
        "III, aVR, aVL, aVF derived from two stored limb leads (Einthoven/"
        "Goldberger; the file does not store them) in 2 record(s): ecg.scp, "
        "muse.xml" in captured.out
    )
    frame = pd.read_csv(out).set_index("record_id")
    names = sorted(name for name, _, _ in EXPORTS.values())
    assert list(frame.index) == sorted(["00001_hr", *names])
    model = clinical["model"]
    preprocessor = model.preprocessor
    reference = preprocessor.prepare(folder / "00001_hr.hea").signals[0]
    expected = frame.loc["00001_hr", SUPERCLASSES].to_numpy(float)
    for name in names:
        x = preprocessor.prepare(folder / name).signals[0]
        # The inputs differ by the quantisation only: at most a few quanta
        # (<= 5 uV each, tests/data/ecg_formats_test.py bounds it per lead)
        # after resampling; a misread unit or lead would differ by mV.
        assert (np.abs(x - reference).max(0) * preprocessor.std <= 0.01).all()
        bound = _probability_bound(model, x, reference)
        difference = np.abs(frame.loc[name, SUPERCLASSES].to_numpy(float) - expected)
        # float32 inference adds ~1e-7.
        assert (difference <= bound + 1e-6).all(), (name, difference, bound)
    # One export on its own (the new user's `--data export.xml`).
    single = tmp_path / "single.csv"
    args = ["predict", "--model", clinical["classifier"], "--data"]
    code, captured = _run([*args, folder / "muse.xml", "--output", single], capsys)
    assert code == 0, captured.err
    alone = pd.read_csv(single)
    assert list(alone["record_id"]) == ["muse.xml"]
    np.testing.assert_allclose(
        alone[SUPERCLASSES].to_numpy(float)[0],
        frame.loc["muse.xml", SUPERCLASSES].to_numpy(float),
        atol=1e-6,
    )


@ONE_PASS
def test_predict_reports_bad_clinical_files_or_skips_them(clinical, tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    good = clinical["every_format"] / "muse.xml"
    shutil.copy(good, folder / "good.xml")
    data = good.read_bytes()
    (folder / "truncated.xml").write_bytes(data[: len(data) // 2])
    sierra = (clinical["every_format"] / "sierra.xml").read_text()
    # Without lead labels, a Sierra file's leads are the first
    # numberchannelsallocated of its STD-12 acquisition: I..aVF here, whose
    # precordial leads cannot be derived.
    six = sierra.replace('leadlabels="I II III aVR aVL aVF V1 V2 V3 V4 V5 V6"', "")
    six = six.replace("<numberchannelsallocated>12<", "<numberchannelsallocated>6<")
    (folder / "six_leads.xml").write_text(six)
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", clinical["classifier"], "--data", folder]
    code, captured = _run([*args, "--output", out], capsys)
    assert code == 2 and not out.exists()
    error, hint = captured.err.strip().splitlines()
    assert "six_leads.xml" in error and "missing lead(s) ['V1'," in error
    assert "--skip-bad-records" in hint
    skipped = r"skipped 2 unreadable record\(s\).*six_leads\.xml.*truncated\.xml"
    with pytest.warns(ECGDataWarning, match=skipped):
        code, captured = _run([*args, "--output", out, "--skip-bad-records"], capsys)
    assert code == 0, captured.err
    assert list(pd.read_csv(out)["record_id"]) == ["good.xml"]
    # A file given by name that is no ECG at all.
    (tmp_path / "notes.txt").write_text("no ECG in here\n")
    args = ["predict", "--model", clinical["classifier"], "--data"]
    out = tmp_path / "notes.csv"
    code, captured = _run([*args, tmp_path / "notes.txt", "--output", out], capsys)
    assert code == 2 and not out.exists()
    assert "record notes.txt" in captured.err
    assert "not a recognised ECG file" in captured.err


def test_evaluate_clinical_exports_with_labels_from_a_csv(clinical, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    folder = clinical["four"]
    ids = sorted(p.name for p in folder.iterdir())
    assert ids == ["00001.xml", "00002.scp", "00003.dcm", "00004.xml"]
    labels = tmp_path / "labels.csv"
    rows = ["NORM", "MI", "NORM;STTC", "STTC"]
    labels.write_text(
        "record_id,labels\n" + "".join(f"{i},{r}\n" for i, r in zip(ids, rows))
    )
    base = ["evaluate", "--model", clinical["classifier"], "--data", folder]
    base += ["--split", "all"]
    # Without labels: refused, saying why and what to pass.
    code, captured = _run([*base, "--output", tmp_path / "none"], capsys)
    assert code == 2
    assert "carry no PTB-XL or SNOMED CT labels; pass --labels" in captured.err
    args = [*base, "--labels", labels, "--output", tmp_path / "run"]
    code, captured = _run(args, capsys)
    assert code == 0, captured.err
    assert "derived from two stored limb leads" in captured.out
    results = _read(tmp_path / "run" / "evaluate_results.json")
    assert results["records"] == 4 and results["settings"]["labels"] == str(labels)
    # The same probabilities through predict, scored with scikit-learn.
    out = tmp_path / "preds.csv"
    predict = ["predict", "--model", clinical["classifier"], "--data", folder]
    assert _run([*predict, "--output", out], capsys)[0] == 0
    probabilities = pd.read_csv(out)[SUPERCLASSES].to_numpy()
    truth = np.array([[c in r.split(";") for c in SUPERCLASSES] for r in rows])
    per_class = {
        c: roc_auc_score(truth[:, j], probabilities[:, j])
        for j, c in enumerate(SUPERCLASSES)
    }
    assert results["per_class_auc"] == pytest.approx(per_class, abs=1e-6)
    assert results["macro_auc"] == pytest.approx(np.mean(list(per_class.values())))
    # A table without a row for every record is an input error.
    labels.write_text("record_id,labels\n00001.xml,NORM\n")
    code, captured = _run([*base, "--labels", labels, "--output", tmp_path / "x"])
    assert code == 2


@ONE_PASS
def test_embed_clinical_exports(trained, clinical, tmp_path, capsys):
    folder = clinical["every_format"]
    args = ["embed", "--checkpoint", trained["checkpoint"], "--data", folder]
    code, captured = _run([*args, "--split", "all", "--output", tmp_path], capsys)
    assert code == 0, captured.err
    archive = np.load(tmp_path / "embeddings.npz")
    names = sorted(name for name, _, _ in EXPORTS.values())
    assert list(archive["record_ids"]) == sorted(["00001_hr", *names])
    assert np.isfinite(archive["embeddings"]).all()


# ----------------------------------------------------------------------------
# Demo and tuning
# ----------------------------------------------------------------------------


def test_demo_prints_the_label_efficiency_table(tmp_path, capsys, monkeypatch):
    _forbid_standardised_copies(monkeypatch)
    args = ["demo", *TINY, "--epochs", "1", "--eval-epochs", "1"]
    args += ["--label-fractions", "0.2", "--output", tmp_path]
    code, captured = _run(args, capsys)
    assert code == 0
    assert "SYNTHETIC" in captured.out
    for name in ("pretrained, linear", "random init, linear", "from scratch"):
        assert f"| {name}" in captured.out or name in captured.out
    results = _read(tmp_path / "demo_results.json")
    row = results["results"][0]
    assert row["labelled records"] == 19  # 20% of 96 training records
    # The pretraining's logs and curves, and each classifier's log.
    _, rows = _csv_rows(tmp_path / "training_log.csv")
    assert len(rows) == 1
    assert (tmp_path / "training_curves.png").exists()
    assert "online_probe" in results
    assert len(list(tmp_path.glob("classifiers/19_records_*/training_log.csv"))) == 4
    assert all(0.0 <= v <= 1.0 for k, v in row.items() if k != "labelled records")
    assert np.isfinite(results["pretraining_gain_few_labels"])
    # Every test AUC has its interval; pretrained vs random init is paired.
    assert results["bootstrap"]["num_resamples"] == 1000
    for name, auroc in results["intervals"][0].items():
        if name != "labelled records":
            assert auroc["macro_auroc"]["value"] == pytest.approx(row[name])
            low, high = auroc["macro_auroc"]["low"], auroc["macro_auroc"]["high"]
            assert f"{row[name]:.4f} [{low:.4f}, {high:.4f}]" in captured.out
    differences = results["paired_differences"]
    assert [(d["a"], d["b"]) for d in differences] == [
        ("pretrained, linear", "random init, linear"),
        ("pretrained, finetune", "supervised from scratch"),
    ]
    for d in differences:
        expected = row[d["a"]] - row[d["b"]]
        assert d["macro_auroc"]["difference"] == pytest.approx(expected, abs=1e-9)
    assert "pretrained, finetune - supervised from scratch:" in captured.out


@ONE_PASS
def test_tune_runs_a_search_and_records_it(tmp_path, capsys, monkeypatch):
    _forbid_standardised_copies(monkeypatch)
    args = ["tune", "--method", "simclr", "--max-trials", "1", "--epochs", "1"]
    args += ["--tuner", "bayesian"]
    code, _ = _run([*args, *TINY, "--output", tmp_path], capsys)
    assert code == 0
    # Only the Bayesian oracle has the Gaussian process' alpha and beta.
    oracle = _read(tmp_path / "simclr_bayesian" / "oracle.json")
    assert {"alpha", "beta"} <= set(oracle)
    results = _read(tmp_path / "tune_results.json")
    assert results["num_trials"] == 1 and 0.0 <= results["best_score"] <= 1.0
    assert pathlib.Path(results["best_model_path"]).exists()
    # Each trial logs into its own trial folder and TensorBoard run.
    (trial_log,) = (tmp_path / "simclr_bayesian").glob("trial_*/training_log.csv")
    rows = pd.read_csv(trial_log)
    assert list(rows["epoch"]) == [1] and np.isfinite(rows["loss"]).all()
    assert (trial_log.parent / "training_curves.png").stat().st_size > 0
    (events,) = (tmp_path / "tensorboard" / "tune").glob("trial_*")
    assert events.name == trial_log.parent.name
    assert any(events.rglob("events.out.tfevents.*"))


@ONE_PASS
def test_cache_list_and_remove(tmp_path, capsys):
    folder = _wfdb_folder(tmp_path, 3, seed=4)
    cache = tmp_path / "cache"
    from keras_ecg.data.wfdb_folder import load_wfdb_folder

    load_wfdb_folder(folder, cache_dir=cache, workers=1)
    load_wfdb_folder(folder, cache_dir=cache, workers=1, sampling_rate=50)
    code, out = _run(["cache", "list", "--cache-dir", cache], capsys)
    assert code == 0
    lines = out.out.splitlines()
    assert lines[0] == f"2 cache entries in {cache}"
    keys = sorted(line.split()[0] for line in lines[1:])
    assert keys == sorted(p.stem for p in cache.glob("*.npy"))
    assert all(" complete " in line and " 3 records " in line for line in lines[1:])
    assert all(f"load_wfdb_folder {folder}" in line for line in lines[1:])
    # Keys or --all, not neither; an unknown key is an error naming it.
    assert _run(["cache", "remove", "--cache-dir", cache], capsys)[0] == 2
    code, out = _run(["cache", "remove", "--cache-dir", cache, "nokey"], capsys)
    assert code == 2 and "nokey" in out.err
    code, out = _run(["cache", "remove", "--cache-dir", cache, keys[0]], capsys)
    assert code == 0 and out.out.startswith("removed 1 cache entry, ")
    assert sorted(p.stem for p in cache.glob("*.npy")) == keys[1:]
    code, out = _run(["cache", "remove", "--cache-dir", cache, "--all"], capsys)
    assert code == 0 and list(cache.iterdir()) == []
    code, out = _run(["cache", "list", "--cache-dir", tmp_path / "nope"], capsys)
    assert code == 2 and "no such folder" in out.err


@ONE_PASS
def test_cache_commands_default_to_the_default_cache_folder(
    tmp_path, capsys, monkeypatch
):
    default = tmp_path / "user_cache"
    monkeypatch.setenv("KERAS_ECG_CACHE_DIR", str(default))
    # Before the first cached dataset the folder does not exist: no entries.
    code, out = _run(["cache", "list"], capsys)
    assert code == 0 and out.out.startswith(f"0 cache entries in {default}")
    from keras_ecg.data.wfdb_folder import load_wfdb_folder

    # A loader with no cache_dir caches in the default folder.
    load_wfdb_folder(_wfdb_folder(tmp_path, 2, seed=5), workers=1)
    code, out = _run(["cache", "list"], capsys)
    assert code == 0 and out.out.startswith(f"1 cache entry in {default}")
    code, out = _run(["cache", "remove", "--all"], capsys)
    assert code == 0 and out.out.startswith("removed 1 cache entry, ")
    assert list(default.glob("*.npy")) == []


# ----------------------------------------------------------------------------
# Presets: preset save / info, --init-from-preset
# ----------------------------------------------------------------------------

SMALL_PRETRAIN = ["--size", "tiny", "--num-records", "40", "--batch-size", "8"]


@pytest.fixture(scope="module")
def simclr_preset(trained, tmp_path_factory):
    """The tiny pretrained SimCLR of `trained`, saved by `preset save`."""
    folder = tmp_path_factory.mktemp("presets") / "simclr"
    run_dir = trained["checkpoint"].parent
    args = ["preset", "save", run_dir, folder, "--description", "tiny SimCLR"]
    assert cli.main([str(a) for a in args]) == 0
    return folder


def _numpy_weights(weights):
    return [keras.ops.convert_to_numpy(w) for w in weights]


def _assert_equal_weights(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def _assert_close_weights(actual, expected):
    # A step of lr 1e-12 moves a weight by ~1e-12; a wrong start by far more.
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-9)


def _one_line_error(code, captured, *expected):
    assert code == 2, captured.err
    assert captured.err.strip().count("\n") == 0, captured.err
    assert "Traceback" not in captured.err
    for text in expected:
        assert text in captured.err, captured.err


@ONE_PASS
def test_preset_save_of_a_pretrain_run_and_info(trained, simclr_preset, capsys):
    from keras_ecg import presets

    run_dir = trained["checkpoint"].parent
    metadata = _read(simclr_preset / "metadata.json")
    manifest = _read(run_dir / "manifest.json")
    assert metadata["method"] == "simclr" and metadata["size"] == "tiny"
    assert metadata["description"] == "tiny SimCLR"
    assert metadata["data_fingerprint"] == manifest["data"]["fingerprint"]
    run = metadata["training_run"]
    assert run["command"] == "pretrain" and run["settings"]["epochs"] == 1
    # No local paths in what may be published.
    assert "data" not in run["settings"] and "path" not in run["data"]
    assert run["data"]["source"] == "synthetic"
    model = presets.from_preset(simclr_preset)
    pretrained = keras.saving.load_model(trained["checkpoint"])
    _assert_equal_weights(
        _numpy_weights(model.weights), _numpy_weights(pretrained.weights)
    )
    assert model.preprocessor.get_config() == pretrained.preprocessor.get_config()

    code, captured = _run(["preset", "info", simclr_preset], capsys)
    assert code == 0
    lines = captured.out.splitlines()
    assert lines[0] == f"preset: {simclr_preset}"
    for expected in (
        "task: SimCLR (keras_ecg>SimCLR), ",
        "method: simclr",
        "size: tiny",
        "description: tiny SimCLR",
        "backbone: XResNet1D (keras_ecg>XResNet1D), "
        f"{metadata['parameter_count']:,} parameters",
        "preprocessing: 100 Hz, 12 leads (I, II, III, aVR, aVL, aVF, V1, V2, V3, "
        "V4, V5, V6), standardised per lead, 2.5 s windows, 1.25 s stride",
        "training run: keras-ecg pretrain",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    code, captured = _run(["preset", "info", simclr_preset, "--json"], capsys)
    assert code == 0
    info = json.loads(captured.out)
    assert info["task"]["class_name"] == "SimCLR"
    assert info["metadata"]["parameter_count"] == metadata["parameter_count"]


@ONE_PASS
def test_preset_save_of_a_finetune_run_is_the_classifier(trained, tmp_path, capsys):
    from keras_ecg import presets

    code, _ = _run(
        ["preset", "save", trained["classifier"].parent, tmp_path / "clf"], capsys
    )
    assert code == 0
    model = presets.from_preset(tmp_path / "clf")
    classifier = keras.saving.load_model(trained["classifier"])
    assert type(model).__name__ == "ECGClassifier"
    assert model.class_names == classifier.class_names
    metadata = _read(tmp_path / "clf" / "metadata.json")
    assert metadata["training_run"]["command"] == "finetune"
    assert "method" not in metadata  # the classifier is not a method model
    code, captured = _run(["preset", "info", tmp_path / "clf"], capsys)
    assert code == 0
    assert f"classes: {classifier.num_classes} (all): NORM," in captured.out


@ONE_PASS
def test_preset_save_refusals(trained, simclr_preset, tmp_path, capsys):
    run_dir = trained["checkpoint"].parent
    before = sorted(os.listdir(simclr_preset))
    code, captured = _run(["preset", "save", run_dir, simclr_preset], capsys)
    _one_line_error(code, captured, "already holds a preset; pass --overwrite")
    code, _ = _run(["preset", "save", run_dir, simclr_preset, "--overwrite"], capsys)
    assert code == 0 and sorted(os.listdir(simclr_preset)) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, captured = _run(["preset", "save", run_dir, foreign, "--overwrite"], capsys)
    _one_line_error(code, captured, "is not empty and holds no preset")
    assert os.listdir(foreign) == ["notes.txt"]
    code, captured = _run(["preset", "save", foreign, tmp_path / "p"], capsys)
    _one_line_error(code, captured, "not a keras-ecg run folder (no manifest.json)")
    code, captured = _run(["preset", "save", tmp_path / "nope", tmp_path / "p"], capsys)
    _one_line_error(code, captured, "nope: no such folder")
    unfinished = shutil.copytree(run_dir, tmp_path / "unfinished")
    manifest = _read(unfinished / "manifest.json")
    manifest["status"] = "running"
    (unfinished / "manifest.json").write_text(json.dumps(manifest))
    code, captured = _run(["preset", "save", unfinished, tmp_path / "p"], capsys)
    _one_line_error(code, captured, "its pretrain run is not finished")
    assert not (tmp_path / "p").exists()


@ONE_PASS
def test_preset_info_of_a_bad_handle_is_one_line(tmp_path, capsys):
    code, captured = _run(["preset", "info", tmp_path / "nope"], capsys)
    _one_line_error(code, captured, "keras-ecg preset info: error: preset ", "nope")
    code, captured = _run(["preset", "info", tmp_path], capsys)
    _one_line_error(code, captured, "metadata.json is missing")


@ONE_PASS
def test_preset_info_imports_no_framework(simclr_preset):
    command = [sys.executable, "-m", "keras_ecg.cli", "preset", "info"]
    process = subprocess.run(
        [*command, str(simclr_preset)],
        env=subprocess_env(PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    assert "task: SimCLR" in process.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in process.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "keras_ecg" in imported
    assert not imported & {"keras", "tensorflow", "jax", "torch", "numpy"}


def test_linear_eval_from_a_preset_keeps_its_backbone_and_preprocessing(
    simclr_preset, tmp_path, capsys
):
    from keras_ecg import presets

    args = ["linear-eval", "--init-from-preset", simclr_preset, "--eval-epochs", "1"]
    code, _ = _run([*args, "--num-records", "120", "--output", tmp_path], capsys)
    assert code == 0
    results = _read(tmp_path / "linear-eval_results.json")
    assert results["init_from_preset"] == str(simclr_preset)
    assert results["checkpoint"] is None
    classifier = keras.saving.load_model(tmp_path / "classifier.keras")
    backbone = presets.from_preset(simclr_preset, component="backbone")
    # Linear evaluation: the preset's encoder, frozen.
    _assert_equal_weights(
        _numpy_weights(classifier.backbone.weights), _numpy_weights(backbone.weights)
    )
    preprocessor = presets.from_preset(simclr_preset, component="preprocessor")
    assert classifier.preprocessor.get_config() == preprocessor.get_config()


def test_linear_eval_from_a_preset_without_statistics_keeps_mv(
    simclr_preset, tmp_path, capsys
):
    """A preset whose preprocessor has no statistics (a model trained on mV,
    e.g. a converted reference checkpoint) evaluates on unstandardised mV."""
    from keras_ecg import presets
    from keras_ecg.models import ECGPreprocessor

    model = presets.from_preset(simclr_preset)
    rate = model.preprocessor.sampling_rate
    bare = ECGPreprocessor(sampling_rate=rate, lead_names=model.preprocessor.lead_names)
    folder = tmp_path / "bare_preset"
    presets.save_to_preset(model, folder, preprocessor=bare)
    args = ["linear-eval", "--init-from-preset", folder, "--eval-epochs", "1"]
    out = tmp_path / "run"
    code, _ = _run([*args, "--num-records", "120", "--output", out], capsys)
    assert code == 0
    classifier = keras.saving.load_model(out / "classifier.keras")
    assert not classifier.preprocessor.standardizes


@ONE_PASS
def test_downstream_from_a_bad_preset_is_one_line(tmp_path, capsys):
    from keras_ecg.models.encoders import XResNet1D

    encoder = XResNet1D(block_depths=(1,), widths=(8,), stem_filters=(8,))
    encoder.save_to_preset(tmp_path / "bare")  # no preprocessor
    code, captured = _run(["preset", "info", tmp_path / "bare"], capsys)
    assert code == 0
    assert "task: none (a backbone only)" in captured.out.splitlines()
    assert "preprocessing: none saved" in captured.out.splitlines()
    for command in ("finetune", "linear-eval"):
        args = [command, "--init-from-preset", tmp_path / "bare"]
        code, captured = _run([*args, "--output", tmp_path / "out"], capsys)
        _one_line_error(code, captured, "preprocessor.json is missing")
        args = [command, "--init-from-preset", tmp_path / "missing"]
        code, captured = _run([*args, "--output", tmp_path / "out"], capsys)
        _one_line_error(code, captured, "--init-from-preset: preset ", "no such folder")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as info:
        cli.main(["finetune", "--checkpoint", "a.keras", "--init-from-preset", "p"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@ONE_PASS
def test_pretrain_continues_a_preset_of_the_same_method(
    simclr_preset, tmp_path, capsys
):
    from keras_ecg import presets

    args = ["pretrain", "--method", "simclr", "--init-from-preset", simclr_preset]
    args += ["--epochs", "1", "--lr", "1e-12", *SMALL_PRETRAIN, "--output", tmp_path]
    code, captured = _run(args, capsys)
    assert code == 0, captured.err
    assert "continuing the pretraining of the SimCLR of preset" in captured.out
    assert _read(tmp_path / "pretrain_results.json")["init_from_preset"] == str(
        simclr_preset
    )
    start = presets.from_preset(simclr_preset)
    model = keras.saving.load_model(tmp_path / "pretrained.keras")
    # lr 1e-12 (a learning rate must be > 0): every trained weight (encoder
    # and projection head) is the preset's, to float32 rounding.
    _assert_close_weights(
        _numpy_weights(model.trainable_weights), _numpy_weights(start.trainable_weights)
    )
    assert model.preprocessor.get_config() == start.preprocessor.get_config()


@ONE_PASS
def test_pretrain_starts_another_method_from_a_preset_backbone(
    simclr_preset, tmp_path, capsys
):
    from keras_ecg import presets

    args = ["pretrain", "--method", "byol", "--init-from-preset", simclr_preset]
    args += ["--epochs", "1", "--lr", "1e-12", *SMALL_PRETRAIN]
    code, captured = _run([*args, "--output", tmp_path / "byol"], capsys)
    assert code == 0, captured.err
    assert "initialising the byol encoder from the XResNet1D backbone" in captured.out
    backbone = presets.from_preset(simclr_preset, component="backbone")
    model = keras.saving.load_model(tmp_path / "byol" / "pretrained.keras")
    expected = _numpy_weights(backbone.trainable_weights)
    _assert_close_weights(_numpy_weights(model.encoder.trainable_weights), expected)
    # The target network started as a copy of those weights (an EMA of equal
    # values keeps them, up to float rounding).
    online = {id(w) for w in model.encoder.trainable_weights}
    target = [
        t
        for o, t in zip(model.encoder.weights, model.target_encoder.weights)
        if id(o) in online
    ]
    assert len(target) == len(expected)
    for t, e in zip(_numpy_weights(target), expected, strict=True):
        np.testing.assert_allclose(t, e, rtol=1e-6, atol=1e-7)
    # Another architecture cannot take these weights: one line, exit 2.
    args = ["pretrain", "--method", "cpc", "--init-from-preset", simclr_preset]
    code, captured = _run([*args, *SMALL_PRETRAIN, "--output", tmp_path / "c"], capsys)
    _one_line_error(code, captured, "is not the encoder of --method cpc")
    code, captured = _run(
        ["pretrain", "--method", "cpc", "--init-from-preset", tmp_path / "no"]
        + ["--output", tmp_path / "c"],
        capsys,
    )
    _one_line_error(code, captured, "--init-from-preset: preset ", "no such folder")


# --encoder
# ----------------------------------------------------------------------------


@ONE_PASS
def test_encoder_choices_are_the_factory_encoders():
    from keras_ecg.models import method_factory

    assert cli.ENCODERS == method_factory.ENCODERS
    parser = cli.build_parser()
    for command in ("pretrain", "demo", "tune"):
        args = parser.parse_args([command, "--method", "cpc", "--encoder", "s4"])
        assert args.encoder == "s4"
        assert parser.parse_args([command, "--method", "cpc"]).encoder is None


def test_pretrain_with_the_s4_encoder_records_it(tmp_path, capsys):
    args = ["pretrain", "--method", "simclr", "--encoder", "s4", "--epochs", "1"]
    code, captured = _run([*args, *TINY, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    assert "simclr (tiny, s4 encoder)" in captured.out
    for name in ("manifest.json", "pretrain_results.json"):
        assert _read(tmp_path / name)["settings"]["encoder"] == "s4"
    from keras_ecg.models.encoders import S4Encoder

    model = keras.saving.load_model(tmp_path / "pretrained.keras")
    assert isinstance(model.encoder, S4Encoder) and model.encoder.bidirectional


@ONE_PASS
def test_default_encoder_is_resolved_and_recorded(tmp_path, capsys):
    # No --encoder: the method's default, written into the manifest.
    args = ["linear-eval", "--random-init", "--method", "cpc", "--size", "tiny"]
    args += ["--num-records", "120", "--eval-epochs", "1", "--output", tmp_path]
    code, captured = _run(args, capsys)
    assert code == 0, captured.err
    assert _read(tmp_path / "linear-eval_results.json")["settings"]["encoder"] == "lstm"


@ONE_PASS
def test_random_init_cpc_with_s4_context_trains_from_scratch(tmp_path, capsys):
    args = ["finetune", "--random-init", "--method", "cpc", "--encoder", "s4"]
    args += ["--size", "tiny", "--num-records", "120", "--eval-epochs", "1"]
    code, captured = _run([*args, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    results = _read(tmp_path / "finetune_results.json")
    assert results["mode"] == "scratch" and results["settings"]["encoder"] == "s4"
    from keras_ecg.models.encoders import S4Encoder

    classifier = keras.saving.load_model(tmp_path / "classifier.keras")
    context = classifier.backbone.layers[-1]
    assert isinstance(context, S4Encoder) and not context.bidirectional


@ONE_PASS
def test_jepa_with_the_s4_encoder_pretrains_and_random_inits(tmp_path, capsys):
    from keras_ecg.models.encoders import S4TokenEncoder

    args = ["pretrain", "--method", "jepa", "--encoder", "s4", "--epochs", "1"]
    code, captured = _run([*args, *TINY, "--output", tmp_path / "pre"], capsys)
    assert code == 0, captured.err
    assert "pretraining jepa (tiny, s4 encoder)" in captured.out
    assert _read(tmp_path / "pre" / "manifest.json")["settings"]["encoder"] == "s4"
    model = keras.saving.load_model(tmp_path / "pre" / "pretrained.keras")
    assert isinstance(model.encoder, S4TokenEncoder) and model.encoder.bidirectional
    assert isinstance(model.backbone, S4TokenEncoder)
    for command, mode in (("linear-eval", "linear"), ("finetune", "scratch")):
        args = [command, "--random-init", "--method", "jepa", "--encoder", "s4"]
        args += ["--size", "tiny", "--num-records", "120", "--eval-epochs", "1"]
        code, captured = _run([*args, "--output", tmp_path / command], capsys)
        assert code == 0, captured.err
        results = _read(tmp_path / command / f"{command}_results.json")
        assert results["mode"] == mode and results["settings"]["encoder"] == "s4"
        classifier = keras.saving.load_model(tmp_path / command / "classifier.keras")
        assert isinstance(classifier.backbone, S4TokenEncoder)
        assert bool(classifier.backbone.trainable_weights) == (mode == "scratch")


@ONE_PASS
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["pretrain", "--method", "cpc", "--encoder", "xresnet1d"],
            "--encoder xresnet1d: Encoder 'xresnet1d' does not fit method 'cpc'",
        ),
        (
            ["linear-eval", "--random-init", "--method", "simclr", "--encoder", "lstm"],
            "--encoder lstm: Encoder 'lstm' does not fit method 'simclr'",
        ),
        (
            ["tune", "--method", "byol", "--encoder", "lstm"],
            "--encoder lstm: Encoder 'lstm' does not fit method 'byol'",
        ),
        (
            ["demo", "--method", "swav", "--encoder", "lstm"],
            "--encoder lstm: Encoder 'lstm' does not fit method 'swav'",
        ),
        (
            ["pretrain", "--method", "jepa", "--encoder", "xresnet1d"],
            "--encoder xresnet1d: Encoder 'xresnet1d' does not fit method 'jepa'",
        ),
    ],
)
def test_encoder_the_method_cannot_use_is_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    tiny = ["--size", "tiny", "--num-records", "120"]
    code, captured = _run([*args, *tiny, "--output", out], capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert not out.exists()


@ONE_PASS
def test_checkpoint_architecture_wins_over_encoder(trained, tmp_path, capsys):
    base = ["linear-eval", "--checkpoint", trained["checkpoint"], "--num-records"]
    base += ["120", "--eval-epochs", "1", "--patience", "0"]
    out = tmp_path / "refused"
    code, captured = _run([*base, "--encoder", "s4", "--output", out], capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "--encoder s4: --checkpoint" in lines[0]
    assert "has the xresnet1d encoder" in lines[0]
    assert not out.exists()
    # Naming the checkpoint's own encoder is accepted and recorded.
    out = tmp_path / "same"
    code, captured = _run([*base, "--encoder", "xresnet1d", "--output", out], capsys)
    assert code == 0, captured.err
    assert _read(out / "linear-eval_results.json")["settings"]["encoder"] == "xresnet1d"


@ONE_PASS
def test_demo_pretrains_and_builds_its_baselines_with_the_encoder(
    tmp_path, capsys, monkeypatch
):
    from keras_ecg.models.encoders import S4Encoder

    demo = importlib.import_module("keras_ecg.jobs.demo")

    backbones = []

    def score(backbone, train, val, test, *args, **kwargs):
        backbones.append(backbone)
        labels = test.labels
        scores = np.random.default_rng(len(backbones)).random(labels.shape)
        trained = np.ones(labels.shape[1], bool)
        return {"test_scores": scores, "trained_classes": trained}, {
            "test_macro_auc": 0.5
        }

    # The classifiers themselves are tested elsewhere: record the backbones.
    monkeypatch.setattr(demo, "train_and_score", score)
    args = ["demo", "--encoder", "s4", *TINY, "--epochs", "1"]
    args += ["--bootstrap-resamples", "0"]
    code, captured = _run([*args, "--label-fractions", "0.2", "--output", tmp_path])
    assert code == 0
    assert len(backbones) == 4
    assert all(isinstance(b, S4Encoder) for b in backbones)
    results = _read(tmp_path / "demo_results.json")
    assert results["settings"]["encoder"] == "s4"
    # --bootstrap-resamples 0: point differences, no interval.
    assert results["bootstrap"] is None
    assert all(d["macro_auroc"]["low"] is None for d in results["paired_differences"])


@ONE_PASS
def test_tune_searches_the_s4_space(tmp_path, capsys):
    args = ["tune", "--method", "simclr", "--encoder", "s4", "--max-trials", "1"]
    code, captured = _run([*args, "--epochs", "1", *TINY, "--output", tmp_path])
    assert code == 0
    results = _read(tmp_path / "tune_results.json")
    assert results["settings"]["encoder"] == "s4"
    hyperparameters = results["best_hyperparameters"]
    assert {"s4_d_model", "s4_num_layers", "s4_d_state", "s4_dropout"} <= set(
        hyperparameters
    )
    assert "encoder_width" not in hyperparameters
    from keras_ecg.models.encoders import S4Encoder

    model = keras.saving.load_model(results["best_model_path"])
    assert isinstance(model.encoder, S4Encoder)
    assert model.encoder.d_model == hyperparameters["s4_d_model"]
    assert (tmp_path / "simclr_s4_random").is_dir()


# ----------------------------------------------------------------------------
# Run logs, training curves and the online probe
# ----------------------------------------------------------------------------


def _csv_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_run_folders_hold_csv_tensorboard_and_curves(trained):
    root = trained["checkpoint"].parent.parent
    # The fixture's pretraining: 1 epoch; its finetuning: LP-FT, 1 + 1 epochs.
    for folder, epochs, train_only in (("pretrain", 1, True), ("ft", 2, False)):
        run = root / folder
        header, rows = _csv_rows(run / "training_log.csv")
        assert header[:1] == ["epoch"] and "loss" in header
        assert [r["epoch"] for r in rows] == [str(e + 1) for e in range(epochs)]
        assert all(np.isfinite(float(r["loss"])) for r in rows)
        name = "pretrain" if folder == "pretrain" else "finetune"
        values = scalars(str(run / "tensorboard" / name))
        assert sorted(values["epoch_loss"]) == list(range(1, epochs + 1))
        assert (run / "training_curves.png").stat().st_size > 5_000
        if train_only:
            # The online probe ran inside `fit` (at the last epoch).
            assert 0.0 <= float(rows[-1]["probe_macro_auc"]) <= 1.0
            assert "epoch_probe_macro_auc" in values
        else:
            # The epoch-selection AUC downstream, a TensorBoard validation run.
            assert all(0.0 <= float(r["val_macro_auc"]) <= 1.0 for r in rows)
            assert (run / "tensorboard" / name / "validation").is_dir()


@ONE_PASS  # the probe inside `fit` under every backend: the `trained` fixture
def test_online_probe_logs_its_auc_and_keeps_the_best_epoch(tmp_path, capsys):
    from keras_ecg.evaluation.linear_probe import extract_embeddings
    from keras_ecg.evaluation.linear_probe import knn_probe
    from keras_ecg.jobs.common import load_data
    from keras_ecg.jobs.common import split_data
    from keras_ecg.online_probe import probe_split

    flags = ["--probe-every", "1", "--probe-records", "30"]
    flags += ["--probe-val-fraction", "0.5", "--keep", "best-probe", "--verbose"]
    folds = ["--train-folds", "1-6", "--val-folds", "7-9"]
    args = ["pretrain", "--method", "simclr", "--epochs", "2", *TINY, *folds]
    code, captured = _run([*args, *flags, "--output", tmp_path], capsys)
    assert code == 0, captured.err
    assert "online probe: knn fitted on 15 and scored on 15 labelled records" in (
        captured.out
    )
    assert "online probe cost:" in captured.out
    header, rows = _csv_rows(tmp_path / "training_log.csv")
    aucs = [float(r["probe_macro_auc"]) for r in rows]
    assert len(aucs) == 2 and all(0.0 <= a <= 1.0 for a in aucs)
    values = scalars(str(tmp_path / "tensorboard" / "pretrain"))
    assert values["epoch_probe_macro_auc"] == pytest.approx({1: aucs[0], 2: aucs[1]})
    results = _read(tmp_path / "pretrain_results.json")
    probe = results["online_probe"]
    assert probe["macro_auc"] == pytest.approx(aucs)
    assert probe["kept_epoch"] == 1 + int(np.argmax(aucs))
    assert results["settings"]["keep"] == "best-probe"
    # The saved encoder is the best probe epoch's: the probe rerun on it by
    # hand gives that epoch's AUC.
    model = keras.saving.load_model(tmp_path / "pretrained.keras")
    namespace = cli.build_parser().parse_args([*args, *folds])
    _, val, _ = split_data(namespace, load_data(namespace, 100, progress=False))
    train_records, val_records = probe_split(val, 30, 0.5, seed=0)
    embed = dict(
        window_seconds=2.5, stride_seconds=7.5, standardizer=model.preprocessor
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auc = knn_probe(
            extract_embeddings(model.backbone, train_records, **embed),
            train_records.labels,
            extract_embeddings(model.backbone, val_records, **embed),
            val_records.labels,
        )["macro_auc"]
    assert auc == pytest.approx(max(aucs), abs=1e-5)


@ONE_PASS
def test_online_probe_refusals_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--method", "simclr", *TINY, "--output", out]
    code, captured = _run([*args, "--keep", "best-probe", "--probe", "none"], capsys)
    _one_line_error(code, captured, "--keep best-probe needs the online probe")
    assert not out.exists()
    folder = _wfdb_folder(tmp_path, 6, seed=1)  # records without labels
    code, captured = _run([*args, "--data", folder, "--keep", "best-probe"], capsys)
    _one_line_error(code, captured, "carry no labels")
    assert not out.exists()
    for flag, value in (("--probe-every", "0"), ("--probe-val-fraction", "1")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(a) for a in args] + [flag, value])
        assert exit_info.value.code == 2
        assert "must be" in capsys.readouterr().err
