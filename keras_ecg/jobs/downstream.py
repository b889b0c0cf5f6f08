"""`keras-ecg downstream` (and the `linear-eval` and `finetune` it shares
with): a classifier trained on an encoder with a protocol, scored with
bootstrap intervals.

```python
from keras_ecg import jobs

settings = jobs.DownstreamSettings(
    protocol="linear", checkpoint="runs/pretrain/pretrained.keras"
)
jobs.downstream(settings)
```
"""

import dataclasses
import os
from typing import ClassVar

import keras

from keras_ecg import choices
from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.data.durations import drop_short_records
from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.splits import split_summary
from keras_ecg.evaluation.downstream import DOWNSTREAM_DEFAULTS
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.evaluation.downstream import trained_class_mask
from keras_ecg.jobs.common import check_checkpoint_encoder
from keras_ecg.jobs.common import check_encoder
from keras_ecg.jobs.common import check_leads
from keras_ecg.jobs.common import describe_split
from keras_ecg.jobs.common import fit_verbosity
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import load_keras
from keras_ecg.jobs.common import load_preset_part
from keras_ecg.jobs.common import make_preprocessor
from keras_ecg.jobs.common import markdown_table
from keras_ecg.jobs.common import model_rate
from keras_ecg.jobs.common import open_preset
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import require_preprocessor
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import split_data
from keras_ecg.jobs.common import standardizer_of
from keras_ecg.jobs.leakage import leakage_report
from keras_ecg.jobs.leakage import refuse_seen_records
from keras_ecg.jobs.leakage import starting_fingerprints
from keras_ecg.jobs.settings import BootstrapSettings
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import DownstreamTrainingSettings
from keras_ecg.jobs.settings import FinetuneStageSettings
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import ModelSettings
from keras_ecg.jobs.settings import SettingsError
from keras_ecg.jobs.settings import check_length
from keras_ecg.models.method_factory import build_method
from keras_ecg.run_watch import TrainingWatch


@dataclasses.dataclass(kw_only=True)
class ClassifierSettings(
    DataSettings, ModelSettings, DownstreamTrainingSettings, BootstrapSettings
):
    """What `linear-eval`, `finetune` and `downstream` share: the encoder to
    start from (exactly one of `checkpoint`, `init_from_preset`,
    `random_init`), the data and the classifier's training."""

    CHOICES: ClassVar[dict] = {
        "method": choices.METHODS,
        "encoder": choices.ENCODERS,
    }
    INPUT_FILES: ClassVar[tuple] = ("checkpoint",)

    overwrite: bool = False
    checkpoint: str | None = None
    init_from_preset: str | None = None
    random_init: bool = False
    method: str = "simclr"
    encoder: str | None = None
    strict: bool = False

    def _check_source(self):
        given = [
            flag
            for flag, value in (
                ("--checkpoint", self.checkpoint),
                ("--init-from-preset", self.init_from_preset),
                ("--random-init", self.random_init),
            )
            if value
        ]
        if len(given) != 1:
            raise SettingsError(
                "exactly one of --checkpoint, --init-from-preset and "
                f"--random-init must be given (got {', '.join(given) or 'none'})"
            )


@dataclasses.dataclass(kw_only=True)
class DownstreamSettings(ClassifierSettings, FinetuneStageSettings):
    """The settings of `keras-ecg downstream` (its flags, same defaults)."""

    command: ClassVar[str] = "downstream"
    RULES: ClassVar[dict] = {"head_hidden_dims": ">= 1", "head_dropout": "in [0, 1)"}
    CHOICES: ClassVar[dict] = {"protocol": choices.PROTOCOLS}

    output: str = "runs/downstream"
    protocol: str
    random_init_baseline: bool = False
    head_hidden_dims: list[int] | None = None
    head_dropout: float | None = None


