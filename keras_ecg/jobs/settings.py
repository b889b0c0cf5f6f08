"""The jobs' settings: typed dataclasses, validated once, before any work.

Every job of `keras_ecg.jobs` takes one settings object (`PretrainSettings`,
`DownstreamSettings`, ...), built from the flag groups below. Its field names
are the CLI's flags (`batch_size` is `--batch-size`), its defaults the CLI's
defaults, and `validate()` checks every value with a one-line
`SettingsError` naming the flag and the valid range, e.g.
`--epochs must be >= 1 (got 0)`. The same object, minus the fields that do
not change a run's result, is the `settings` of the run's manifest.

This module imports neither Keras nor a framework.
"""

import dataclasses
import math
import numbers
import os
from typing import ClassVar

from keras_ecg import choices


class InputError(ValueError):
    """The user's input cannot be used; the message says why (exit code 2)."""


class SettingsError(InputError):
    """A setting out of its range, named by its CLI flag (exit code 2)."""


# Settings that do not change a run's result (where it goes, how it is shown).
NOT_SETTINGS = (
    "output",
    "overwrite",
    "command",
    "cache_dir",
    # Where the processes of a multi-process job run (a restart may move them).
    "job_addresses",
    "process_id",
    "collective_timeout_seconds",
    # Whether a leaky split is refused; a run it lets through is the same run.
    "strict",
    # How much the CLI prints.
    "verbose",
)

# The ranges of `Settings.RULES`: rule -> test of a number.
_RANGES = {
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "> 0": lambda v: v > 0,
    "in (0, 1)": lambda v: 0 < v < 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
}


def flag_of(name):
    """The CLI flag of a settings field: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def check_range(flag, value, rule, integer=False):
    """Raises `SettingsError` unless `value` is a finite number within `rule`
    (a key of `_RANGES`, e.g. `">= 1"`), and an int when `integer`."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if integer else numbers.Real
    ):
        raise SettingsError(f"{flag} must be {kind} {rule} (got {value!r})")
    if not math.isfinite(value) or not _RANGES[rule](value):
        shown = value if isinstance(value, numbers.Integral) else f"{value:g}"
        raise SettingsError(f"{flag} must be {rule} (got {shown})")


def check_choice(flag, value, allowed):
    if value not in allowed:
        raise SettingsError(
            f"{flag} must be one of {', '.join(map(str, allowed))} (got {value!r})"
        )


def check_file(flag, path):
    """An input file or folder that must exist (one line naming the flag)."""
    if not os.path.exists(path):
        raise SettingsError(f"{flag} {path}: file not found.")


def parse_folds(text, flag):
    """`"1-8"` -> `[1, ..., 8]`; `"9,10"` -> `[9, 10]`."""
    folds = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                folds.extend(range(low, high + 1))
            else:
                folds.append(int(part))
        except ValueError as error:
            raise SettingsError(
                f"{flag} {text!r}: expected fold numbers such as '1-8' or '9,10'."
            ) from error
    return folds


def check_split_flags(args):
    """Refuses fold flags that share a fold, fractions that overlap or leave
    no training records, and label fractions outside (0, 1] (settings
    without such flags pass).

    Raises:
        SettingsError: one line naming both flags and what they share.
    """
    from keras_ecg.data.splits import check_disjoint_folds
    from keras_ecg.data.splits import check_fractions

    if not hasattr(args, "train_folds"):
        return
    flags = {
        f"--{name}-folds": parse_folds(
            getattr(args, f"{name}_folds"), f"--{name}-folds"
        )
        for name in ("train", "val", "test")
    }
    for name in ("val_fraction", "test_fraction"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SettingsError(f"{flag_of(name)} must be a number (got {value!r})")
    try:
        check_disjoint_folds(flags)
        check_fractions(
            args.val_fraction,
            args.test_fraction,
            names=("--val-fraction", "--test-fraction"),
        )
    except ValueError as error:
        raise SettingsError(str(error)) from None
    for fraction in getattr(args, "label_fractions", None) or ():
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, numbers.Real)
            or not 0.0 < fraction <= 1.0
        ):
            shown = f"{fraction:g}" if isinstance(fraction, float) else fraction
            raise SettingsError(
                f"--label-fractions {shown}: expected a share in (0, 1]."
            )


def check_length(flag, seconds, data, what):
    """Refuses a crop or window longer than every record of `data` (which
    would leave no record to train or score on)."""
    from keras_ecg.data.durations import seconds_to_samples

    if not len(data):
        return
    longest = max(len(signal) for signal in data.signals)
    if seconds_to_samples(seconds, data.sampling_rate) > longest:
        raise SettingsError(
            f"{flag} must be > 0 and at most the longest {what} record, "
            f"{longest / data.sampling_rate:g} s (got {seconds:g})"
        )


