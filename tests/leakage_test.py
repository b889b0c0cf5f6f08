"""Leakage guards through the command line: overlapping splits are refused
before anything is written, and a model pretrained on a CinC-layout copy of
PTB-XL records reports (and under --strict refuses) them when tested on the
PTB-XL originals.

CLI logic: runs in the tensorflow pass only (the checks touch no model).
"""

import json

import keras
import pandas as pd
import pytest

from keras_ecg import cli
from keras_ecg.data.fingerprints import load_fingerprints
from tests.data.cinc_layout import write_cinc_copy
from tests.models.record_helpers import link_record

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="CLI logic: runs in the tensorflow pass",
)


def _run(args, capsys):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def _read(path):
    with open(path) as f:
        return json.load(f)


def _one_line_error(code, captured, *expected):
    assert code == 2, captured.err
    assert captured.err.strip().count("\n") == 0, captured.err
    assert "Traceback" not in captured.err
    for text in expected:
        assert text in captured.err, captured.err


# Every command with fold flags, with what else it needs to start.
COMMANDS = {
    "demo": [],
    "pretrain": ["--method", "simclr"],
    "linear-eval": ["--random-init"],
    "finetune": ["--checkpoint", "absent.keras"],
    "evaluate": ["--model", "absent.keras"],
    "embed": ["--checkpoint", "absent.keras"],
    "tune": ["--method", "simclr"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_overlapping_folds_stop_every_command_before_anything_is_written(
    command, tmp_path, capsys
):
    out = tmp_path / "run"
    cases = [
        (
            ["--val-folds", "9", "--test-folds", "9"],
            "--val-folds 9 and --test-folds 9 share fold 9: their records would be "
            "used to select the epochs and then scored; choose disjoint folds.",
        ),
        (
            ["--train-folds", "1-8", "--val-folds", "8"],
            "--train-folds 1-8 and --val-folds 8 share fold 8",
        ),
        (
            ["--train-folds", "1-7,9,10", "--val-folds", "8", "--test-folds", "9,10"],
            "--train-folds 1-7,9-10 and --test-folds 9-10 share folds 9-10: their "
            "records would be trained on and then scored",
        ),
        (
            ["--val-fraction", "0.6", "--test-fraction", "0.5"],
            "--val-fraction 0.6 and --test-fraction 0.5 add up to 1.1",
        ),
    ]
    for flags, message in cases:
        args = [command, *COMMANDS[command], *flags, "--output", out]
        code, captured = _run(args, capsys)
        _one_line_error(code, captured, f"keras-ecg {command}: error: {message}")
        assert captured.out == ""  # refused before the run's header
        assert not out.exists()


def test_label_fractions_outside_0_1_are_refused(tmp_path, capsys):
    args = ["demo", "--label-fractions", "0.1", "1.5", "--output", tmp_path / "d"]
    code, captured = _run(args, capsys)
    _one_line_error(code, captured, "--label-fractions 1.5: expected a share in (0, 1]")
    assert not (tmp_path / "d").exists()


# PTB-XL records (with 500 Hz files, for the CinC copies) of the small
# PTB-XL folder the downstream runs read: per fold, normal ECGs and ECGs with
# a diagnostic finding (so that val and test have both for a macro AUC).
FOLDS = {**{fold: (3, 2) for fold in range(1, 8)}, 8: (2, 2), 9: (2, 2)}
FINDINGS = "IMI|ASMI|AMI|LVH|NDT|CLBBB|CRBBB|IRBBB|LAFB|ISC_"
LABELS = ["--label-set", "superdiagnostic"]
SPLIT = ["--train-folds", "1-7", "--val-folds", "8", "--test-folds", "9"]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory, ptbxl_dir):
    """A small PTB-XL folder (links to the shared records), a CinC-layout
    copy of 3 of its test records and 2 training records, and a tiny SimCLR
    pretrained on that copy through the CLI."""
    root = tmp_path_factory.mktemp("leaky")
    database = pd.read_csv(ptbxl_dir / "ptbxl_database.csv", index_col="ecg_id")
    on_disk = {int(p.stem[:5]) for p in (ptbxl_dir / "records500").glob("*/*_hr.hea")}
    database = database[database.index.isin(on_disk)]
    normal = database["scp_codes"].str.contains("'NORM'")
    finding = ~normal & database["scp_codes"].str.contains(FINDINGS)
    chosen = pd.concat(
        part[part["strat_fold"] == fold].head(count)
        for fold, counts in FOLDS.items()
        for part, count in zip((database[normal], database[finding]), counts)
    ).sort_index()
    ptbxl = root / "ptbxl"
    ptbxl.mkdir()
    chosen.to_csv(ptbxl / "ptbxl_database.csv")
    (ptbxl / "scp_statements.csv").symlink_to(ptbxl_dir / "scp_statements.csv")
    for name in chosen["filename_lr"]:
        header = ptbxl_dir / f"{name}.hea"
        link_record(header, ptbxl / header.parent.relative_to(ptbxl_dir))
    test_ids = list(chosen.index[chosen["strat_fold"] == 9])
    train_ids = list(chosen.index[chosen["strat_fold"] == 1])
    copied = test_ids[:3] + train_ids[:2]
    for ecg_id in copied:
        write_cinc_copy(ptbxl_dir, ecg_id, root / "cinc")
    # Pretrained on every record of the copy (no val / test fractions).
    args = ["pretrain", "--method", "simclr", "--size", "tiny", "--epochs", "1"]
    args += ["--data", root / "cinc", "--batch-size", "5"]
    args += ["--val-fraction", "0", "--test-fraction", "0"]
    assert cli.main([str(a) for a in [*args, "--output", root / "pre"]]) == 0
    return {
        "root": root,
        "ptbxl": ptbxl,
        "checkpoint": root / "pre" / "pretrained.keras",
        "seen_test_ids": [str(i) for i in test_ids[:3]],
        "copied": [f"HR{i:05d}" for i in copied],
    }


def test_pretraining_keeps_the_fingerprints_of_its_records(leaky):
    results = _read(leaky["root"] / "pre" / "pretrain_results.json")
    sidecar = leaky["root"] / "pre" / "pretrained.fingerprints.npz"
    assert results["record_fingerprints"] == {
        "file": str(sidecar),
        "records": 5,
        "complete": True,
    }
    sets = load_fingerprints(sidecar)
    assert set(sets) == {"pretraining"}
    assert sets["pretraining"].record_ids == sorted(leaky["copied"])
    assert results["split"]["by"] == "fractions"
    assert results["split"]["records"] == {"train": 5, "val": 0, "test": 0}


def test_a_cinc_copy_seen_in_pretraining_is_reported_and_refused(
    leaky, tmp_path, capsys
):
    common = ["--data", leaky["ptbxl"], *LABELS, *SPLIT]
    seen = leaky["seen_test_ids"]
    pair = f"{seen[0]} = HR{int(seen[0]):05d}"
    # --strict: one line, before anything is written.
    args = ["linear-eval", "--checkpoint", leaky["checkpoint"], *common, "--strict"]
    code, captured = _run([*args, "--output", tmp_path / "strict"], capsys)
    _one_line_error(
        code,
        captured,
        f"--strict: 3 of 4 test records were seen in pretraining ({pair}, ",
        "drop --strict",
    )
    assert not (tmp_path / "strict").exists()
    # Without it: reported, in the output and the results.
    args = ["linear-eval", "--checkpoint", leaky["checkpoint"], *common]
    out = tmp_path / "le"
    code, captured = _run([*args, "--eval-epochs", "1", "--output", out], capsys)
    assert code == 0, captured.err
    assert (
        f"leakage check: 3 of 4 test records were seen in pretraining (e.g. {pair}, "
        in captured.out
    )
    assert "leakage check: 0 of 4 test records are train/val records" in captured.out
    leakage = _read(out / "linear-eval_results.json")["leakage"]
    assert leakage["records"] == 4 and leakage["scored"] == "test"
    assert leakage["pretraining"]["seen"] == 3
    assert [a for a, _ in leakage["pretraining"]["examples"]] == seen
    assert leakage["training"]["seen"] == 0
    split = _read(out / "linear-eval_results.json")["split"]
    assert split["by"] == "folds" and split["patients_in_two_parts"] == 0
    # The classifier keeps both sets; `evaluate` reports and refuses alike.
    sets = load_fingerprints(out / "classifier.fingerprints.npz")
    assert len(sets["pretraining"]) == 5 and len(sets["training"]) == 39
    args = ["evaluate", "--model", out / "classifier.keras", *common]
    code, captured = _run([*args, "--output", tmp_path / "ev"], capsys)
    assert code == 0, captured.err
    assert "leakage check: 3 of 4 test records were seen in pretraining" in captured.out
    leakage = _read(tmp_path / "ev" / "evaluate_results.json")["leakage"]
    assert (leakage["pretraining"]["seen"], leakage["training"]["seen"]) == (3, 0)
    code, captured = _run([*args, "--strict", "--output", tmp_path / "ev2"], capsys)
    _one_line_error(code, captured, "--strict: 3 of 4 test records were seen in")
    assert not (tmp_path / "ev2").exists()
    # A model without fingerprints (saved elsewhere): unknown, and --strict
    # has nothing to refuse.
    bare = tmp_path / "bare" / "classifier.keras"
    bare.parent.mkdir()
    bare.write_bytes((out / "classifier.keras").read_bytes())
    args = ["evaluate", "--model", bare, *common, "--strict"]
    code, captured = _run([*args, "--output", tmp_path / "ev3"], capsys)
    assert code == 0, captured.err
    assert (
        "leakage check: test records that were seen in pretraining: unknown "
        f"(--model {bare} has no record fingerprints)" in captured.out
    )
    leakage = _read(tmp_path / "ev3" / "evaluate_results.json")["leakage"]
    assert leakage["pretraining"]["seen"] is None


def test_a_preset_carries_the_fingerprints(leaky, tmp_path, capsys):
    preset = tmp_path / "preset"
    code, _ = _run(["preset", "save", leaky["root"] / "pre", preset], capsys)
    assert code == 0
    assert load_fingerprints(preset / "record_fingerprints.npz")["pretraining"]
    metadata = _read(preset / "metadata.json")
    assert metadata["record_fingerprints"] == {"pretraining": 5}
    code, captured = _run(["preset", "info", preset], capsys)
    assert "record fingerprints: 5 pretraining records" in captured.out
    args = ["finetune", "--init-from-preset", preset, "--data", leaky["ptbxl"]]
    args += [*LABELS, *SPLIT, "--strict", "--output", tmp_path / "ft"]
    code, captured = _run(args, capsys)
    _one_line_error(code, captured, "--strict: 3 of 4 test records were seen")
    assert not (tmp_path / "ft").exists()


def test_pretraining_from_a_preset_adds_to_its_fingerprints(leaky, tmp_path):
    from keras_ecg.data.fingerprints import RecordFingerprints
    from keras_ecg.data.sources import load_source
    from keras_ecg.jobs.leakage import save_pretraining_fingerprints

    class Start:  # what `pretrain --init-from-preset` starts from
        fingerprints = load_fingerprints(
            leaky["root"] / "pre" / "pretrained.fingerprints.npz"
        )

    data = load_source(str(leaky["ptbxl"]), label_set="superdiagnostic")
    info = save_pretraining_fingerprints(tmp_path, data, Start())
    assert info["records"] == 5 + len(data) and info["complete"]
    seen = load_fingerprints(tmp_path / "pretrained.fingerprints.npz")["pretraining"]
    assert seen.record_ids == sorted(leaky["copied"]) + data.record_ids
    # A preset without fingerprints: this run's records, marked incomplete.
    Start.fingerprints = None
    info = save_pretraining_fingerprints(tmp_path, data, Start())
    assert info["records"] == len(data) and not info["complete"]
    found = RecordFingerprints.from_dataset(data)
    assert load_fingerprints(info["file"])["pretraining"].find(found).min() >= 0