def run(settings):
    """Trains a classifier with `settings.protocol` on the encoder of
    `settings.checkpoint`, `settings.init_from_preset` or a fresh one
    (`random_init`); returns the results (also in
    `<command>_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, checkpoint, preset, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_downstream, settings)


def downstream_options(settings, mode):
    """`train_downstream` keyword arguments from the CLI flags."""
    options = dict(
        epochs=settings.eval_epochs,
        patience=settings.patience,
        min_epochs=settings.min_epochs,
        learning_rate=settings.eval_lr,
        window_seconds=settings.window_seconds,
        stride_seconds=settings.stride_seconds,
    )
    if mode in ("finetune", "scratch"):
        # `finetune --random-init` (scratch) honours these flags too.
        options.update(
            linear_probe_epochs=getattr(settings, "linear_probe_epochs", None),
            discriminative_lr=getattr(settings, "discriminative_lr", None),
            backbone_batch_norm=getattr(settings, "backbone_batch_norm", None),
        )
    hidden = getattr(settings, "head_hidden_dims", None)
    dropout = getattr(settings, "head_dropout", None)
    if hidden is not None:
        options["head_hidden_dims"] = tuple(hidden)
    if dropout is not None:
        if hidden is None:
            hidden = DOWNSTREAM_DEFAULTS[mode]["head_hidden_dims"]
        # fastai's head: half the rate before the hidden layers.
        options["dropout"] = (dropout / 2,) * len(hidden) + (dropout,)
    return options


def bootstrap_settings(settings):
    """`(num_resamples, seed)` of `--bootstrap-resamples/--bootstrap-seed`."""
    return (
        getattr(settings, "bootstrap_resamples", 0),
        getattr(settings, "bootstrap_seed", 0),
    )


def interval_fields(scored, prefix=""):
    """What a results JSON records of an `evaluate_records(bootstrap=...)`
    result: `<prefix>macro_auroc` and `<prefix>macro_auprc` as `{"value",
    "low", "high"}` (`None` bounds without a bootstrap) and `bootstrap`
    (its settings, or `None`)."""
    intervals = scored["bootstrap"]
    fields = {}
    for metric, value in (
        ("macro_auroc", scored["macro_auc"]),
        ("macro_auprc", scored["macro_auprc"]),
    ):
        entry = {"value": value, "low": None, "high": None}
        if intervals is not None:
            entry = dict(intervals[metric])
        fields[prefix + metric] = entry
    fields["bootstrap"] = None
    if intervals is not None:
        fields["bootstrap"] = {
            key: intervals[key]
            for key in (
                "num_resamples",
                "seed",
                "confidence",
                "num_classes",
                "interval",
                "resampling",
            )
            if key in intervals
        }
    return fields


def describe_intervals(fields, what, records, prefix=""):
    """One line: `test macro AUROC 0.8421 [0.8123, 0.8702], macro AUPRC ...
    (95% bootstrap CI over 245 records, 1000 resamples, seed 0)`."""
    from keras_ecg.evaluation.bootstrap import format_interval

    settings = fields["bootstrap"]
    values = []
    for metric, name in (("macro_auroc", "macro AUROC"), ("macro_auprc", "AUPRC")):
        entry = fields[prefix + metric]
        shown = (
            f"{entry['value']:.4f}"
            if settings is None
            else format_interval(entry, digits=4)
        )
        values.append(f"{name} {shown}")
    if settings is None:
        how = f"{records} records; no interval: --bootstrap-resamples 0"
    else:
        how = (
            f"{settings['confidence']:.0%} bootstrap CI over {records} records, "
            f"{settings['num_resamples']} resamples, seed {settings['seed']}"
        )
    return f"{what} {', '.join(values)} ({how})"


def paired_difference(labels, scores_a, scores_b, settings):
    """Paired bootstrap difference A - B of the macro AUROC and AUPRC on the
    same records (`keras_ecg.evaluation.paired_bootstrap`); point differences
    with `None` bounds when `--bootstrap-resamples 0`."""
    from keras_ecg.evaluation.bootstrap import macro_metrics
    from keras_ecg.evaluation.bootstrap import paired_bootstrap

    num_resamples, seed = bootstrap_settings(settings)
    if num_resamples:
        return paired_bootstrap(
            labels, scores_a, scores_b, num_resamples=num_resamples, seed=seed
        )
    a, b = macro_metrics(labels, scores_a), macro_metrics(labels, scores_b)
    return {
        metric: {
            "difference": a[metric] - b[metric],
            "low": None,
            "high": None,
            "excludes_zero": None,
        }
        for metric in ("macro_auroc", "macro_auprc")
    }


def describe_difference(difference, name):
    """One line for a `paired_difference` of the macro AUROC."""
    from keras_ecg.evaluation.bootstrap import format_interval

    entry = difference["macro_auroc"]
    if entry["low"] is None:
        return f"{name}: {entry['difference']:+.4f} macro AUROC (no interval)"
    verdict = "excludes 0" if entry["excludes_zero"] else "includes 0"
    return (
        f"{name}: {format_interval(entry, digits=4)} macro AUROC (paired "
        f"bootstrap, {difference['confidence']:.0%} CI {verdict})"
    )


def train_and_score(
    backbone,
    train,
    val,
    test,
    settings,
    mode,
    preprocessor=None,
    verbose=None,
    standardizer=None,
    callbacks=None,
):
    """Trains a classifier with the `mode` protocol; scores val and test.

    With `standardizer` the splits are in mV and standardised window by
    window in the input pipelines (no standardised copies). The test scores
    carry bootstrap intervals (`--bootstrap-resamples`, `--bootstrap-seed`);
    the per-record test probabilities are `result["test_scores"]` (for
    paired comparisons), over the classes of `result["trained_classes"]`.
    `callbacks` are passed to every stage's `fit` (e.g. a `TrainingWatch`'s
    loggers).
    """
    result = train_downstream(
        backbone,
        train,
        val,
        mode=mode,
        preprocessor=preprocessor,
        standardizer=standardizer,
        batch_size=min(settings.eval_batch_size, len(train)),
        seed=settings.seed,
        verbose=fit_verbosity() if verbose is None else verbose,
        callbacks=callbacks,
        **downstream_options(settings, mode),
    )
    row = {
        "best_epoch": result["best_epoch"] + 1,  # 1-based, as Keras prints
        "epochs_run": sum(s["epochs_run"] for s in result["stages"]),
        "val_macro_auc": result["best_val_auc"],
    }
    if len(test):
        num_resamples, seed = bootstrap_settings(settings)
        trained = trained_class_mask(train)
        scored = evaluate_records(
            result["model"],
            test,
            trained_classes=trained,
            window_seconds=result["options"]["window_seconds"],
            stride_seconds=result["options"]["stride_seconds"],
            standardizer=standardizer,
            bootstrap=num_resamples,
            bootstrap_seed=seed,
        )
        row["test_macro_auc"] = scored["macro_auc"]
        row.update(interval_fields(scored, prefix="test_"))
        row["test_per_class_auc"] = scored["per_class_auc"]
        row["untrained_classes"] = scored["untrained_classes"]
        row["excluded_classes"] = scored["excluded_classes"]
        result["test_scores"] = scored["scores"]
        result["trained_classes"] = trained
    return result, row


def downstream_protocol(settings):
    """The protocol of a downstream command: `--protocol`, else the command's."""
    if settings.command == "downstream":
        return settings.protocol
    if settings.command == "linear-eval":
        return "linear"
    return "scratch" if settings.random_init else "finetune"