@dataclasses.dataclass(kw_only=True)
class Settings:
    """The base of every job's settings.

    Subclasses (and the flag groups they inherit) declare `RULES` (field ->
    range, see `check_range`; None values are not checked, a list's items
    are), `CHOICES` (field -> allowed values) and `INPUT_FILES` (fields
    naming files or folders that must exist), and may add `_check_*`
    methods for checks across fields.
    """

    # The CLI command (`keras-ecg <command>`) this job runs.
    command: ClassVar[str] = ""
    RULES: ClassVar[dict] = {}
    CHOICES: ClassVar[dict] = {"backend": choices.BACKENDS}
    INPUT_FILES: ClassVar[tuple] = ()

    backend: str | None = None
    verbose: bool = False

    def _inherited(self, attribute):
        merged = {} if attribute != "INPUT_FILES" else ()
        for cls in reversed(type(self).__mro__):
            value = cls.__dict__.get(attribute)
            if value is None:
                continue
            merged = {**merged, **value} if isinstance(value, dict) else merged + value
        return merged

    def validate(self):
        """Checks every setting; raises `SettingsError` (one line naming the
        flag and its valid range) at the first bad one. Returns `self`."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for name, allowed in self._inherited("CHOICES").items():
            value = getattr(self, name)
            if value is not None:
                check_choice(flag_of(name), value, allowed)
        for name, rule in self._inherited("RULES").items():
            value = getattr(self, name)
            if value is None or value == "auto":
                continue
            integer = "int" in str(types[name]) and "float" not in str(types[name])
            for item in value if isinstance(value, (list, tuple)) else (value,):
                check_range(flag_of(name), item, rule, integer=integer)
        # Leakage guards before any path: a refused split is refused whatever
        # else is wrong.
        check_split_flags(self)
        for name in sorted(dir(type(self))):
            if name.startswith("_check_"):
                getattr(self, name)()
        for name in self._inherited("INPUT_FILES"):
            value = getattr(self, name)
            if value:
                check_file(flag_of(name), value)
        return self


@dataclasses.dataclass(kw_only=True)
class DataSettings(Settings):
    """`--data` and the split flags (folds, or fractions of a folder)."""

    RULES: ClassVar[dict] = {
        "sampling_rate": ">= 1",
        "num_records": ">= 1",
        "seed": ">= 0",
    }

    data: str = "synthetic"
    sampling_rate: int | None = None
    label_set: str = "all"
    num_records: int = 1200
    cache_dir: str | None = None
    skip_bad_records: bool = False
    train_folds: str = "1-8"
    val_folds: str = "9"
    test_folds: str = "10"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def _check_data(self):
        data = self.data
        if data != "synthetic" and not os.path.exists(str(data)):
            raise SettingsError(
                f"--data {str(data)!r} is neither 'synthetic' nor an existing "
                "folder or file."
            )


@dataclasses.dataclass(kw_only=True)
class ModelSettings(Settings):
    """`--size` of the encoder."""

    CHOICES: ClassVar[dict] = {"size": choices.SIZES}

    size: str = "small"


@dataclasses.dataclass(kw_only=True)
class DownstreamTrainingSettings(Settings):
    """How a classifier trains on an encoder (`train_downstream`)."""

    RULES: ClassVar[dict] = {
        "eval_epochs": ">= 1",
        "patience": ">= 0",
        "min_epochs": ">= 0",
        "eval_batch_size": ">= 1",
        "eval_lr": "> 0",
        "window_seconds": "> 0",
        "stride_seconds": "> 0",
    }

    eval_epochs: int | None = None
    patience: int | None = None
    min_epochs: int | None = None
    eval_batch_size: int = 128
    eval_lr: float | None = None
    window_seconds: float = 2.5
    stride_seconds: float | None = None


@dataclasses.dataclass(kw_only=True)
class FinetuneStageSettings(Settings):
    """The finetuning stage of `finetune` and `downstream` (LP-FT)."""

    RULES: ClassVar[dict] = {
        "linear_probe_epochs": ">= 0",
        "discriminative_lr": "> 0",
    }
    CHOICES: ClassVar[dict] = {"backbone_batch_norm": choices.BACKBONE_BATCH_NORM}

    linear_probe_epochs: int | None = None
    discriminative_lr: float | None = None
    backbone_batch_norm: str | None = None


@dataclasses.dataclass(kw_only=True)
class BootstrapSettings(Settings):
    """The bootstrap intervals of the test scores."""

    RULES: ClassVar[dict] = {"bootstrap_resamples": ">= 0", "bootstrap_seed": ">= 0"}

    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0


@dataclasses.dataclass(kw_only=True)
class OnlineProbeSettings(Settings):
    """The online probe of a pretraining (`keras_ecg.run_watch`)."""

    RULES: ClassVar[dict] = {
        "probe_every": ">= 1",
        "probe_records": ">= 0",
        "probe_val_fraction": "in (0, 1)",
    }
    CHOICES: ClassVar[dict] = {"probe": choices.PROBES, "keep": choices.KEEP}

    probe: str = "knn"
    probe_every: int | str = "auto"
    probe_records: int = 256
    probe_val_fraction: float = 0.5
    keep: str = "last"


@dataclasses.dataclass(kw_only=True)
class MultiProcessSettings(Settings):
    """Multi-process / multi-host data parallelism (docs/distributed.md)."""

    RULES: ClassVar[dict] = {
        "num_processes": ">= 1",
        "process_id": ">= 0",
        "collective_timeout_seconds": "> 0",
    }
    CHOICES: ClassVar[dict] = {"distributed": choices.DISTRIBUTED}

    distributed: str = "none"
    job_addresses: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    collective_timeout_seconds: float = 60.0
    synchronized_batch_norm: bool = False


def settings_of(settings):
    """Every setting that changes a run's result, as a JSON-able dict: what
    the manifest records (a settings dataclass, or an `argparse.Namespace`)."""
    if dataclasses.is_dataclass(settings):
        values = dataclasses.asdict(settings)
    else:
        values = vars(settings)
    return {
        key: value
        for key, value in sorted(values.items())
        if key not in NOT_SETTINGS and not callable(value)
    }


def settings_from_namespace(settings_class, namespace):
    """`settings_class` from the same-named attributes of an
    `argparse.Namespace` (attributes it lacks keep their defaults)."""
    values = {
        field.name: getattr(namespace, field.name)
        for field in dataclasses.fields(settings_class)
        if field.init and hasattr(namespace, field.name)
    }
    return settings_class(**values)
