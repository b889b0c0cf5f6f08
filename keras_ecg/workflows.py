"""The CLI's jobs: demo, pretrain, linear-eval / finetune, evaluate, embed,
predict, tune.

Each job validates its input first (data readable, run folder free or the same
run), then writes into `--output` (see `keras_ecg.run_folder`), and ends with a
`<command>_results.json` holding every setting, the data (path, fingerprint),
package versions and its results.
"""

import contextlib
import os
import platform
import sys
import time

import keras
import numpy as np

from keras_ecg import distribute
from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.callbacks import StopOnNonFiniteLoss
from keras_ecg.callbacks import resumable_fit
from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.data.durations import drop_short_records
from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.splits import check_disjoint_folds
from keras_ecg.data.splits import check_fractions
from keras_ecg.data.splits import patient_ids
from keras_ecg.data.splits import split_summary
from keras_ecg.evaluation.downstream import DOWNSTREAM_DEFAULTS
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.evaluation.downstream import trained_class_mask
from keras_ecg.models.method_factory import CROP_SECONDS
from keras_ecg.models.method_factory import SINGLE_CROP_METHODS
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import encoder_of
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.models.method_factory import pretraining_optimizer
from keras_ecg.models.method_factory import resolve_encoder
from keras_ecg.run_folder import RunFolder
from keras_ecg.run_folder import dataset_fingerprint
from keras_ecg.run_watch import TrainingWatch
from keras_ecg.run_watch import probe_records
from keras_ecg.training_logs import TrainingLogs
from keras_ecg.utils import enable_determinism