# Flags of `downstream` that only some protocols use.
_PROTOCOL_FLAGS = (
    ("linear_probe_epochs", "--linear-probe-epochs", ("finetune",)),
    ("discriminative_lr", "--discriminative-lr", ("finetune", "scratch")),
    ("backbone_batch_norm", "--backbone-batch-norm", ("finetune", "scratch")),
)


def check_protocol_flags(settings, protocol):
    """Refuses `downstream` flags the protocol would silently ignore."""
    if settings.command != "downstream":
        return
    for attribute, flag, protocols in _PROTOCOL_FLAGS:
        if getattr(settings, attribute, None) is not None and protocol not in protocols:
            raise InputError(
                f"{flag} applies to --protocol {' or '.join(protocols)}, not "
                f"{protocol}."
            )
    if settings.random_init_baseline and (
        settings.random_init or protocol == "scratch"
    ):
        raise InputError(
            "--random-init-baseline: this run already starts from random "
            "weights; it needs --checkpoint or --init-from-preset and a "
            "protocol other than scratch."
        )


def fresh_backbone(backbone, seed):
    """A newly initialised backbone of `backbone`'s architecture, built from
    its config (no weights copied): the random-init counterpart of a
    pretrained encoder."""
    keras.utils.set_random_seed(seed)
    return keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(backbone)
    )


