"""Bad values typed at every command's flags: exit 2, one line, nothing made.

The cases are generated from `cli.build_parser()`: every flag with a numeric
type gets values outside the range its job's settings declare (`RULES` of
`keras_ecg.jobs.settings`), every input path a path that does not exist. A
new numeric flag is covered without anyone adding it here; one whose range
is declared nowhere fails `test_every_numeric_flag_has_cases`.

All in-process (`cli.main`), in the tensorflow pass only: the checks run
before any framework work.
"""

import argparse
import dataclasses
import os
import re

import keras
import pytest

from keras_ecg import cli
from keras_ecg import jobs

ONE_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="CLI logic: runs in the tensorflow pass",
)
pytestmark = ONE_PASS

# Values outside each range of `Settings.RULES` (ints only for int flags).
BAD_VALUES = {
    ">= 0": ["-1"],
    ">= 1": ["0", "-1"],
    "> 0": ["0", "-1", "nan", "inf"],
    "in (0, 1)": ["0", "1", "1.5", "nan"],
    "in (0, 1]": ["0", "1.5", "nan"],
    "in [0, 1)": ["1", "-0.5", "nan"],
    "in [0, 1]": ["-0.1", "1.5", "nan"],
}
# Numeric flags checked outside `RULES` (across flags, or by their command).
EXTRA_BAD_VALUES = {
    ("*", "val_fraction"): ["1", "-0.1", "nan"],
    ("*", "test_fraction"): ["1", "-0.1", "nan"],
    ("demo", "label_fractions"): ["0", "1.5"],
    ("predict", "explain"): ["0", "-1"],
    ("download", "sampling_rate"): ["-1", "250"],
}
# Settings fields naming a file or folder that must exist, per command.
INPUT_PATHS = ("data", "model", "checkpoint", "labels", "init_from_preset", "run_dir")
PATH_EXCEPTIONS = {
    # predict checks --data after the model and --explain (see
    # cli_test.test_predict_explain_checks_its_options_before_reading); the
    # generated cases pass a placeholder model, which is refused first.
    ("predict", "data"),
}


def _commands(parser, prefix=()):
    """`(command words, subparser)` of every leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix, parser


def _minimal(command, placeholder, tested):
    """Otherwise valid arguments of `command`, so that only the flag under
    test is wrong; `placeholder` is an existing file (never read)."""
    source = [] if tested in ("checkpoint", "init_from_preset") else ["--random-init"]
    return {
        "demo": [],
        "pretrain": ["--method", "simclr"],
        "linear-eval": source,
        "finetune": source,
        "downstream": ["--protocol", "linear", *source],
        "evaluate": [] if tested == "model" else ["--model", placeholder],
        "embed": [] if tested == "checkpoint" else ["--checkpoint", placeholder],
        "predict": ["--data", placeholder]
        + ([] if tested == "model" else ["--model", placeholder]),
        "tune": ["--method", "simclr"],
        "download": ["ptbxl"],
        "cache list": [] if tested == "cache_dir" else ["--cache-dir", "."],
        "convert": ["--from", "reference"],
        "preset save": ["PRESET_DIR"],
        "preset info": ["HANDLE"],
        "cache remove": ["--cache-dir", ".", "--all"],
    }[command]


def _settings_class(command):
    entry = jobs.COMMANDS.get(command)
    return entry[0] if entry else None


def _rules(command):
    settings_class = _settings_class(command)
    if settings_class is None:
        return {}
    merged = {}
    for cls in reversed(settings_class.__mro__):
        merged.update(cls.__dict__.get("RULES") or {})
    return merged


def _name(action):
    return action.option_strings[0] if action.option_strings else action.metavar


def generate_cases():
    """`(id, command, argv, flag name)` for every numeric flag and input path
    of every command, and the numeric flags seen (for the coverage check)."""
    cases, numeric = [], []
    for words, parser in _commands(cli.build_parser()):
        command = " ".join(words)
        rules = _rules(command)
        for action in parser._actions:
            if action.dest == "help":
                continue
            if action.type is not None:
                numeric.append((command, action.dest))
                values = list(
                    EXTRA_BAD_VALUES.get((command, action.dest))
                    or EXTRA_BAD_VALUES.get(("*", action.dest))
                    or BAD_VALUES.get(rules.get(action.dest), [])
                )
                if action.type is int or action.dest in ("explain",):
                    values = [v for v in values if v.lstrip("-").isdigit()]
                for value in values:
                    cases.append((command, action, value, action.dest))
            elif (
                action.dest in INPUT_PATHS
                or (command == "cache list" and action.dest == "cache_dir")
                or (command == "convert" and action.dest == "checkpoint")
            ) and (command, action.dest) not in PATH_EXCEPTIONS:
                cases.append((command, action, "MISSING", action.dest))
    return cases, numeric


CASES, NUMERIC = generate_cases()


def _argv(command, action, value, placeholder, output):
    argv = [*command.split(), *_minimal(command, placeholder, action.dest)]
    if value == "MISSING":
        value = os.path.join(os.path.dirname(placeholder), "missing", "nothing")
    if action.option_strings:
        argv += [action.option_strings[0], value]
    elif command == "preset save":
        argv = ["preset", "save", value, "PRESET_DIR"]
    else:
        argv.append(value)
    if command not in ("preset save", "preset info", "cache list", "cache remove"):
        if command == "download" or command == "convert":
            argv += ["--output", output]
        elif command == "predict":
            argv += ["--output", os.path.join(output, "p.csv")]
        else:
            argv += ["--output", output]
    return argv


def _tree(root):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, dirs, files in os.walk(root)
        for name in dirs + files
    )


def test_every_numeric_flag_has_cases():
    covered = {(command, action.dest) for command, action, _, _ in CASES}
    missing = [flag for flag in NUMERIC if flag not in covered]
    assert not missing, f"numeric flags without a declared range: {missing}"
    assert len(NUMERIC) > 80 and len(CASES) > 200, (len(NUMERIC), len(CASES))


def test_settings_fields_are_the_flags_of_their_command():
    """The manifest records the settings: their fields are the CLI's flags."""
    for words, parser in _commands(cli.build_parser()):
        settings_class = _settings_class(" ".join(words))
        if settings_class is None:
            continue
        dests = {a.dest for a in parser._actions if a.dest != "help"}
        fields = {f.name for f in dataclasses.fields(settings_class)}
        assert fields == dests, words
        defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
        for field in dataclasses.fields(settings_class):
            if field.default is not dataclasses.MISSING:
                assert field.default == defaults[field.name], (words, field.name)


