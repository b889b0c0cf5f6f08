"""`keras-ecg evaluate`: the macro AUROC / AUPRC of a trained classifier on
labelled records, with bootstrap intervals and a leakage check."""

import dataclasses
import os
from typing import ClassVar

import keras

from keras_ecg import choices
from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.data.durations import drop_short_records
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.jobs.common import clinical_records
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import load_keras
from keras_ecg.jobs.common import model_rate
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import require_preprocessor
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import select_split
from keras_ecg.jobs.common import statistics_of
from keras_ecg.jobs.downstream import describe_intervals
from keras_ecg.jobs.downstream import interval_fields
from keras_ecg.jobs.leakage import fingerprint_sets
from keras_ecg.jobs.leakage import leakage_report
from keras_ecg.jobs.leakage import refuse_seen_records
from keras_ecg.jobs.settings import BootstrapSettings
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import InputError


@dataclasses.dataclass(kw_only=True)
class EvaluateSettings(DataSettings, BootstrapSettings):
    """The settings of `keras-ecg evaluate` (its flags, same defaults)."""

    command: ClassVar[str] = "evaluate"
    RULES: ClassVar[dict] = {"batch_size": ">= 1"}
    CHOICES: ClassVar[dict] = {"split": choices.SPLITS}
    INPUT_FILES: ClassVar[tuple] = ("model", "labels")

    output: str = "runs/evaluate"
    overwrite: bool = False
    model: str
    split: str = "test"
    labels: str | None = None
    batch_size: int = 256
    strict: bool = False


def run(settings):
    """Runs `keras-ecg evaluate` with `settings`; returns the results
    (also in `evaluate_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (model, data, labels, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_evaluate, settings)


def align_to_model(data, model):
    """`data` with label columns for the model's classes, and the model outputs
    they belong to.

    Same label vocabulary: columns are matched by class name. PTB-XL SCP
    statements vs SNOMED CT codes (CinC folders): mapped through the packaged
    table (`keras_ecg.data.label_mapping`). Model classes without a counterpart
    in the data are left out of the scores and reported.

    Returns:
        `(aligned_data, output_indices, unmatched_classes)`.

    Raises:
        InputError: no model class has a counterpart in the data.
    """
    from keras_ecg.data.errors import ECGDataError
    from keras_ecg.data.label_mapping import align_labels

    names = getattr(model, "class_names", None)
    if not names:
        if data.num_classes != model.num_classes:
            raise InputError(
                f"the model has {model.num_classes} outputs and no class names; "
                f"the data has {data.num_classes} classes."
            )
        return data, list(range(model.num_classes)), []
    vocabulary = getattr(model, "label_vocabulary", None) or data.label_vocabulary
    try:
        aligned, alignment = align_labels(
            data, list(names), vocabulary, unmatched="drop"
        )
    except (ECGDataError, ValueError) as error:
        raise InputError(
            f"the model's classes ({vocabulary}) and the labels of the data "
            f"({data.label_vocabulary}) do not match: {error}"
        ) from error
    unmatched = [u if isinstance(u, str) else str(u) for u in alignment.unmatched]
    if unmatched:
        print(
            f"scoring {len(alignment.classes)} of the model's {len(names)} "
            f"classes; no counterpart in the data for {len(unmatched)}: "
            f"{unmatched[:10]}{' ...' if len(unmatched) > 10 else ''}",
            flush=True,
        )
    return aligned, list(alignment.model_indices), unmatched


def _labelled(settings, data, model):
    """`data` with the labels of `--labels`, or its own (WFDB `#Dx`, PTB-XL).

    Clinical exports carry no PTB-XL or SNOMED CT labels: without
    `--labels`, evaluating on them (even mixed with labelled WFDB records,
    which would score them as all-negative) is refused.
    """
    if settings.labels is None:
        clinical = clinical_records(data)
        if clinical:
            raise InputError(
                f"--data {settings.data}: {len(clinical)} record(s) are clinical ECG "
                f"exports (first: {clinical[:3]}), which carry no PTB-XL or "
                "SNOMED CT labels; pass --labels CSV with a record_id column and "
                "either a labels column of codes or one 0/1 column per class."
            )
        return data
    from keras_ecg.data.label_table import apply_label_table

    if not os.path.isfile(settings.labels):
        raise InputError(f"--labels {settings.labels}: file not found.")
    from keras_ecg.data.errors import ECGDataError

    try:
        data, unused = apply_label_table(
            data, settings.labels, getattr(model, "label_vocabulary", None)
        )
    except ECGDataError as error:
        # The table, not a record, is wrong: no --skip-bad-records hint.
        raise InputError(f"--labels {error}") from error
    print(
        f"labels from {settings.labels}: {data.num_classes} classes "
        f"({data.label_vocabulary}) for {len(data)} records",
        flush=True,
    )
    if unused:
        print(
            f"{len(unused)} row(s) of --labels name no record read (first: "
            f"{unused[:5]})",
            flush=True,
        )
    return data


def run_evaluate(settings):
    print_header(settings, "evaluate")
    model = load_keras(settings.model, "--model")
    preprocessor = require_preprocessor(model, settings.model, "--model")
    rate = model_rate(settings, preprocessor, "model")
    data = _labelled(settings, load_data(settings, rate), model)
    if data.labels is None:
        raise InputError(f"--data {settings.data} has no labels to evaluate against.")
    data = select_split(settings, data, settings.split)
    if len(data) == 0:
        raise InputError(
            f"no records in the {settings.split!r} split of {settings.data}."
        )
    folder = run_folder(settings, "evaluate", data)
    folder.check()
    data, outputs, unmatched = align_to_model(data, model)
    # Short records are left out with one warning before the preprocessor,
    # which would refuse them.
    data = drop_short_records(
        data, preprocessor.window_length, f"{preprocessor.window_seconds:g} s window"
    )
    # Checked and in the model's lead order, still in mV: the window
    # pipeline applies the statistics (no standardised copy).
    data = preprocessor.prepare(data, standardize=False)
    sets = fingerprint_sets(
        lambda: record_fingerprints.model_fingerprints(settings.model),
        f"--model {settings.model}",
    )
    source = f"--model {settings.model}"
    leakage = leakage_report(
        data,
        (sets or {}).get("pretraining"),
        (sets or {}).get("training"),
        settings.split,
        {"pretraining": source, "training": source},
    )
    refuse_seen_records(settings, leakage)
    folder.create()
    result = evaluate_records(
        model,
        data,
        window_seconds=preprocessor.window_seconds,
        stride_seconds=preprocessor.stride_seconds,
        batch_size=settings.batch_size,
        aggregation=preprocessor.aggregation,
        output_indices=outputs,
        standardizer=statistics_of(preprocessor),
        bootstrap=settings.bootstrap_resamples,
        bootstrap_seed=settings.bootstrap_seed,
    )
    print(
        f"{settings.split} macro AUC over {len(result['included'])} classes with "
        f"positives and negatives, {len(data)} records: {result['macro_auc']:.4f}"
    )
    fields = interval_fields(result)
    print(describe_intervals(fields, settings.split, len(data)))
    results = {
        "split": settings.split,
        "records": len(data),
        "backend": keras.backend.backend(),
        "macro_auc": result["macro_auc"],
        **fields,
        "per_class_auc": result["per_class_auc"],
        "excluded_classes": result["excluded_classes"],
        "classes_without_counterpart": unmatched,
        "leakage": leakage,
    }
    out = folder.finish(results)
    print(f"Results written to {out}")
    return results