# Settings that do not change a run's result (where it goes, how it is shown).
_NOT_SETTINGS = (
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


class InputError(ValueError):
    """The user's input cannot be used; the message says why (exit code 2)."""


class LostProcessError(RuntimeError):
    """A process of a multi-process job stopped answering (exit code 1)."""


def fit_verbosity():
    """Per-step progress bars on a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


def run(args):
    """Runs `args.command` (an `argparse.Namespace` from `cli.build_parser`)."""
    jobs = {
        "demo": run_demo,
        "pretrain": run_pretrain,
        "linear-eval": run_downstream,
        "finetune": run_downstream,
        "downstream": run_downstream,
        "evaluate": run_evaluate,
        "embed": run_embed,
        "predict": run_predict,
        "tune": run_tune,
        "preset": run_preset_save,
    }
    # Before anything is read or written: a refused split leaves no trace.
    check_split_flags(args)
    return jobs[args.command](args)


def _print_header(args, what):
    print(
        f"keras-ecg {what} | backend={keras.backend.backend()} | "
        f"data={getattr(args, 'data', None)} | python {platform.python_version()} "
        f"on {platform.machine()} ({os.cpu_count()} CPUs)",
        flush=True,
    )


def settings_of(args):
    """Every argument that changes a run's result, as a JSON-able dict."""
    return {
        key: value
        for key, value in sorted(vars(args).items())
        if key not in _NOT_SETTINGS and not callable(value)
    }


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _parse_folds(text, flag):
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
            raise InputError(
                f"{flag} {text!r}: expected fold numbers such as '1-8' or '9,10'."
            ) from error
    return folds


def check_split_flags(args):
    """Refuses fold flags that share a fold, fractions that overlap or leave
    no training records, and label fractions outside (0, 1] (commands
    without such flags pass).

    Raises:
        InputError: one line naming both flags and what they share.
    """
    if not hasattr(args, "train_folds"):
        return
    flags = {
        f"--{name}-folds": _parse_folds(
            getattr(args, f"{name}_folds"), f"--{name}-folds"
        )
        for name in ("train", "val", "test")
    }
    try:
        check_disjoint_folds(flags)
        check_fractions(
            args.val_fraction,
            args.test_fraction,
            names=("--val-fraction", "--test-fraction"),
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    for fraction in getattr(args, "label_fractions", None) or ():
        if not 0.0 < fraction <= 1.0:
            raise InputError(
                f"--label-fractions {fraction:g}: expected a share in (0, 1]."
            )


def load_data(args, sampling_rate, progress=True):
    """Loads `--data` at `sampling_rate` Hz as an `ECGDataset` in mV."""
    from keras_ecg.data.sources import detect_source
    from keras_ecg.data.sources import load_source

    try:
        source = detect_source(args.data)
    except FileNotFoundError as error:
        raise InputError(str(error)) from error
    if progress:
        print(f"loading {args.data} ({source}) at {sampling_rate} Hz ...", flush=True)
    start = time.time()
    try:
        data = load_source(
            args.data,
            sampling_rate=sampling_rate,
            label_set=args.label_set,
            num_synthetic_records=args.num_records,
            cache_dir=args.cache_dir,
            on_error="skip" if args.skip_bad_records else "raise",
            seed=args.seed,
            progress=progress,
        )
    except ValueError as error:
        from keras_ecg.data.errors import ECGDataError

        if isinstance(error, ECGDataError):
            raise
        raise InputError(f"--data {args.data}: {error}") from error
    if len(data) == 0:
        raise InputError(f"--data {args.data}: no readable records.")
    if progress:
        print(
            f"loaded {len(data)} records, {data.num_leads} leads at "
            f"{data.sampling_rate} Hz, {data.num_classes} classes "
            f"({time.time() - start:.1f} s)",
            flush=True,
        )
        report_derived_leads(data)
    return data


def report_derived_leads(data):
    """Prints which records had limb leads derived (clinical exports)."""
    metadata = getattr(data, "metadata", None)
    if metadata is None or "derived_leads" not in getattr(metadata, "columns", ()):
        return
    derived = {}
    for record_id, leads in zip(data.record_ids, metadata["derived_leads"]):
        if isinstance(leads, (list, tuple)) and leads:
            derived.setdefault(", ".join(leads), []).append(str(record_id))
    for leads, records in derived.items():
        shown = ", ".join(records[:10]) + (" ..." if len(records) > 10 else "")
        print(
            f"{leads} derived from two stored limb leads (Einthoven/Goldberger; "
            f"the file does not store them) in {len(records)} record(s): {shown}",
            flush=True,
        )


def clinical_records(data):
    """Ids of the records read from clinical exports (not WFDB)."""
    metadata = getattr(data, "metadata", None)
    if metadata is None or "format" not in getattr(metadata, "columns", ()):
        return []
    return [
        str(r)
        for r, fmt in zip(data.record_ids, metadata["format"])
        if isinstance(fmt, str) and fmt != "WFDB"
    ]


def split_data(args, data):
    """`(train, val, test)` by folds (PTB-XL, synthetic) or seeded fractions."""
    from keras_ecg.data.sources import split_dataset

    folds = {
        name: _parse_folds(getattr(args, f"{name}_folds"), f"--{name}-folds")
        for name in ("train", "val", "test")
    }
    return split_dataset(
        data,
        train_folds=folds["train"],
        val_folds=folds["val"],
        test_folds=folds["test"],
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )


def select_split(args, data, split):
    if split == "all":
        return data
    return dict(zip(("train", "val", "test"), split_data(args, data)))[split]


def data_info(args, data):
    """What the results and the manifest record about the input data."""
    return {
        "path": os.path.abspath(args.data) if args.data != "synthetic" else "synthetic",
        "records": len(data),
        "sampling_rate": data.sampling_rate,
        "leads": list(data.lead_names),
        "label_set": args.label_set,
        "num_classes": data.num_classes,
        "fingerprint": dataset_fingerprint(data),
    }


def run_folder(args, command, data):
    """The `RunFolder` of this run (checked later, before anything is written)."""
    return RunFolder(
        args.output, command, settings_of(args), data_info(args, data), args.overwrite
    )


def _describe(train, val, test):
    print(
        f"split: {len(train)} train / {len(val)} val / {len(test)} test records",
        flush=True,
    )


def make_preprocessor(standardizer, data, window_seconds=2.5, stride_seconds=None):
    """The `ECGPreprocessor` of a run: its data's rate and leads, train stats."""
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    return ECGPreprocessor.from_standardizer(
        standardizer,
        sampling_rate=data.sampling_rate,
        lead_names=list(data.lead_names),
        window_seconds=window_seconds,
        stride_seconds=window_seconds / 2 if stride_seconds is None else stride_seconds,
    )


def _check_leads(args, data, preprocessor):
    if list(data.lead_names) != list(preprocessor.lead_names):
        raise InputError(
            f"--data {args.data} has leads {list(data.lead_names)}, the model "
            f"expects {list(preprocessor.lead_names)}."
        )


def _standardizer_of(preprocessor):
    """The preprocessor's statistics as a `LeadStandardizer`; None when it
    carries none (a model trained on unstandardised mV, e.g. a converted
    reference checkpoint): its inputs are then left in mV."""
    if not preprocessor.standardizes:
        return None
    return LeadStandardizer(
        mean=preprocessor.mean,
        std=preprocessor.std,
        lead_names=preprocessor.lead_names,
    )


def _statistics_of(preprocessor):
    """The preprocessor as a pipeline `standardizer`, or None without statistics."""
    return preprocessor if preprocessor.standardizes else None


def _model_rate(args, preprocessor, what):
    """The sampling rate to load data at: the model's (checked against
    `--sampling-rate`)."""
    rate = int(round(preprocessor.sampling_rate))
    if args.sampling_rate is not None and args.sampling_rate != rate:
        raise InputError(
            f"--sampling-rate {args.sampling_rate}: the {what} was trained at "
            f"{rate} Hz; its records are resampled to {rate} Hz (omit "
            "--sampling-rate)."
        )
    return rate


def _load_keras(path, what):
    import keras_ecg.models  # noqa: F401  (registers the serializable classes)

    if not os.path.exists(path):
        raise InputError(f"{what} {path}: file not found.")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a bad archive.
        raise InputError(
            f"{what} {path}: not a loadable .keras model ({error})."
        ) from error


def open_preset(handle, flag="--init-from-preset"):
    """The local folder of a preset handle (downloaded if remote)."""
    from keras_ecg.presets import HubPackageError
    from keras_ecg.presets import PresetError
    from keras_ecg.presets import get_preset_dir

    try:
        return get_preset_dir(handle)
    except (PresetError, HubPackageError) as error:
        raise InputError(f"{flag}: {error}") from error


def load_preset_part(handle, path, part, flag="--init-from-preset"):
    """The `"backbone"`, `"task"` or `"preprocessor"` of the preset at `path`."""
    from keras_ecg.presets import PresetError
    from keras_ecg.presets import preset_loader

    loaders = {
        "backbone": preset_loader.load_backbone,
        "task": preset_loader.load_task,
        "preprocessor": preset_loader.load_preprocessor,
    }
    try:
        return loaders[part](path, handle)
    except PresetError as error:
        raise InputError(f"{flag}: {error}") from error


def _require_preprocessor(model, path, what):
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise InputError(
            f"{what} {path} carries no preprocessing (sampling rate, leads, "
            "standardisation): it was saved by an older keras-ecg or outside "
            "the CLI. Re-run `keras-ecg pretrain`/`finetune`, or attach an "
            "ECGPreprocessor before saving."
        )
    return preprocessor


# ----------------------------------------------------------------------------
# Leakage: the scored records a model has already seen
# ----------------------------------------------------------------------------


def _fingerprint_sets(read, where):
    """The fingerprint sets `read()` returns (None: none kept); an unreadable
    file is reported and counts as none."""
    try:
        return read()
    except ValueError as error:
        print(f"{where}: {error} Treated as unknown.", flush=True)
        return None


def save_pretraining_fingerprints(output, train, initial=None):
    """Writes the fingerprints of the records `train` pretrains on (with
    those the preset it starts from saw) beside `output/pretrained.keras`.

    Returns:
        What the results record: the file, its number of records and whether
        they are all the model saw; None when `train` lacks a standard lead.
    """
    seen = record_fingerprints.RecordFingerprints.from_dataset(train)
    if seen is None:
        print(
            "no record fingerprints: the data lacks some of the 12 standard leads",
            flush=True,
        )
        return None
    if initial is not None:
        inherited = record_fingerprints.seen_by(initial.fingerprints)
        if inherited is None:
            seen.complete = False  # the preset's own records are unknown
        else:
            seen = inherited.concatenate(seen)
    path = record_fingerprints.sidecar_path(os.path.join(output, "pretrained.keras"))
    record_fingerprints.save_fingerprints(path, {"pretraining": seen})
    return {"file": path, "records": len(seen), "complete": seen.complete}


def starting_fingerprints(args, preset_path=None):
    """`(seen, source)`: the `RecordFingerprints` of what a downstream run's
    starting weights were fitted to (None: unknown) and where they come from.
    """
    if args.checkpoint:
        source = f"--checkpoint {args.checkpoint}"
        sets = _fingerprint_sets(
            lambda: record_fingerprints.model_fingerprints(args.checkpoint), source
        )
        return record_fingerprints.seen_by(sets), source
    if preset_path is not None:
        source = f"--init-from-preset {args.init_from_preset}"
        sets = _fingerprint_sets(
            lambda: record_fingerprints.preset_fingerprints(preset_path), source
        )
        return record_fingerprints.seen_by(sets), source
    return record_fingerprints.RecordFingerprints.empty(), "--random-init"


# How each set's overlap reads: "<n> of <m> test records <verb>".
_SEEN = {
    "pretraining": "were seen in pretraining",
    "training": "are train/val records of the classifier",
}


def leakage_report(scored, pretraining, training, what, sources):
    """How many `scored` records the model saw, printed and for the results.

    Args:
        scored: the `ECGDataset` scored (in mV).
        pretraining: `RecordFingerprints` of what the weights were pretrained
            on, or None (unknown).
        training: `RecordFingerprints` of the classifier's train and val
            records, or None (unknown).
        what: what `scored` is, e.g. "test".
        sources: dict set name -> where its fingerprints come from (for
            "unknown" messages).

    Returns:
        `{"scored": what, "records": n, "pretraining": ..., "training": ...}`,
        each set as `keras_ecg.data.fingerprints.overlap` gives it (`seen`
        None: unknown).
    """
    query = record_fingerprints.RecordFingerprints.from_dataset(scored)
    report = {"scored": what, "records": len(scored)}
    for name, seen in (("pretraining", pretraining), ("training", training)):
        report[name] = record_fingerprints.overlap(seen, query)
    if not len(scored):
        print(f"leakage check: no {what} records to check", flush=True)
        return report
    for name, verb in _SEEN.items():
        result = report[name]
        if query is None or result["seen"] is None:
            why = (
                "the data lacks some of the 12 standard leads"
                if query is None
                else f"{sources[name]} has no record fingerprints"
            )
            print(
                f"leakage check: {what} records that {verb}: unknown ({why})",
                flush=True,
            )
            continue
        bound = "at least " if result["at_least"] else ""
        examples = result["examples"][:3]
        shown = f" (e.g. {_pairs(examples)})" if examples else ""
        print(
            f"leakage check: {bound}{result['seen']} of {len(scored)} {what} "
            f"records {verb}{shown}",
            flush=True,
        )
    return report


def _pairs(examples):
    """`"1 = HR00001, 2"`: a scored record and the record it matches (one id
    where they are the same)."""
    return ", ".join(a if a == b else f"{a} = {b}" for a, b in examples)


def refuse_seen_records(args, report):
    """Under `--strict`, refuses (one line) scored records the model saw;
    unknown counts pass (there is nothing to refuse on)."""
    if not getattr(args, "strict", False):
        return
    seen = [
        f"{report[name]['seen']} of {report['records']} {report['scored']} records "
        f"{verb} ({_pairs(report[name]['examples'][:3])})"
        for name, verb in _SEEN.items()
        if report[name].get("seen")
    ]
    if seen:
        raise InputError(
            f"--strict: {'; '.join(seen)}. Score records the model has not seen "
            "(other folds or data), or drop --strict."
        )


# ----------------------------------------------------------------------------
# Pretraining
# ----------------------------------------------------------------------------


def _augmentation(name, sampling_rate, seed=None):
    from keras_ecg.layers.augmentation.presets import paper_augmentations

    return paper_augmentations(name, sampling_rate=sampling_rate, seed=seed)


def check_augmentation(args):
    """Refuses an unknown `--augmentation` before anything is written."""
    from keras_ecg.layers.augmentation.presets import setting_tokens

    try:
        setting_tokens(args.augmentation)
    except ValueError as error:
        raise InputError(f"--augmentation {args.augmentation}: {error}") from error


def check_encoder(args):
    """Resolves `--encoder` (None: the method's default) into `args.encoder`,
    so that the manifest and results record it; refuses a combination the
    method cannot use before anything is written."""
    try:
        args.encoder = resolve_encoder(args.method, getattr(args, "encoder", None))
    except ValueError as error:
        raise InputError(f"--encoder {args.encoder}: {error}") from error
    return args.encoder


def check_checkpoint_encoder(args, pretrained):
    """With `--checkpoint` the architecture is the checkpoint's: a given
    `--encoder` must name it."""
    if getattr(args, "encoder", None) is None:
        return
    actual = encoder_of(pretrained)
    if actual != args.encoder:
        raise InputError(
            f"--encoder {args.encoder}: --checkpoint {args.checkpoint} has "
            f"{'an unknown' if actual is None else 'the ' + actual} encoder; with "
            "--checkpoint the architecture is the checkpoint's (omit --encoder)."
        )


def build_on_batch(model, dataset):
    """Builds `model` on one batch of `dataset` (needed by `BackupAndRestore`)."""
    batch = next(iter(dataset))
    x = batch[0] if isinstance(batch, tuple) else batch
    x = keras.tree.map_structure(
        lambda t: keras.ops.convert_to_tensor(np.asarray(t)), x
    )
    model(x, training=False)


def pretrain(
    args,
    train,
    output_dir,
    augmentation="rrc_to",
    preprocessor=None,
    standardizer=None,
    initial=None,
    probe_split=None,
):
    """Pretrains `args.method` on `train`; checkpoints every N steps and
    resumes an interrupted run from `output_dir/backup`.

    Args:
        args: a namespace with `method`, `size`, `lr`, `batch_size`, `epochs`,
            `seed` and optionally `encoder`, `crop_seconds`,
            `checkpoint_every_steps`.
        train: the training `ECGDataset`, standardised or (with
            `standardizer`) in mV.
        output_dir: where `pretrained.keras` and the step checkpoints go.
        augmentation: augmentation preset name (SimCLR/BYOL/SwAV).
        preprocessor: optional `ECGPreprocessor` saved with the model.
        standardizer: optional fitted `LeadStandardizer` the input pipeline
            applies to every crop, so that no standardised copy of `train`
            is made (it may be a memory-mapped cache larger than RAM).
        initial: optional `PretrainingStart` (from a preset): the model to
            continue, or the backbone whose weights the new model's encoder
            starts from.
        probe_split: optional `(train, val)` labelled records of the online
            probe (`run_watch.probe_records`); its summary goes into
            `history["online_probe"]`.

    Returns:
        `(model, history)`; `output_dir` also holds the CSV log, TensorBoard
        events and curves PNG (`keras_ecg.training_logs`).

    Reproducible: runs under `keras_ecg.utils.enable_determinism(args.seed)`,
    which stays in effect for the rest of the process.
    """
    enable_determinism(args.seed)
    multi_process = distribute.process_count() > 1

    # In a multi-process job: the model spans every process's devices.
    def scope():
        return distribute.data_parallel() if multi_process else contextlib.nullcontext()

    with scope():
        if initial is not None and initial.continues:
            # Loaded in the scope: a multi-process job places its variables.
            model = initial.load_model()
            distribute.synchronize_batch_norm(
                model, getattr(args, "synchronized_batch_norm", False)
            )
        else:
            model = build_method(
                args.method,
                size=args.size,
                input_leads=train.num_leads,
                synchronized_batch_norm=getattr(args, "synchronized_batch_norm", False),
                encoder=getattr(args, "encoder", None),
            )
            if initial is not None:
                initial.copy_backbone_into(model, train.num_leads)
    crop_seconds = getattr(args, "crop_seconds", None) or CROP_SECONDS[args.method]
    batch_size = min(args.batch_size, len(train))
    crop = seconds_to_samples(crop_seconds, train.sampling_rate)
    records, seed, local_batch = len(train), args.seed, batch_size
    if multi_process:
        train, local_batch = process_shard(train, batch_size, crop, crop_seconds)
        # Other records per process: other crops and augmentations too.
        seed = args.seed + distribute.process_index()
    dataset = make_method_dataset(
        args.method,
        train,
        batch_size=local_batch,
        augmentation=_augmentation(augmentation, train.sampling_rate),
        crop_seconds=crop_seconds,
        seed=seed,
        standardizer=standardizer,
    )
    # CPC and JEPA pretrain on plain crops, as their references.
    views = (
        "" if args.method in SINGLE_CROP_METHODS else f", augmentation {augmentation}"
    )
    shard = ""
    if multi_process:
        shard = (
            f" (process {distribute.process_index()} of "
            f"{distribute.process_count()}: {len(train)} records, "
            f"{local_batch} per batch)"
        )
    encoder = resolve_encoder(args.method, getattr(args, "encoder", None))
    print(
        f"pretraining {args.method} ({args.size}, {encoder} encoder) on "
        f"{records} records{shard}: "
        f"{crop_seconds:g} s crops ({crop} samples at {train.sampling_rate} Hz), "
        f"batch {batch_size}, lr {args.lr:g}{views}, {args.epochs} epochs",
        flush=True,
    )
    with scope():
        # JEPA's learning-rate schedule spans the run: its length is known
        # once the dataset is.
        steps = int(dataset.cardinality())
        model.compile(
            optimizer=pretraining_optimizer(
                args.method, args.lr, args.epochs * steps if steps > 0 else None
            )
        )
        build_on_batch(model, dataset)
        backup = os.path.join(output_dir, "backup")
        watch = TrainingWatch(
            args,
            output_dir,
            "pretrain",
            probe_split=probe_split,
            standardizer=standardizer,
            fresh=StepCheckpoint(backup).read_metadata() is None,
            title=f"{args.method} pretraining ({args.size}, {encoder} encoder)",
        )
        print(watch.describe(), flush=True)
        # Step checkpoints: a killed run resumes from its last step; a NaN/inf
        # loss raises NonFiniteLossError before the bad state is checkpointed.
        history = resumable_fit(
            model,
            dataset,
            epochs=args.epochs,
            backup_dir=backup,
            save_every_steps=getattr(args, "checkpoint_every_steps", 50),
            callbacks=[StopOnNonFiniteLoss(method=args.method), *watch.callbacks],
            verbose=fit_verbosity(),
            shuffle=False,
        )
        watch.after_fit(model, history)
        model.preprocessor = preprocessor
        path = os.path.join(output_dir, "pretrained.keras")
        with distribute.chief_writes(path) as where:
            model.save(where)
    StepCheckpoint(os.path.join(output_dir, "backup")).delete()
    if distribute.is_chief():
        print(f"pretrained model saved to {path}", flush=True)
    watch.finish()
    return model, history


def process_shard(train, global_batch_size, crop_length, crop_seconds):
    """This process's records of a multi-process job, and its local batch.

    Every process loads the records and drops those shorter than the crop,
    so all agree on the list; each then keeps its own rows of every global
    batch (`distribute.shard_indices`): equal shares, so every process runs
    the same number of steps.
    """
    train = drop_short_records(train, crop_length, f"{crop_seconds:g} s crop")
    try:
        local = distribute.local_batch_size(global_batch_size)
    except ValueError as error:
        raise InputError(f"--batch-size {global_batch_size}: {error}") from error
    rows = distribute.shard_indices(len(train), global_batch_size)
    if len(rows) == 0:
        raise InputError(
            f"--batch-size {global_batch_size}: only {len(train)} training "
            "records, fewer than one global batch."
        )
    return train.subset(rows), local


def join_job(args):
    """Joins the multi-process job that `--distributed` asks for (or None)."""
    mode = getattr(args, "distributed", "none")
    if mode == "none":
        return None
    try:
        if mode == "auto" and distribute.resolve_process_settings() is None:
            return None
        settings = distribute.initialize_multi_process(
            job_addresses=args.job_addresses,
            num_processes=args.num_processes,
            process_id=args.process_id,
            timeout_seconds=args.collective_timeout_seconds,
        )
    except ValueError as error:
        raise InputError(f"--distributed {mode}: {error}") from error
    except NotImplementedError as error:
        raise InputError(str(error)) from error
    if settings is None:
        raise InputError(
            f"--distributed {mode}: the settings describe a single process; "
            "give --num-processes > 1 (or drop --distributed)."
        )
    print(
        f"process {settings.process_id} of {settings.num_processes} joined the "
        f"job at {settings.job_addresses[0]} (settings from {settings.source})",
        flush=True,
    )
    return settings


def run_pretrain(args):
    # Before any other framework work: TF's multi-worker strategy must be
    # created at program start.
    settings = join_job(args)
    try:
        return _run_pretrain(args)
    except Exception as error:
        lost = lost_process_error(error, settings, args.output)
        if lost is None:
            raise
        raise lost from error


def lost_process_error(error, settings, output):
    """A `LostProcessError` for `error` if it says a process is gone, else None.

    TensorFlow aborts the collectives of a multi-worker step with
    `UnavailableError` (or a deadline / abort) when a peer stops sending
    heartbeats; torch's collectives fail at once and keras-ecg raises
    `distribute.ProcessLostError`, naming the processes that stopped
    answering. (JAX terminates the surviving processes itself.)
    """
    restart = (
        "Restart every process with the same command: they resume from the "
        f"last checkpoint in {os.path.join(output, 'backup')}."
    )
    if settings is None:
        return None
    if isinstance(error, distribute.ProcessLostError):
        return LostProcessError(f"{error}. {restart}")
    names = {"UnavailableError", "DeadlineExceededError", "AbortedError"}
    if type(error).__name__ not in names:
        return None
    lines = [line for line in str(error).splitlines() if line.strip()]
    return LostProcessError(
        f"process {settings.process_id} of {settings.num_processes}: another "
        f"process of the job stopped answering ({lines[0] if lines else ''}). "
        f"{restart}"
    )


class PretrainingStart:
    """Where `pretrain --init-from-preset` starts: the preset's task model
    when it is a model of `--method` (`continues`: `load_model` loads it),
    else the preset's backbone, whose weights the new method model's encoder
    takes; and the preset's preprocessor (None if it has none)."""

    def __init__(
        self, handle, path, backbone, preprocessor, metadata, fingerprints=None
    ):
        self.handle = handle
        self.path = path
        self.backbone = backbone
        self.continues = backbone is None
        self.preprocessor = preprocessor
        self.metadata = metadata
        # The preset's record fingerprint sets (None: it keeps none).
        self.fingerprints = fingerprints

    def load_model(self):
        return load_preset_part(self.handle, self.path, "task")

    def copy_backbone_into(self, model, num_leads):
        """Sets `model.backbone`'s weights to the preset backbone's.

        Done before the model is built, so that a target network built from
        the encoder (BYOL) starts as a copy of these weights too.
        """
        target = model.backbone
        if not target.built:
            # CPC's encoder + context: built for inputs of any length.
            target.build((None, None, num_leads))
        theirs, ours = self.backbone.get_weights(), target.get_weights()
        if [w.shape for w in theirs] != [w.shape for w in ours]:
            size = self.metadata.get("size")
            hint = f" (the preset's metadata says size={size})" if size else ""
            raise InputError(
                f"--init-from-preset {self.handle}: its backbone "
                f"({type(self.backbone).__name__}, {len(theirs)} weights) is not "
                f"the encoder of --method {model.__class__.__name__.lower()} at "
                f"this --size ({type(target).__name__}, {len(ours)} weights); pass "
                f"the --size and --method it was pretrained with{hint}."
            )
        target.set_weights(theirs)


def load_pretraining_start(args):
    """The `PretrainingStart` of `--init-from-preset`, or None."""
    handle = getattr(args, "init_from_preset", None)
    if not handle:
        return None
    from keras_ecg.presets import PresetError
    from keras_ecg.presets.preset_files import PREPROCESSOR_CONFIG_FILE
    from keras_ecg.presets.preset_files import TASK_CONFIG_FILE
    from keras_ecg.presets.preset_files import read_metadata
    from keras_ecg.presets.preset_files import read_serialized
    from keras_ecg.presets.preset_loader import resolve_class

    path = open_preset(handle)
    try:
        metadata = read_metadata(path, handle)
        task = read_serialized(path, TASK_CONFIG_FILE, handle, required=False)
        task_class = task and resolve_class(task, TASK_CONFIG_FILE, handle)
    except PresetError as error:
        raise InputError(f"--init-from-preset: {error}") from error
    preprocessor = None
    if os.path.isfile(os.path.join(path, PREPROCESSOR_CONFIG_FILE)):
        preprocessor = load_preset_part(handle, path, "preprocessor")
    backbone = None
    # The class build_method makes for --method (a tiny one, only to compare).
    if task_class is not type(build_method(args.method, size="tiny")):
        backbone = load_preset_part(handle, path, "backbone")
    if backbone is None:
        print(
            f"continuing the pretraining of the {task_class.__name__} of preset "
            f"{handle} (its architecture; --size is not used)",
            flush=True,
        )
    else:
        print(
            f"initialising the {args.method} encoder from the "
            f"{type(backbone).__name__} backbone of preset {handle}",
            flush=True,
        )
    fingerprints = _fingerprint_sets(
        lambda: record_fingerprints.preset_fingerprints(path),
        f"--init-from-preset {handle}",
    )
    return PretrainingStart(
        handle, path, backbone, preprocessor, metadata, fingerprints
    )


def _run_pretrain(args):
    _print_header(args, "pretrain")
    initial = load_pretraining_start(args)
    preset_preprocessor = None if initial is None else initial.preprocessor
    if preset_preprocessor is not None:
        rate = _model_rate(args, preset_preprocessor, "preset")
    else:
        rate = args.sampling_rate or 100
    data = load_data(args, rate)
    train, val, test = split_data(args, data)
    _describe(train, val, test)
    if len(train) == 0:
        raise InputError(
            f"no training records in folds {args.train_folds} of {args.data}."
        )
    check_augmentation(args)
    check_encoder(args)
    probe_split = probe_records(args, val)
    folder = run_folder(args, "pretrain", data)
    if folder.check() == "resume":
        print(f"resuming the unfinished run in {args.output}", flush=True)
    if preset_preprocessor is not None:
        # As with --checkpoint downstream: the preset's rate, leads and
        # statistics, which its weights were trained with.
        _check_leads(args, data, preset_preprocessor)
        preprocessor = preset_preprocessor
        standardizer = _standardizer_of(preprocessor)
    else:
        # Fitted streaming and applied in the input pipeline: no standardised
        # copy of the training records (they may be a memory-mapped cache).
        standardizer = LeadStandardizer().fit(train)
        preprocessor = make_preprocessor(standardizer, train)
    # Every process checked the folder (same refusals everywhere); only the
    # chief writes it, and all read its checkpoint after the barrier.
    distribute.barrier()
    if distribute.is_chief():
        folder.create()
    distribute.barrier()
    _, history = pretrain(
        args,
        train,
        args.output,
        augmentation=args.augmentation,
        preprocessor=preprocessor,
        standardizer=standardizer,
        initial=initial,
        probe_split=probe_split,
    )
    fingerprints = None
    if distribute.is_chief():
        # Of every record this run pretrained on (all processes' shards).
        fingerprints = save_pretraining_fingerprints(args.output, train, initial)
    results = {
        "backend": keras.backend.backend(),
        "model": os.path.join(args.output, "pretrained.keras"),
        "init_from_preset": getattr(args, "init_from_preset", None),
        "loss": [float(v) for v in history["loss"]],
        "train_records": len(train),
        "record_fingerprints": fingerprints,
        "split": split_summary(data, (train, val, test)),
        "online_probe": history.get("online_probe"),
    }
    if distribute.process_count() > 1:
        results["processes"] = distribute.process_count()
    if not distribute.is_chief():
        print("results are written by process 0", flush=True)
        return results
    path = folder.finish(results)
    print(f"\nResults written to {path}")
    return results


# ----------------------------------------------------------------------------
# Downstream
# ----------------------------------------------------------------------------


def _table(rows, columns):
    header = "| " + " | ".join(columns) + " |"
    lines = [header, "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [
            f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def downstream_options(args, mode):
    """`train_downstream` keyword arguments from the CLI flags."""
    options = dict(
        epochs=args.eval_epochs,
        patience=args.patience,
        min_epochs=args.min_epochs,
        learning_rate=args.eval_lr,
        window_seconds=args.window_seconds,
        stride_seconds=args.stride_seconds,
    )
    if mode in ("finetune", "scratch"):
        # `finetune --random-init` (scratch) honours these flags too.
        options.update(
            linear_probe_epochs=getattr(args, "linear_probe_epochs", None),
            discriminative_lr=getattr(args, "discriminative_lr", None),
            backbone_batch_norm=getattr(args, "backbone_batch_norm", None),
        )
    hidden = getattr(args, "head_hidden_dims", None)
    dropout = getattr(args, "head_dropout", None)
    if hidden is not None:
        options["head_hidden_dims"] = tuple(hidden)
    if dropout is not None:
        if hidden is None:
            hidden = DOWNSTREAM_DEFAULTS[mode]["head_hidden_dims"]
        # fastai's head: half the rate before the hidden layers.
        options["dropout"] = (dropout / 2,) * len(hidden) + (dropout,)
    return options


def bootstrap_settings(args):
    """`(num_resamples, seed)` of `--bootstrap-resamples/--bootstrap-seed`."""
    return (
        getattr(args, "bootstrap_resamples", 0),
        getattr(args, "bootstrap_seed", 0),
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
            for key in ("num_resamples", "seed", "confidence", "num_classes")
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


def paired_difference(labels, scores_a, scores_b, args):
    """Paired bootstrap difference A - B of the macro AUROC and AUPRC on the
    same records (`keras_ecg.evaluation.paired_bootstrap`); point differences
    with `None` bounds when `--bootstrap-resamples 0`."""
    from keras_ecg.evaluation.bootstrap import macro_metrics
    from keras_ecg.evaluation.bootstrap import paired_bootstrap

    num_resamples, seed = bootstrap_settings(args)
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
    args,
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
        batch_size=min(args.eval_batch_size, len(train)),
        seed=args.seed,
        verbose=fit_verbosity() if verbose is None else verbose,
        callbacks=callbacks,
        **downstream_options(args, mode),
    )
    row = {
        "best_epoch": result["best_epoch"] + 1,  # 1-based, as Keras prints
        "epochs_run": sum(s["epochs_run"] for s in result["stages"]),
        "val_macro_auc": result["best_val_auc"],
    }
    if len(test):
        num_resamples, seed = bootstrap_settings(args)
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


def downstream_protocol(args):
    """The protocol of a downstream command: `--protocol`, else the command's."""
    if args.command == "downstream":
        return args.protocol
    if args.command == "linear-eval":
        return "linear"
    return "scratch" if args.random_init else "finetune"


# Flags of `downstream` that only some protocols use.
_PROTOCOL_FLAGS = (
    ("linear_probe_epochs", "--linear-probe-epochs", ("finetune",)),
    ("discriminative_lr", "--discriminative-lr", ("finetune", "scratch")),
    ("backbone_batch_norm", "--backbone-batch-norm", ("finetune", "scratch")),
)


def check_protocol_flags(args, protocol):
    """Refuses `downstream` flags the protocol would silently ignore."""
    if args.command != "downstream":
        return
    for attribute, flag, protocols in _PROTOCOL_FLAGS:
        if getattr(args, attribute, None) is not None and protocol not in protocols:
            raise InputError(
                f"{flag} applies to --protocol {' or '.join(protocols)}, not "
                f"{protocol}."
            )
    if args.random_init_baseline and (args.random_init or protocol == "scratch"):
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


def run_downstream(args):
    mode = downstream_protocol(args)
    _print_header(args, f"{args.command} ({mode})")
    check_protocol_flags(args, mode)
    preprocessor, backbone, source, preset_path = None, None, None, None
    if args.checkpoint:
        pretrained = _load_keras(args.checkpoint, "--checkpoint")
        preprocessor = _require_preprocessor(
            pretrained, args.checkpoint, "--checkpoint"
        )
        backbone = getattr(pretrained, "backbone", None)
        if backbone is None:
            raise InputError(
                f"--checkpoint {args.checkpoint}: a {type(pretrained).__name__} "
                "has no `backbone`; pass a model saved by `keras-ecg pretrain`."
            )
        check_checkpoint_encoder(args, pretrained)
        rate = _model_rate(args, preprocessor, "pretrained model")
        source = f"--checkpoint {args.checkpoint}"
    elif getattr(args, "init_from_preset", None):
        handle = args.init_from_preset
        path = preset_path = open_preset(handle)
        # The preprocessing first: without it the backbone is not usable.
        preprocessor = load_preset_part(handle, path, "preprocessor")
        backbone = load_preset_part(handle, path, "backbone")
        rate = _model_rate(args, preprocessor, "preset")
        source = f"--init-from-preset {handle}"
    else:
        check_encoder(args)
        rate = args.sampling_rate or 100
    data = load_data(args, rate)
    train, val, test = split_data(args, data)
    _describe(train, val, test)
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise InputError(
                f"no {name} records (folds {getattr(args, name + '_folds')}) in "
                f"{args.data}; choose --train-folds / --val-folds."
            )
    if data.labels is None or data.num_classes == 0:
        raise InputError(f"--data {args.data} has no labels to train a classifier.")
    folder = run_folder(args, args.command, data)
    folder.check()
    if preprocessor is None:
        preprocessor = make_preprocessor(LeadStandardizer().fit(train), train)
    standardizer = _standardizer_of(preprocessor)
    _check_leads(args, data, preprocessor)
    # The splits stay in mV (possibly views of a memory-mapped cache): the
    # pipelines standardise every crop and window on the fly.
    window = seconds_to_samples(args.window_seconds, rate)
    train, val = (
        drop_short_records(d, window, f"{args.window_seconds:g} s window")
        for d in (train, val)
    )
    if len(test):
        test = drop_short_records(test, window, f"{args.window_seconds:g} s window")
    # Which test records the weights (or this run's train/val) already saw:
    # reported, and under --strict refused before anything is written.
    seen, source = starting_fingerprints(args, preset_path)
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
    refuse_seen_records(args, leakage)
    if backbone is None:
        keras.utils.set_random_seed(args.seed)
        backbone = build_method(
            args.method,
            size=args.size,
            input_leads=train.num_leads,
            encoder=args.encoder,
        ).backbone
    elif mode == "scratch":
        # Same architecture and preprocessing as the pretrained encoder, so
        # that only the starting weights differ.
        backbone = fresh_backbone(backbone, args.seed)
        print(
            f"scratch: a freshly initialised {type(backbone).__name__}, the "
            f"architecture of {source}",
            flush=True,
        )
    baseline = getattr(args, "random_init_baseline", False)
    baseline_backbone = fresh_backbone(backbone, args.seed) if baseline else None
    folder.create()
    watch = TrainingWatch(
        args, args.output, args.command, title=f"{args.command} ({mode})"
    )
    print(watch.describe(), flush=True)
    result, row = train_and_score(
        backbone,
        train,
        val,
        test,
        args,
        mode,
        preprocessor=preprocessor,
        standardizer=standardizer,
        callbacks=watch.callbacks,
    )
    watch.finish()
    model = result["model"]
    model.label_set = args.label_set
    path = os.path.join(args.output, "classifier.keras")
    model.save(path)
    # What the classifier's weights saw, for `evaluate` (unknown sets left out).
    known = {"pretraining": seen, "training": train_val}
    record_fingerprints.save_fingerprints(
        record_fingerprints.sidecar_path(path),
        {name: value for name, value in known.items() if value is not None},
    )
    rows = [{"weights": "random init" if args.random_init else "pretrained", **row}]
    extra = {}
    if baseline:
        print(f"\nrandom-init baseline: {mode} on a fresh copy of the encoder")
        base_result, base_row = train_and_score(
            baseline_backbone,
            train,
            val,
            test,
            args,
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
    print(_table(rows, columns))
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
                args,
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
        "checkpoint": args.checkpoint,
        "init_from_preset": getattr(args, "init_from_preset", None),
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


# ----------------------------------------------------------------------------
# Evaluation, embeddings, predictions
# ----------------------------------------------------------------------------


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


def _labelled(args, data, model):
    """`data` with the labels of `--labels`, or its own (WFDB `#Dx`, PTB-XL).

    Clinical exports carry no PTB-XL or SNOMED CT labels: without
    `--labels`, evaluating on them (even mixed with labelled WFDB records,
    which would score them as all-negative) is refused.
    """
    if args.labels is None:
        clinical = clinical_records(data)
        if clinical:
            raise InputError(
                f"--data {args.data}: {len(clinical)} record(s) are clinical ECG "
                f"exports (first: {clinical[:3]}), which carry no PTB-XL or "
                "SNOMED CT labels; pass --labels CSV with a record_id column and "
                "either a labels column of codes or one 0/1 column per class."
            )
        return data
    from keras_ecg.data.label_table import apply_label_table

    if not os.path.isfile(args.labels):
        raise InputError(f"--labels {args.labels}: file not found.")
    from keras_ecg.data.errors import ECGDataError

    try:
        data, unused = apply_label_table(
            data, args.labels, getattr(model, "label_vocabulary", None)
        )
    except ECGDataError as error:
        # The table, not a record, is wrong: no --skip-bad-records hint.
        raise InputError(f"--labels {error}") from error
    print(
        f"labels from {args.labels}: {data.num_classes} classes "
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


def run_evaluate(args):
    _print_header(args, "evaluate")
    model = _load_keras(args.model, "--model")
    preprocessor = _require_preprocessor(model, args.model, "--model")
    rate = _model_rate(args, preprocessor, "model")
    data = _labelled(args, load_data(args, rate), model)
    if data.labels is None:
        raise InputError(f"--data {args.data} has no labels to evaluate against.")
    data = select_split(args, data, args.split)
    if len(data) == 0:
        raise InputError(f"no records in the {args.split!r} split of {args.data}.")
    folder = run_folder(args, "evaluate", data)
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
    sets = _fingerprint_sets(
        lambda: record_fingerprints.model_fingerprints(args.model),
        f"--model {args.model}",
    )
    source = f"--model {args.model}"
    leakage = leakage_report(
        data,
        (sets or {}).get("pretraining"),
        (sets or {}).get("training"),
        args.split,
        {"pretraining": source, "training": source},
    )
    refuse_seen_records(args, leakage)
    folder.create()
    result = evaluate_records(
        model,
        data,
        window_seconds=preprocessor.window_seconds,
        stride_seconds=preprocessor.stride_seconds,
        batch_size=args.batch_size,
        aggregation=preprocessor.aggregation,
        output_indices=outputs,
        standardizer=_statistics_of(preprocessor),
        bootstrap=args.bootstrap_resamples,
        bootstrap_seed=args.bootstrap_seed,
    )
    print(
        f"{args.split} macro AUC over {len(result['included'])} classes with "
        f"positives and negatives, {len(data)} records: {result['macro_auc']:.4f}"
    )
    fields = interval_fields(result)
    print(describe_intervals(fields, args.split, len(data)))
    results = {
        "split": args.split,
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


def run_embed(args):
    _print_header(args, "embed")
    from keras_ecg.evaluation.embeddings import export_embeddings
    from keras_ecg.evaluation.embeddings import plot_embeddings_2d
    from keras_ecg.evaluation.linear_probe import extract_embeddings

    pretrained = _load_keras(args.checkpoint, "--checkpoint")
    preprocessor = _require_preprocessor(pretrained, args.checkpoint, "--checkpoint")
    rate = _model_rate(args, preprocessor, "pretrained model")
    data = select_split(args, load_data(args, rate), args.split)
    if len(data) == 0:
        raise InputError(f"no records in the {args.split!r} split of {args.data}.")
    folder = run_folder(args, "embed", data)
    folder.check()
    window = max(
        seconds_to_samples(args.window_seconds, rate), preprocessor.window_length
    )
    data = drop_short_records(data, window, f"{window / rate:g} s window")
    data = preprocessor.prepare(data, standardize=False)
    folder.create()
    embeddings = extract_embeddings(
        pretrained.backbone,
        data,
        window_seconds=args.window_seconds,
        stride_seconds=args.stride_seconds,
        standardizer=_statistics_of(preprocessor),
    )
    paths = export_embeddings(
        embeddings,
        data.record_ids,
        data.labels,
        data.classes,
        os.path.join(args.output, "embeddings"),
    )
    results = {"embeddings": [str(p) for p in paths], "shape": list(embeddings.shape)}
    print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} -> {paths}")
    if args.plot:
        png = os.path.join(args.output, f"embeddings_{args.plot}.png")
        plot_embeddings_2d(
            embeddings, data.labels, data.classes, png, method=args.plot, seed=args.seed
        )
        results["plot"] = png
        print(f"2-D {args.plot} plot -> {png}")
    out = folder.finish(results)
    print(f"Results written to {out}")
    return results


def run_predict(args):
    _print_header(args, "predict")
    output = args.output
    if os.path.isdir(output):
        raise InputError(f"--output {output} is a folder; give a .csv file path.")
    if os.path.exists(output) and not args.overwrite:
        raise InputError(
            f"--output {output} exists; pass --overwrite to replace it, or choose "
            "another file."
        )
    model = _load_keras(args.model, "--model")
    _require_preprocessor(model, args.model, "--model")
    if not hasattr(model, "predict_records"):
        raise InputError(f"--model {args.model} is not a keras-ecg classifier.")
    explain_dir = _check_explain(args, model)
    for path in args.data:
        if not os.path.exists(path):
            raise InputError(f"--data {path}: not found.")
    records = args.data[0] if len(args.data) == 1 else list(args.data)
    # Read here rather than inside predict_records, to report what was
    # derived; the prepared records pass through predict_records unchanged.
    data = model.preprocessor.prepare(
        records,
        on_error="skip" if args.skip_bad_records else "raise",
        standardize=False,
    )
    report_derived_leads(data)
    frame = model.predict_records(
        data, batch_size=args.batch_size, threshold=args.threshold
    )
    if explain_dir is not None:
        from keras_ecg.explain.report import write_explanations

        print(
            f"explaining the top {args.explain} class(es) of {len(frame)} "
            f"record(s): integrated gradients, {args.explain_steps} steps",
            flush=True,
        )
        frame = write_explanations(
            frame,
            model,
            data,
            args.explain,
            args.explain_steps,
            explain_dir,
            args.batch_size,
        )
        print(f"{len(frame)} explanation plot(s) -> {explain_dir}", flush=True)
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    frame.to_csv(output, index=False)
    print(
        f"{len(frame)} record(s) x {model.num_classes} classes -> {output}",
        flush=True,
    )
    return {"records": len(frame), "output": output}


def _check_explain(args, model):
    """The folder of `predict --explain`'s plots, or None without --explain."""
    if getattr(args, "explain", None) is None:
        return None
    from keras_ecg.explain.report import check_explain_options
    from keras_ecg.explain.report import default_explain_dir

    folder = args.explain_dir or default_explain_dir(args.output)
    try:
        check_explain_options(
            args.explain, model.num_classes, folder, args.overwrite, args.explain_steps
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    return folder


def plot_trial_curves(project_dir, method):
    """`training_curves.png` beside each trial's CSV log of a search."""
    import glob

    from keras_ecg import plot
    from keras_ecg.training_logs import CSV_NAME
    from keras_ecg.training_logs import CURVES_NAME

    for path in sorted(glob.glob(os.path.join(project_dir, "trial_*", CSV_NAME))):
        trial = os.path.basename(os.path.dirname(path))
        try:
            plot.plot_training_log(
                path,
                title=f"tune {method}: {trial}",
                path=os.path.join(os.path.dirname(path), CURVES_NAME),
            )
        except ImportError:
            print(f"no {CURVES_NAME}: it needs matplotlib", flush=True)
            return


def run_tune(args):
    _print_header(args, "tune")
    from keras_ecg.tuning import run_search

    check_encoder(args)
    data = load_data(args, args.sampling_rate or 100)
    train, val, _ = split_data(args, data)
    folder = run_folder(args, "tune", data)
    folder.check()
    # Fitted streaming; every trial's pipelines apply it (no copies).
    standardizer = LeadStandardizer().fit(train)
    folder.create()
    # One CSV log per trial (in its trial folder) and one TensorBoard run.
    logs = TrainingLogs(args.output, "tune")
    print(logs.describe(), flush=True)
    result = run_search(
        args.method,
        train,
        val,
        standardizer=standardizer,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        directory=args.output,
        seed=args.seed,
        size=args.size,
        batch_size=args.batch_size,
        verbose=fit_verbosity(),
        encoder=args.encoder,
        callbacks=logs.callbacks,
    )
    plot_trial_curves(result["project_dir"], args.method)
    print(
        f"best probe AUC {result['best_score']:.4f} with "
        f"{result['best_hyperparameters']}; model: {result['best_model_path']}"
    )
    out = folder.finish(result)
    print(f"Results written to {out}")
    return result


# ----------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------


DEMO_FRACTIONS = (0.05, 0.2)
DEMO_PRETRAIN_EPOCHS = 15


def run_demo(args):
    """Pretrains on the training records, then trains classifiers on a few
    labelled records: pretrained (linear, finetune) vs random init (linear) and
    supervised from scratch, scored on held-out records."""
    _print_header(args, "demo")
    if args.data == "synthetic":
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
    args.epochs = args.epochs or DEMO_PRETRAIN_EPOCHS
    args.label_fractions = list(args.label_fractions or DEMO_FRACTIONS)
    data = load_data(args, args.sampling_rate or 100)
    train, val, test = split_data(args, data)
    _describe(train, val, test)
    if not (len(train) and len(val) and len(test)):
        raise InputError("the demo needs train, val and test records; see --*-folds.")
    check_augmentation(args)
    check_encoder(args)
    probe_split = probe_records(args, val)
    folder = run_folder(args, "demo", data)
    folder.check()
    preprocessor = ECGPreprocessor.from_data(train, window_seconds=args.window_seconds)
    # Checked, still in mV: pretraining and the classifiers' pipelines apply
    # the statistics to every crop and window (no standardised copies).
    train, val, test = (
        preprocessor.prepare(d, standardize=False) for d in (train, val, test)
    )
    folder.create()

    print(f"\n[1/3] self-supervised pretraining ({args.method}), no labels", flush=True)
    pretrained, history = pretrain(
        args,
        train,
        args.output,
        augmentation=args.augmentation,
        preprocessor=preprocessor,
        standardizer=preprocessor,
        probe_split=probe_split,
    )
    pretrained_path = os.path.join(args.output, "pretrained.keras")
    fingerprints = save_pretraining_fingerprints(args.output, train)

    def backbone(kind):
        if kind == "pretrained":
            return keras.saving.load_model(pretrained_path).backbone
        keras.utils.set_random_seed(args.seed + 1)
        return build_method(
            args.method,
            size=args.size,
            input_leads=train.num_leads,
            encoder=args.encoder,
        ).backbone

    protocols = (
        ("pretrained, linear", "pretrained", "linear"),
        ("pretrained, finetune", "pretrained", "finetune"),
        ("random init, linear", "random", "linear"),
        ("supervised from scratch", "random", "scratch"),
    )
    fractions = args.label_fractions
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
        subset = label_fraction_subset(train, fraction, seed=args.seed)
        row = {"labelled records": len(subset)}
        cell, interval, scores = dict(row), dict(row), {}
        for name, kind, mode in protocols:
            t0 = time.time()
            # Each classifier's curves: a TensorBoard run and a CSV of its own.
            label = f"{len(subset)}_records_{kind}_{mode}"
            logs = TrainingLogs(args.output, label, subfolder=f"classifiers/{label}")
            result, scored = train_and_score(
                backbone(kind),
                subset,
                val,
                test,
                args,
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
                test.labels[:, mask], scores[a][:, mask], scores[b][:, mask], args
            )
            differences.append(
                {"labelled records": len(subset), "a": a, "b": b, **difference}
            )
        rows.append(row)
        cells.append(cell)
        intervals.append(interval)
    columns = ["labelled records"] + [p[0] for p in protocols]
    table = _table(cells, columns)
    few = rows[0]
    gain = min(
        few["pretrained, finetune"] - few["supervised from scratch"],
        max(few["pretrained, linear"], few["pretrained, finetune"])
        - few["random init, linear"],
    )
    num_resamples, seed = bootstrap_settings(args)
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
        "method": args.method,
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


# ----------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------

# The model a run folder's preset holds: the classifier of a downstream run,
# else the pretrained model.
_RUN_MODELS = ("classifier.keras", "pretrained.keras")
# Settings kept out of a preset's metadata: local paths.
_LOCAL_SETTINGS = ("data", "checkpoint")


def run_preset_save(args):
    """`keras-ecg preset save RUN_DIR PRESET_DIR`."""
    import json

    from keras_ecg.presets import PresetError
    from keras_ecg.presets import save_to_preset
    from keras_ecg.presets.preset_files import check_destination
    from keras_ecg.run_folder import MANIFEST

    run_dir, preset_dir = args.run_dir, args.preset_dir
    manifest_path = os.path.join(run_dir, MANIFEST)
    if not os.path.isdir(run_dir):
        raise InputError(f"RUN_DIR {run_dir}: no such folder.")
    if not os.path.isfile(manifest_path):
        raise InputError(
            f"RUN_DIR {run_dir}: not a keras-ecg run folder (no {MANIFEST})."
        )
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        raise InputError(f"{manifest_path} is unreadable ({error}).") from error
    command = manifest.get("command")
    if manifest.get("status") != "finished":
        raise InputError(
            f"RUN_DIR {run_dir}: its {command} run is not finished (status "
            f"{manifest.get('status')!r}); finish it first."
        )
    model_path = next(
        (
            os.path.join(run_dir, name)
            for name in _RUN_MODELS
            if os.path.isfile(os.path.join(run_dir, name))
        ),
        None,
    )
    if model_path is None:
        raise InputError(
            f"RUN_DIR {run_dir}: its {command} run left no "
            f"{' or '.join(_RUN_MODELS)} to save."
        )
    try:
        check_destination(preset_dir, args.overwrite, "PRESET_DIR")
    except PresetError as error:
        raise InputError(str(error)) from None
    model = _load_keras(model_path, "RUN_DIR")
    preprocessor = _require_preprocessor(model, model_path, "RUN_DIR")
    settings = {
        key: value
        for key, value in (manifest.get("settings") or {}).items()
        if key not in _LOCAL_SETTINGS
    }
    data = dict(manifest.get("data") or {})
    path = data.pop("path", None)
    if path is not None:
        data["source"] = path if path == "synthetic" else os.path.basename(path)
    metadata = {
        "training_run": {"command": command, "settings": settings, "data": data},
    }
    if data.get("fingerprint"):
        metadata["data_fingerprint"] = data["fingerprint"]
    if command in ("pretrain", "demo") and os.path.basename(model_path) == (
        "pretrained.keras"
    ):
        metadata.update(
            {key: settings[key] for key in ("method", "size") if key in settings}
        )
    if args.description:
        metadata["description"] = args.description
    fingerprints = _fingerprint_sets(
        lambda: record_fingerprints.model_fingerprints(model_path), "RUN_DIR"
    )
    save_to_preset(
        model,
        preset_dir,
        preprocessor=preprocessor,
        metadata=metadata,
        record_fingerprints=fingerprints,
    )
    backbone = getattr(model, "backbone", None)
    print(
        f"preset saved to {preset_dir}: the {type(model).__name__} of "
        f"{model_path}"
        + (f" with its {type(backbone).__name__} backbone" if backbone else "")
        + f", preprocessing {preprocessor.sampling_rate} Hz / "
        f"{preprocessor.num_leads} leads",
        flush=True,
    )
    return {"preset": preset_dir, "model": model_path}
