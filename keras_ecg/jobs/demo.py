"""`keras-ecg demo`: pretrain on the training records, then compare
classifiers on a few labels: pretrained vs random init and supervised
training from scratch, paired on the same test records."""

import dataclasses
import os
import time
from typing import ClassVar

import keras

from keras_ecg import choices
from keras_ecg.data.splits import patient_ids
from keras_ecg.data.splits import split_summary
from keras_ecg.jobs.common import check_augmentation
from keras_ecg.jobs.common import check_encoder
from keras_ecg.jobs.common import describe_split
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import markdown_table
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import split_data
from keras_ecg.jobs.downstream import bootstrap_settings
from keras_ecg.jobs.downstream import describe_difference
from keras_ecg.jobs.downstream import paired_difference
from keras_ecg.jobs.downstream import train_and_score
from keras_ecg.jobs.leakage import save_pretraining_fingerprints
from keras_ecg.jobs.pretrain import pretrain_model
from keras_ecg.jobs.settings import BootstrapSettings
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import DownstreamTrainingSettings
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import ModelSettings
from keras_ecg.jobs.settings import OnlineProbeSettings
from keras_ecg.jobs.settings import check_length
from keras_ecg.models.method_factory import build_method
from keras_ecg.run_watch import probe_records
from keras_ecg.training_logs import TrainingLogs

DEMO_FRACTIONS = (0.05, 0.2)
DEMO_PRETRAIN_EPOCHS = 15


@dataclasses.dataclass(kw_only=True)
class DemoSettings(
    DataSettings,
    ModelSettings,
    DownstreamTrainingSettings,
    BootstrapSettings,
    OnlineProbeSettings,
):
    """The settings of `keras-ecg demo` (its flags, same defaults; `epochs`
    None: 15, `label_fractions` None: 0.05 and 0.2)."""

    command: ClassVar[str] = "demo"
    RULES: ClassVar[dict] = {"epochs": ">= 1", "lr": "> 0", "batch_size": ">= 1"}
    CHOICES: ClassVar[dict] = {
        "method": choices.METHODS,
        "encoder": choices.ENCODERS,
    }

    output: str = "runs/demo"
    overwrite: bool = False
    method: str = "simclr"
    encoder: str | None = None
    epochs: int | None = None
    lr: float = 1e-3
    batch_size: int = 64
    augmentation: str = "gn_chr_to"
    label_fractions: list[float] | None = None


