"""`keras-ecg pretrain`: self-supervised pretraining of a method's encoder.

```python
from keras_ecg import jobs

jobs.pretrain(jobs.PretrainSettings(method="simclr", size="tiny", epochs=1))
```
"""

import contextlib
import dataclasses
import os
from typing import ClassVar

import keras

from keras_ecg import choices
from keras_ecg import distribute
from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.callbacks import StopOnNonFiniteLoss
from keras_ecg.callbacks import resumable_fit
from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.data.durations import drop_short_records
from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.splits import split_summary
from keras_ecg.jobs.common import LostProcessError
from keras_ecg.jobs.common import build_on_batch
from keras_ecg.jobs.common import check_augmentation
from keras_ecg.jobs.common import check_encoder
from keras_ecg.jobs.common import check_leads
from keras_ecg.jobs.common import describe_split
from keras_ecg.jobs.common import fit_verbosity
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import load_preset_part
from keras_ecg.jobs.common import make_preprocessor
from keras_ecg.jobs.common import model_rate
from keras_ecg.jobs.common import open_preset
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import split_data
from keras_ecg.jobs.common import standardizer_of
from keras_ecg.jobs.leakage import fingerprint_sets
from keras_ecg.jobs.leakage import save_pretraining_fingerprints
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import ModelSettings
from keras_ecg.jobs.settings import MultiProcessSettings
from keras_ecg.jobs.settings import OnlineProbeSettings
from keras_ecg.jobs.settings import check_length
from keras_ecg.models.method_factory import CROP_SECONDS
from keras_ecg.models.method_factory import SINGLE_CROP_METHODS
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.models.method_factory import pretraining_optimizer
from keras_ecg.models.method_factory import resolve_encoder
from keras_ecg.run_watch import TrainingWatch
from keras_ecg.run_watch import probe_records
from keras_ecg.utils import enable_determinism


@dataclasses.dataclass(kw_only=True)
class PretrainSettings(
    DataSettings, ModelSettings, OnlineProbeSettings, MultiProcessSettings
):
    """The settings of `keras-ecg pretrain` (its flags, same defaults)."""

    command: ClassVar[str] = "pretrain"
    RULES: ClassVar[dict] = {
        "epochs": ">= 1",
        "lr": "> 0",
        "batch_size": ">= 1",
        "crop_seconds": "> 0",
        "checkpoint_every_steps": ">= 0",
    }
    CHOICES: ClassVar[dict] = {
        "method": choices.METHODS,
        "encoder": choices.ENCODERS,
    }

    output: str = "runs/pretrain"
    overwrite: bool = False
    method: str
    encoder: str | None = None
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    crop_seconds: float | None = None
    augmentation: str = "rrc_to"
    init_from_preset: str | None = None
    checkpoint_every_steps: int = 50


def run(settings):
    """Pretrains `settings.method` (see `keras-ecg pretrain --help`) into
    `settings.output`; returns the results (also in `pretrain_results.json`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, preset, run folder).
        LostProcessError: a process of a multi-process job stopped answering.
    """
    settings = dataclasses.replace(settings).validate()
    # Before any other framework work: TF's multi-worker strategy must be
    # created at program start.
    process = join_job(settings)
    try:
        return run_job(_run_pretrain, settings)
    except Exception as error:
        lost = lost_process_error(error, process, settings.output)
        if lost is None:
            raise
        raise lost from error


def _augmentation(name, sampling_rate, seed=None):
    from keras_ecg.layers.augmentation.presets import paper_augmentations

    return paper_augmentations(name, sampling_rate=sampling_rate, seed=seed)