@pytest.mark.parametrize(
    "command, action, value, dest",
    CASES,
    ids=[f"{c}-{_name(a)}={v}" for c, a, v, _ in CASES],
)
def test_bad_value_is_one_line_exit_2_and_creates_nothing(
    command, action, value, dest, tmp_path, monkeypatch, capsys
):
    placeholder = tmp_path / "placeholder.keras"
    placeholder.write_bytes(b"not a model")
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    argv = _argv(command, action, value, str(placeholder), str(tmp_path / "out"))
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own checks
        code = exit_info.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1, (argv, err)
    flag = re.escape(_name(action))
    assert re.search(rf"(?<![\w-]){flag}(?![\w-])", lines[0]), (argv, err)
    assert "Traceback" not in err
    assert _tree(tmp_path) == before, argv


# ----------------------------------------------------------------------------
# Checks that need the data, and failures after the run folder was created
# ----------------------------------------------------------------------------

TINY = ["--size", "tiny", "--num-records", "40"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["pretrain", "--method", "simclr", "--crop-seconds", "60"],
            "--crop-seconds must be > 0 and at most the longest training record, "
            "10 s (got 60)",
        ),
        (
            [
                "pretrain",
                "--method",
                "cpc",
                "--num-records",
                "40",
                "--batch-size",
                "-1",
            ],
            "--batch-size must be >= 1 (got -1)",
        ),
        (
            ["finetune", "--random-init", "--window-seconds", "12.5"],
            "--window-seconds must be > 0 and at most the longest training record, "
            "10 s (got 12.5)",
        ),
    ],
)
def test_lengths_beyond_the_records_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main([*argv, *TINY, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"keras-ecg {argv[0]}: error: {message}"
    assert not out.exists()


def test_a_run_failing_after_its_folder_was_created_removes_it(
    tmp_path, monkeypatch, capsys
):
    import importlib

    downstream = importlib.import_module("keras_ecg.jobs.downstream")

    def fail(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(downstream, "train_and_score", fail)
    out = tmp_path / "run"
    argv = ["finetune", "--random-init", *TINY, "--output", str(out)]
    with pytest.raises(RuntimeError, match="training failed"):
        cli.main(argv)
    assert not out.exists()