def run_downstream(settings):
    """Trains and scores a classifier (`linear-eval`, `finetune`,
    `downstream`) after `settings.validate()`; see `run`."""
    mode = downstream_protocol(settings)
    print_header(settings, f"{settings.command} ({mode})")
    check_protocol_flags(settings, mode)
    preprocessor, backbone, source, preset_path = None, None, None, None
    if settings.checkpoint:
        pretrained = load_keras(settings.checkpoint, "--checkpoint")
        preprocessor = require_preprocessor(
            pretrained, settings.checkpoint, "--checkpoint"
        )
        backbone = getattr(pretrained, "backbone", None)
        if backbone is None:
            raise InputError(
                f"--checkpoint {settings.checkpoint}: a {type(pretrained).__name__} "
                "has no `backbone`; pass a model saved by `keras-ecg pretrain`."
            )
        check_checkpoint_encoder(settings, pretrained)
        rate = model_rate(settings, preprocessor, "pretrained model")
        source = f"--checkpoint {settings.checkpoint}"
    elif getattr(settings, "init_from_preset", None):
        handle = settings.init_from_preset
        path = preset_path = open_preset(handle)
        # The preprocessing first: without it the backbone is not usable.
        preprocessor = load_preset_part(handle, path, "preprocessor")
        backbone = load_preset_part(handle, path, "backbone")
        rate = model_rate(settings, preprocessor, "preset")
        source = f"--init-from-preset {handle}"
    else:
        check_encoder(settings)
        rate = settings.sampling_rate or 100
    data = load_data(settings, rate)
    train, val, test = split_data(settings, data)
    describe_split(train, val, test)
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise InputError(
                f"no {name} records (folds {getattr(settings, name + '_folds')}) in "
                f"{settings.data}; choose --train-folds / --val-folds."
            )
    if data.labels is None or data.num_classes == 0:
        raise InputError(f"--data {settings.data} has no labels to train a classifier.")
    for name, split in (("training", train), ("val", val)):
        check_length("--window-seconds", settings.window_seconds, split, name)
    folder = run_folder(settings, settings.command, data)
    folder.check()
    if preprocessor is None:
        preprocessor = make_preprocessor(LeadStandardizer().fit(train), train)
    standardizer = standardizer_of(preprocessor)
    check_leads(settings, data, preprocessor)
    # The splits stay in mV (possibly views of a memory-mapped cache): the
    # pipelines standardise every crop and window on the fly.
    window = seconds_to_samples(settings.window_seconds, rate)
    train, val = (
        drop_short_records(d, window, f"{settings.window_seconds:g} s window")
        for d in (train, val)
    )
    if len(test):
        test = drop_short_records(test, window, f"{settings.window_seconds:g} s window")
    # Which test records the weights (or this run's train/val) already saw:
    # reported, and under --strict refused before anything is written.
    seen, source = starting_fingerprints(settings, preset_path)
    train_val = record_fingerprints.RecordFingerprints.from_dataset(train)
    if train_val is not None:
        train_val = train_val.concatenate(
            record_fingerprints.RecordFingerprints.from_dataset(val)
        )
    leakage = leakage_report(
        test,
        seen,
        train_val,
        "test",
        {"pretraining": source, "training": "this run"},
    )
    refuse_seen_records(settings, leakage)
    if backbone is None:
        keras.utils.set_random_seed(settings.seed)
        backbone = build_method(
            settings.method,
            size=settings.size,
            input_leads=train.num_leads,
            encoder=settings.encoder,
        ).backbone
    elif mode == "scratch":
        # Same architecture and preprocessing as the pretrained encoder, so
        # that only the starting weights differ.
        backbone = fresh_backbone(backbone, settings.seed)
        print(
            f"scratch: a freshly initialised {type(backbone).__name__}, the "
            f"architecture of {source}",
            flush=True,
        )
    baseline = getattr(settings, "random_init_baseline", False)
    baseline_backbone = fresh_backbone(backbone, settings.seed) if baseline else None
    folder.create()
    watch = TrainingWatch(
        settings,
        settings.output,
        settings.command,
        title=f"{settings.command} ({mode})",
    )
    print(watch.describe(), flush=True)
    result, row = train_and_score(
        backbone,
        train,
        val,
        test,
        settings,
        mode,
        preprocessor=preprocessor,
        standardizer=standardizer,
        callbacks=watch.callbacks,
    )
    watch.finish()
    model = result["model"]
    model.label_set = settings.label_set
    path = os.path.join(settings.output, "classifier.keras")
    model.save(path)
    # What the classifier's weights saw, for `evaluate` (unknown sets left out).
    known = {"pretraining": seen, "training": train_val}
    record_fingerprints.save_fingerprints(
        record_fingerprints.sidecar_path(path),
        {name: value for name, value in known.items() if value is not None},
    )
    rows = [{"weights": "random init" if settings.random_init else "pretrained", **row}]
    extra = {}
    if baseline:
        print(f"\nrandom-init baseline: {mode} on a fresh copy of the encoder")
        base_result, base_row = train_and_score(
            baseline_backbone,
            train,
            val,
            test,
            settings,
            mode,
            preprocessor=preprocessor,
            standardizer=standardizer,
        )
        rows.append({"weights": "random init", **base_row})
        extra["random_init_baseline"] = {
            "options": base_result["options"],
            "stages": base_result["stages"],
            **base_row,
        }
    columns = ["weights"] if baseline else []
    columns += [
        c
        for c in ("val_macro_auc", "test_macro_auc", "best_epoch", "epochs_run")
        if c in row
    ]
    print(markdown_table(rows, columns))
    if len(test):
        for r in rows:
            what = f"{r['weights']}: test" if baseline else "test"
            print(describe_intervals(r, what, len(test), prefix="test_"))
        if baseline:
            mask = result["trained_classes"]
            difference = paired_difference(
                test.labels[:, mask],
                result["test_scores"][:, mask],
                base_result["test_scores"][:, mask],
                settings,
            )
            extra["paired_difference"] = {
                "a": "pretrained",
                "b": "random init",
                **difference,
            }
            print(describe_difference(difference, "pretrained - random init"))
    else:
        print("(no test records in the chosen folds: no test AUC)")
    results = {
        "mode": mode,
        "protocol": mode,
        "backend": keras.backend.backend(),
        "checkpoint": settings.checkpoint,
        "init_from_preset": getattr(settings, "init_from_preset", None),
        "model": path,
        "options": result["options"],
        "stages": result["stages"],
        "split": split_summary(data, (train, val, test)),
        "leakage": leakage,
        **row,
        **extra,
    }
    out = folder.finish(results)
    print(f"classifier saved to {path}\nResults written to {out}")
    return results