def run(settings):
    """Runs `keras-ecg demo` with `settings`; returns the results
    (also in `demo_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_demo, settings)


def run_demo(settings):
    """Pretrains on the training records, then trains classifiers on a few
    labelled records: pretrained (linear, finetune) vs random init (linear) and
    supervised from scratch, scored on held-out records."""
    print_header(settings, "demo")
    if settings.data == "synthetic":
        print(
            "Data: the embedded SYNTHETIC 12-lead ECG generator (not clinical "
            "data; its numbers say nothing about clinical performance).",
            flush=True,
        )
    from keras_ecg.evaluation.bootstrap import format_interval
    from keras_ecg.evaluation.experiments import label_fraction_subset
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    start = time.time()
    # Resolved before the manifest is written, so that it records them.
    settings.epochs = settings.epochs or DEMO_PRETRAIN_EPOCHS
    settings.label_fractions = list(settings.label_fractions or DEMO_FRACTIONS)
    data = load_data(settings, settings.sampling_rate or 100)
    train, val, test = split_data(settings, data)
    describe_split(train, val, test)
    if not (len(train) and len(val) and len(test)):
        raise InputError("the demo needs train, val and test records; see --*-folds.")
    check_augmentation(settings)
    check_encoder(settings)
    probe_split = probe_records(settings, val)
    for name, split in (("training", train), ("val", val), ("test", test)):
        check_length("--window-seconds", settings.window_seconds, split, name)
    folder = run_folder(settings, "demo", data)
    folder.check()
    preprocessor = ECGPreprocessor.from_data(
        train, window_seconds=settings.window_seconds
    )
    # Checked, still in mV: pretraining and the classifiers' pipelines apply
    # the statistics to every crop and window (no standardised copies).
    train, val, test = (
        preprocessor.prepare(d, standardize=False) for d in (train, val, test)
    )
    folder.create()

    print(
        f"\n[1/3] self-supervised pretraining ({settings.method}), no labels",
        flush=True,
    )
    pretrained, history = pretrain_model(
        settings,
        train,
        settings.output,
        augmentation=settings.augmentation,
        preprocessor=preprocessor,
        standardizer=preprocessor,
        probe_split=probe_split,
    )
    pretrained_path = os.path.join(settings.output, "pretrained.keras")
    fingerprints = save_pretraining_fingerprints(settings.output, train)

    def backbone(kind):
        if kind == "pretrained":
            return keras.saving.load_model(pretrained_path).backbone
        keras.utils.set_random_seed(settings.seed + 1)
        return build_method(
            settings.method,
            size=settings.size,
            input_leads=train.num_leads,
            encoder=settings.encoder,
        ).backbone

    protocols = (
        ("pretrained, linear", "pretrained", "linear"),
        ("pretrained, finetune", "pretrained", "finetune"),
        ("random init, linear", "random", "linear"),
        ("supervised from scratch", "random", "scratch"),
    )
    fractions = settings.label_fractions
    print(
        f"\n[2/3] classifiers on {', '.join(f'{f:.0%}' for f in fractions)} of the "
        f"{len(train)} labelled training records",
        flush=True,
    )
    # Same labels, same architecture, pretrained vs random weights: paired
    # on the same test records.
    pairs = (
        ("pretrained, linear", "random init, linear"),
        ("pretrained, finetune", "supervised from scratch"),
    )
    rows, cells, intervals, differences = [], [], [], []
    for fraction in fractions:
        subset = label_fraction_subset(train, fraction, seed=settings.seed)
        row = {"labelled records": len(subset)}
        cell, interval, scores = dict(row), dict(row), {}
        for name, kind, mode in protocols:
            t0 = time.time()
            # Each classifier's curves: a TensorBoard run and a CSV of its own.
            label = f"{len(subset)}_records_{kind}_{mode}"
            logs = TrainingLogs(
                settings.output, label, subfolder=f"classifiers/{label}"
            )
            result, scored = train_and_score(
                backbone(kind),
                subset,
                val,
                test,
                settings,
                mode,
                verbose=0,
                standardizer=preprocessor,
                callbacks=logs.callbacks,
            )
            row[name] = scored["test_macro_auc"]
            scores[name] = result["test_scores"]
            auroc = scored.get("test_macro_auroc")
            cell[name] = row[name]
            if auroc is not None and auroc["low"] is not None:
                cell[name] = format_interval(auroc, digits=4)
            interval[name] = {
                metric: scored.get(f"test_{metric}")
                for metric in ("macro_auroc", "macro_auprc")
            }
            print(
                f"  {len(subset):4d} records | {name:24s} | test macro AUC "
                f"{scored['test_macro_auc']:.4f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        mask = result["trained_classes"]
        for a, b in pairs:
            difference = paired_difference(
                test.labels[:, mask], scores[a][:, mask], scores[b][:, mask], settings
            )
            differences.append(
                {"labelled records": len(subset), "a": a, "b": b, **difference}
            )
        rows.append(row)
        cells.append(cell)
        intervals.append(interval)
    columns = ["labelled records"] + [p[0] for p in protocols]
    table = markdown_table(cells, columns)
    few = rows[0]
    gain = min(
        few["pretrained, finetune"] - few["supervised from scratch"],
        max(few["pretrained, linear"], few["pretrained, finetune"])
        - few["random init, linear"],
    )
    num_resamples, seed = bootstrap_settings(settings)
    how = (
        f"; 95% bootstrap CI over the records, {num_resamples} resamples, seed {seed}"
        if num_resamples
        else ""
    )
    print(
        f"\n[3/3] test macro ROC AUC on {len(test)} held-out records "
        f"(sliding windows averaged per record{how}):\n"
    )
    print(table)
    print("\nPretrained minus random init, same labels, same test records:")
    for d in differences:
        name = f"{d['labelled records']:4d} records | {d['a']} - {d['b']}"
        print("  " + describe_difference(d, name))
    print(
        f"\nWith {few['labelled records']} labelled records, pretraining gains "
        f"{gain:+.4f} macro AUC over the better of random init and supervised "
        f"training from scratch. Total {time.time() - start:.0f} s."
    )
    results = {
        "backend": keras.backend.backend(),
        "method": settings.method,
        "pretrain_loss": [float(v) for v in history["loss"]],
        "online_probe": history.get("online_probe"),
        "results": rows,
        "intervals": intervals,
        "paired_differences": differences,
        "bootstrap": (
            {"num_resamples": num_resamples, "seed": seed, "confidence": 0.95}
            if num_resamples
            else None
        ),
        "pretraining_gain_few_labels": gain,
        "table": table,
        "record_fingerprints": fingerprints,
        "split": split_summary(data, (train, val, test)),
        # Label-fraction subsets take whole patients where the data has ids.
        "label_fractions_by_patient": patient_ids(train) is not None,
        "seconds": time.time() - start,
    }
    out = folder.finish(results)
    print(f"Results written to {out}")
    return results