def pretrain_model(
    settings,
    train,
    output_dir,
    augmentation="rrc_to",
    preprocessor=None,
    standardizer=None,
    initial=None,
    probe_split=None,
):
    """Pretrains `settings.method` on `train`; checkpoints every N steps and
    resumes an interrupted run from `output_dir/backup`.

    Args:
        settings: a `PretrainSettings`, or any object with `method`, `size`,
            `lr`, `batch_size`, `epochs`, `seed` and optionally `encoder`,
            `crop_seconds`, `checkpoint_every_steps` (an `argparse.Namespace`).
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

    Reproducible: runs under `keras_ecg.utils.enable_determinism(settings.seed)`,
    which stays in effect for the rest of the process.
    """
    enable_determinism(settings.seed)
    multi_process = distribute.process_count() > 1

    # In a multi-process job: the model spans every process's devices.
    def scope():
        return distribute.data_parallel() if multi_process else contextlib.nullcontext()

    with scope():
        if initial is not None and initial.continues:
            # Loaded in the scope: a multi-process job places its variables.
            model = initial.load_model()
            distribute.synchronize_batch_norm(
                model, getattr(settings, "synchronized_batch_norm", False)
            )
        else:
            model = build_method(
                settings.method,
                size=settings.size,
                input_leads=train.num_leads,
                synchronized_batch_norm=getattr(
                    settings, "synchronized_batch_norm", False
                ),
                encoder=getattr(settings, "encoder", None),
            )
            if initial is not None:
                initial.copy_backbone_into(model, train.num_leads)
    crop_seconds = (
        getattr(settings, "crop_seconds", None) or CROP_SECONDS[settings.method]
    )
    batch_size = min(settings.batch_size, len(train))
    crop = seconds_to_samples(crop_seconds, train.sampling_rate)
    records, seed, local_batch = len(train), settings.seed, batch_size
    if multi_process:
        train, local_batch = process_shard(train, batch_size, crop, crop_seconds)
        # Other records per process: other crops and augmentations too.
        seed = settings.seed + distribute.process_index()
    dataset = make_method_dataset(
        settings.method,
        train,
        batch_size=local_batch,
        augmentation=_augmentation(augmentation, train.sampling_rate),
        crop_seconds=crop_seconds,
        seed=seed,
        standardizer=standardizer,
    )
    # CPC and JEPA pretrain on plain crops, as their references.
    views = (
        ""
        if settings.method in SINGLE_CROP_METHODS
        else f", augmentation {augmentation}"
    )
    shard = ""
    if multi_process:
        shard = (
            f" (process {distribute.process_index()} of "
            f"{distribute.process_count()}: {len(train)} records, "
            f"{local_batch} per batch)"
        )
    encoder = resolve_encoder(settings.method, getattr(settings, "encoder", None))
    print(
        f"pretraining {settings.method} ({settings.size}, {encoder} encoder) on "
        f"{records} records{shard}: "
        f"{crop_seconds:g} s crops ({crop} samples at {train.sampling_rate} Hz), "
        f"batch {batch_size}, lr {settings.lr:g}{views}, {settings.epochs} epochs",
        flush=True,
    )
    with scope():
        # JEPA's learning-rate schedule spans the run: its length is known
        # once the dataset is.
        steps = int(dataset.cardinality())
        model.compile(
            optimizer=pretraining_optimizer(
                settings.method,
                settings.lr,
                settings.epochs * steps if steps > 0 else None,
            )
        )
        build_on_batch(model, dataset)
        backup = os.path.join(output_dir, "backup")
        watch = TrainingWatch(
            settings,
            output_dir,
            "pretrain",
            probe_split=probe_split,
            standardizer=standardizer,
            fresh=StepCheckpoint(backup).read_metadata() is None,
            title=f"{settings.method} pretraining ({settings.size}, {encoder} encoder)",
        )
        print(watch.describe(), flush=True)
        # Step checkpoints: a killed run resumes from its last step; a NaN/inf
        # loss raises NonFiniteLossError before the bad state is checkpointed.
        history = resumable_fit(
            model,
            dataset,
            epochs=settings.epochs,
            backup_dir=backup,
            save_every_steps=getattr(settings, "checkpoint_every_steps", 50),
            callbacks=[StopOnNonFiniteLoss(method=settings.method), *watch.callbacks],
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


def join_job(settings):
    """Joins the multi-process job that `--distributed` asks for (or None)."""
    mode = getattr(settings, "distributed", "none")
    if mode == "none":
        return None
    try:
        if mode == "auto" and distribute.resolve_process_settings() is None:
            return None
        process = distribute.initialize_multi_process(
            job_addresses=settings.job_addresses,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            timeout_seconds=settings.collective_timeout_seconds,
        )
    except ValueError as error:
        raise InputError(f"--distributed {mode}: {error}") from error
    except NotImplementedError as error:
        raise InputError(str(error)) from error
    if process is None:
        raise InputError(
            f"--distributed {mode}: the settings describe a single process; "
            "give --num-processes > 1 (or drop --distributed)."
        )
    print(
        f"process {process.process_id} of {process.num_processes} joined the "
        f"job at {process.job_addresses[0]} (settings from {process.source})",
        flush=True,
    )
    return process


def lost_process_error(error, process, output):
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
    if process is None:
        return None
    if isinstance(error, distribute.ProcessLostError):
        return LostProcessError(f"{error}. {restart}")
    names = {"UnavailableError", "DeadlineExceededError", "AbortedError"}
    if type(error).__name__ not in names:
        return None
    lines = [line for line in str(error).splitlines() if line.strip()]
    return LostProcessError(
        f"process {process.process_id} of {process.num_processes}: another "
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


def load_pretraining_start(settings):
    """The `PretrainingStart` of `--init-from-preset`, or None."""
    handle = getattr(settings, "init_from_preset", None)
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
    if task_class is not type(build_method(settings.method, size="tiny")):
        backbone = load_preset_part(handle, path, "backbone")
    if backbone is None:
        print(
            f"continuing the pretraining of the {task_class.__name__} of preset "
            f"{handle} (its architecture; --size is not used)",
            flush=True,
        )
    else:
        print(
            f"initialising the {settings.method} encoder from the "
            f"{type(backbone).__name__} backbone of preset {handle}",
            flush=True,
        )
    fingerprints = fingerprint_sets(
        lambda: record_fingerprints.preset_fingerprints(path),
        f"--init-from-preset {handle}",
    )
    return PretrainingStart(
        handle, path, backbone, preprocessor, metadata, fingerprints
    )


def _run_pretrain(settings):
    print_header(settings, "pretrain")
    initial = load_pretraining_start(settings)
    preset_preprocessor = None if initial is None else initial.preprocessor
    if preset_preprocessor is not None:
        rate = model_rate(settings, preset_preprocessor, "preset")
    else:
        rate = settings.sampling_rate or 100
    data = load_data(settings, rate)
    train, val, test = split_data(settings, data)
    describe_split(train, val, test)
    if len(train) == 0:
        raise InputError(
            f"no training records in folds {settings.train_folds} of {settings.data}."
        )
    check_length(
        "--crop-seconds",
        settings.crop_seconds or CROP_SECONDS[settings.method],
        train,
        "training",
    )
    check_augmentation(settings)
    check_encoder(settings)
    probe_split = probe_records(settings, val)
    folder = run_folder(settings, "pretrain", data)
    if folder.check() == "resume":
        print(f"resuming the unfinished run in {settings.output}", flush=True)
    if preset_preprocessor is not None:
        # As with --checkpoint downstream: the preset's rate, leads and
        # statistics, which its weights were trained with.
        check_leads(settings, data, preset_preprocessor)
        preprocessor = preset_preprocessor
        standardizer = standardizer_of(preprocessor)
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
    _, history = pretrain_model(
        settings,
        train,
        settings.output,
        augmentation=settings.augmentation,
        preprocessor=preprocessor,
        standardizer=standardizer,
        initial=initial,
        probe_split=probe_split,
    )
    fingerprints = None
    if distribute.is_chief():
        # Of every record this run pretrained on (all processes' shards).
        fingerprints = save_pretraining_fingerprints(settings.output, train, initial)
    results = {
        "backend": keras.backend.backend(),
        "model": os.path.join(settings.output, "pretrained.keras"),
        "init_from_preset": getattr(settings, "init_from_preset", None),
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
