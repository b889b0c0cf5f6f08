"""What the jobs share: reading and splitting the data, the run folder,
models and presets to start from, and the tables they print.

A job (`keras_ecg.jobs.pretrain`, ...) validates its settings, then runs
under `run_job`: a run folder it created is removed again when it fails,
unless it holds a resumable checkpoint.
"""

import contextvars
import os
import platform
import sys
import time

import keras
import numpy as np

from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import SettingsError
from keras_ecg.jobs.settings import parse_folds
from keras_ecg.jobs.settings import settings_of
from keras_ecg.models.method_factory import encoder_of
from keras_ecg.models.method_factory import resolve_encoder
from keras_ecg.run_folder import RunFolder
from keras_ecg.run_folder import dataset_fingerprint

__all__ = ["InputError", "SettingsError", "LostProcessError"]


class LostProcessError(RuntimeError):
    """A process of a multi-process job stopped answering (exit code 1)."""


# The run folders of the job running in this context (see `run_job`).
_RUN_FOLDERS = contextvars.ContextVar("keras_ecg_run_folders", default=None)


def run_job(job, settings):
    """`job(settings)`; when it raises, the run folders it created are
    removed (`RunFolder.discard`: kept if they hold a resumable checkpoint)
    and the error is raised again."""
    folders = []
    token = _RUN_FOLDERS.set(folders)
    try:
        return job(settings)
    except BaseException:
        for folder in folders:
            folder.discard()
        raise
    finally:
        _RUN_FOLDERS.reset(token)


def fit_verbosity():
    """Per-step progress bars on a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


def print_header(settings, what):
    print(
        f"keras-ecg {what} | backend={keras.backend.backend()} | "
        f"data={getattr(settings, 'data', None)} | python {platform.python_version()} "
        f"on {platform.machine()} ({os.cpu_count()} CPUs)",
        flush=True,
    )


def load_data(settings, sampling_rate, progress=True):
    """Loads `--data` at `sampling_rate` Hz as an `ECGDataset` in mV."""
    from keras_ecg.data.sources import detect_source
    from keras_ecg.data.sources import load_source

    try:
        source = detect_source(settings.data)
    except FileNotFoundError as error:
        raise InputError(str(error)) from error
    if progress:
        print(
            f"loading {settings.data} ({source}) at {sampling_rate} Hz ...", flush=True
        )
    start = time.time()
    try:
        data = load_source(
            settings.data,
            sampling_rate=sampling_rate,
            label_set=settings.label_set,
            num_synthetic_records=settings.num_records,
            cache_dir=settings.cache_dir,
            on_error="skip" if settings.skip_bad_records else "raise",
            seed=settings.seed,
            progress=progress,
        )
    except ValueError as error:
        from keras_ecg.data.errors import ECGDataError

        if isinstance(error, ECGDataError):
            raise
        raise InputError(f"--data {settings.data}: {error}") from error
    if len(data) == 0:
        raise InputError(f"--data {settings.data}: no readable records.")
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


def split_data(settings, data):
    """`(train, val, test)` by folds (PTB-XL, synthetic) or seeded fractions."""
    from keras_ecg.data.sources import split_dataset

    folds = {
        name: parse_folds(getattr(settings, f"{name}_folds"), f"--{name}-folds")
        for name in ("train", "val", "test")
    }
    return split_dataset(
        data,
        train_folds=folds["train"],
        val_folds=folds["val"],
        test_folds=folds["test"],
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
    )


def select_split(settings, data, split):
    if split == "all":
        return data
    return dict(zip(("train", "val", "test"), split_data(settings, data)))[split]


def data_info(settings, data):
    """What the results and the manifest record about the input data."""
    return {
        "path": os.path.abspath(settings.data)
        if settings.data != "synthetic"
        else "synthetic",
        "records": len(data),
        "sampling_rate": data.sampling_rate,
        "leads": list(data.lead_names),
        "label_set": settings.label_set,
        "num_classes": data.num_classes,
        "fingerprint": dataset_fingerprint(data),
    }


def run_folder(settings, command, data):
    """The `RunFolder` of this run (checked later, before anything is written).

    Under `run_job`, a folder it creates is removed if the job fails.
    """
    folder = RunFolder(
        settings.output,
        command,
        settings_of(settings),
        data_info(settings, data),
        settings.overwrite,
    )
    folders = _RUN_FOLDERS.get()
    if folders is not None:
        folders.append(folder)
    return folder


def describe_split(train, val, test):
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


def check_leads(settings, data, preprocessor):
    if list(data.lead_names) != list(preprocessor.lead_names):
        raise InputError(
            f"--data {settings.data} has leads {list(data.lead_names)}, the model "
            f"expects {list(preprocessor.lead_names)}."
        )


def standardizer_of(preprocessor):
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


def statistics_of(preprocessor):
    """The preprocessor as a pipeline `standardizer`, or None without statistics."""
    return preprocessor if preprocessor.standardizes else None


def model_rate(settings, preprocessor, what):
    """The sampling rate to load data at: the model's (checked against
    `--sampling-rate`)."""
    rate = int(round(preprocessor.sampling_rate))
    if settings.sampling_rate is not None and settings.sampling_rate != rate:
        raise InputError(
            f"--sampling-rate {settings.sampling_rate}: the {what} was trained at "
            f"{rate} Hz; its records are resampled to {rate} Hz (omit "
            "--sampling-rate)."
        )
    return rate


def load_keras(path, what):
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


def require_preprocessor(model, path, what):
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise InputError(
            f"{what} {path} carries no preprocessing (sampling rate, leads, "
            "standardisation): it was saved by an older keras-ecg or outside "
            "the CLI. Re-run `keras-ecg pretrain`/`finetune`, or attach an "
            "ECGPreprocessor before saving."
        )
    return preprocessor


def check_augmentation(settings):
    """Refuses an unknown `--augmentation` before anything is written."""
    from keras_ecg.layers.augmentation.presets import setting_tokens

    try:
        setting_tokens(settings.augmentation)
    except ValueError as error:
        raise InputError(f"--augmentation {settings.augmentation}: {error}") from error


def check_encoder(settings):
    """Resolves `--encoder` (None: the method's default) into `settings.encoder`,
    so that the manifest and results record it; refuses a combination the
    method cannot use before anything is written."""
    try:
        settings.encoder = resolve_encoder(
            settings.method, getattr(settings, "encoder", None)
        )
    except ValueError as error:
        raise InputError(f"--encoder {settings.encoder}: {error}") from error
    return settings.encoder


def check_checkpoint_encoder(settings, pretrained):
    """With `--checkpoint` the architecture is the checkpoint's: a given
    `--encoder` must name it."""
    if getattr(settings, "encoder", None) is None:
        return
    actual = encoder_of(pretrained)
    if actual != settings.encoder:
        raise InputError(
            f"--encoder {settings.encoder}: --checkpoint {settings.checkpoint} has "
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


def markdown_table(rows, columns):
    header = "| " + " | ".join(columns) + " |"
    lines = [header, "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [
            f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
