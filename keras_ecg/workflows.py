"""Backward-compatible names of the CLI's jobs, now in `keras_ecg.jobs`.

`run(args)` runs an `argparse.Namespace` of `keras_ecg.cli.build_parser`
through `keras_ecg.jobs`; `pretrain(args, train, output_dir, ...)` is
`keras_ecg.jobs.pretrain.pretrain_model`. New code uses `keras_ecg.jobs`.
"""

from keras_ecg.jobs import COMMANDS
from keras_ecg.jobs import settings_from_namespace
from keras_ecg.jobs.common import LostProcessError
from keras_ecg.jobs.common import build_on_batch
from keras_ecg.jobs.common import check_augmentation
from keras_ecg.jobs.common import check_checkpoint_encoder
from keras_ecg.jobs.common import check_encoder
from keras_ecg.jobs.common import clinical_records
from keras_ecg.jobs.common import data_info
from keras_ecg.jobs.common import fit_verbosity
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import load_preset_part
from keras_ecg.jobs.common import make_preprocessor
from keras_ecg.jobs.common import open_preset
from keras_ecg.jobs.common import report_derived_leads
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import select_split
from keras_ecg.jobs.common import split_data
from keras_ecg.jobs.demo import DEMO_FRACTIONS
from keras_ecg.jobs.demo import DEMO_PRETRAIN_EPOCHS
from keras_ecg.jobs.downstream import bootstrap_settings
from keras_ecg.jobs.downstream import check_protocol_flags
from keras_ecg.jobs.downstream import describe_difference
from keras_ecg.jobs.downstream import describe_intervals
from keras_ecg.jobs.downstream import downstream_options
from keras_ecg.jobs.downstream import downstream_protocol
from keras_ecg.jobs.downstream import fresh_backbone
from keras_ecg.jobs.downstream import interval_fields
from keras_ecg.jobs.downstream import paired_difference
from keras_ecg.jobs.downstream import train_and_score
from keras_ecg.jobs.evaluate import align_to_model
from keras_ecg.jobs.leakage import leakage_report
from keras_ecg.jobs.leakage import refuse_seen_records
from keras_ecg.jobs.leakage import save_pretraining_fingerprints
from keras_ecg.jobs.leakage import starting_fingerprints
from keras_ecg.jobs.pretrain import PretrainingStart
from keras_ecg.jobs.pretrain import join_job
from keras_ecg.jobs.pretrain import load_pretraining_start
from keras_ecg.jobs.pretrain import lost_process_error
from keras_ecg.jobs.pretrain import pretrain_model as pretrain
from keras_ecg.jobs.pretrain import process_shard
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import check_split_flags
from keras_ecg.jobs.settings import settings_of
from keras_ecg.jobs.tune import plot_trial_curves


def run(args):
    """Runs `args.command` (an `argparse.Namespace` from `cli.build_parser`)."""
    name = args.command
    if name == "preset":
        name = f"preset {args.preset_action}"
    settings_class, job = COMMANDS[name]
    return job(settings_from_namespace(settings_class, args))


__all__ = [
    "DEMO_FRACTIONS",
    "DEMO_PRETRAIN_EPOCHS",
    "InputError",
    "LostProcessError",
    "PretrainingStart",
    "align_to_model",
    "bootstrap_settings",
    "build_on_batch",
    "check_augmentation",
    "check_checkpoint_encoder",
    "check_encoder",
    "check_protocol_flags",
    "check_split_flags",
    "clinical_records",
    "data_info",
    "describe_difference",
    "describe_intervals",
    "downstream_options",
    "downstream_protocol",
    "fit_verbosity",
    "fresh_backbone",
    "interval_fields",
    "join_job",
    "leakage_report",
    "load_data",
    "load_preset_part",
    "load_pretraining_start",
    "lost_process_error",
    "make_preprocessor",
    "open_preset",
    "paired_difference",
    "plot_trial_curves",
    "pretrain",
    "process_shard",
    "refuse_seen_records",
    "report_derived_leads",
    "run",
    "run_folder",
    "save_pretraining_fingerprints",
    "select_split",
    "settings_of",
    "split_data",
    "starting_fingerprints",
    "train_and_score",
]
