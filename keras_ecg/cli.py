"""`keras-ecg` command line: pretrain, evaluate, embed and predict on 12-lead ECG.

The Keras backend is fixed when Keras is first imported, so this module
imports nothing heavy at module level: `main` parses the arguments, sets
`KERAS_BACKEND` from `--backend`, and only then imports the jobs
(`keras_ecg.jobs`, and with them Keras). `keras-ecg --help` therefore imports
no framework.

Each job command parses into its settings dataclass
(`keras_ecg.jobs.settings_from_namespace`) and runs its job; `main` maps the
errors to exit codes and one line on stderr.

Every duration is in seconds (`--crop-seconds`, `--window-seconds`, ...);
samples are derived from the data's sampling rate.
"""

import argparse
import os
import sys

from keras_ecg.choices import BACKENDS
from keras_ecg.choices import ENCODERS
from keras_ecg.choices import METHODS
from keras_ecg.choices import PROTOCOLS
from keras_ecg.choices import SPLITS

# Exit codes: 1 a failed run (e.g. diverged training), 2 bad input or usage.
EXIT_FAILED = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A problem with the user's input, reported in one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line (`keras-ecg pretrain: error: ...`,
    exit code 2), as the jobs report theirs; `--help` shows the usage."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_backend(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    # Every command that imports a framework takes --backend, and --verbose.
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the frameworks' own log messages (TensorFlow / XLA C++ "
        "logs, absl, framework warnings), hidden by default",
    )


def _probe_every(text):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a number of epochs, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _add_online_probe(parser):
    group = parser.add_argument_group(
        "online probe (a kNN / logistic probe of the encoder every few epochs, "
        "logged as probe_macro_auc)"
    )
    group.add_argument(
        "--probe",
        choices=("knn", "logistic", "none"),
        default="knn",
        help="the probe fitted on the embeddings (default: knn; none: off)",
    )
    group.add_argument(
        "--probe-every",
        type=_probe_every,
        default="auto",
        metavar="N",
        help="probe every N epochs, and at the last (default: auto = max(1, "
        "epochs // 5))",
    )
    group.add_argument(
        "--probe-records",
        type=_non_negative_int,
        default=256,
        help="labelled records of the val split (--val-folds, or --val-fraction "
        "of a folder without folds) the probe uses, drawn seeded "
        "(patient-disjoint split where patient ids exist; default: 256; 0: off)",
    )
    group.add_argument(
        "--probe-val-fraction",
        type=_fraction,
        default=0.5,
        help="share of --probe-records that scores the probe, the rest fits it "
        "(default: 0.5)",
    )
    group.add_argument(
        "--keep",
        choices=("last", "best-probe"),
        default="last",
        help="weights saved as pretrained.keras: the last epoch's or those of "
        "the epoch with the best probe macro AUC (default: last)",
    )


def _add_output(parser, default, what="folder"):
    parser.add_argument(
        "--output",
        default=default,
        help=f"output {what} (default: {default})",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier, finished or different run in --output",
    )


def _add_data(parser, sampling_rate_help):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (embedded generator, no download), a PTB-XL folder "
        "(with ptbxl_database.csv), a folder of WFDB records (CinC layout) "
        "and/or clinical exports (GE MUSE / Philips Sierra XML, HL7 aECG, "
        "DICOM, EDF, SCP-ECG; pip install 'keras-ecg[formats]'), or one file",
    )
    group.add_argument(
        "--sampling-rate", type=int, default=None, help=sampling_rate_help
    )
    group.add_argument(
        "--label-set",
        default="all",
        help="PTB-XL: all, diagnostic, subdiagnostic, superdiagnostic, form, "
        "rhythm; WFDB/SNOMED folders: all, scored (default: all)",
    )
    group.add_argument(
        "--num-records",
        type=int,
        default=1200,
        help="records of the synthetic dataset (default: 1200)",
    )
    group.add_argument(
        "--cache-dir",
        default=None,
        help="folder caching the decoded signals, built once (by all processes "
        "of a job together) and memory-mapped after (default: "
        "$KERAS_ECG_CACHE_DIR, else $XDG_CACHE_HOME/keras-ecg/signals or "
        "~/.cache/keras-ecg/signals); 'none' decodes the records into RAM "
        "(see `keras-ecg cache list|remove`)",
    )
    group.add_argument(
        "--skip-bad-records",
        action="store_true",
        help="skip unreadable records (one warning with their count) instead "
        "of stopping at the first",
    )
    group.add_argument(
        "--train-folds",
        default="1-8",
        help="folds (PTB-XL strat_fold, synthetic) that train (default: 1-8)",
    )
    group.add_argument(
        "--val-folds", default="9", help="folds that select epochs (default: 9)"
    )
    group.add_argument(
        "--test-folds", default="10", help="folds scored at the end (default: 10)"
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="folders without folds: share of records to validate (default: 0.1)",
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="folders without folds: share of records to test (default: 0.1)",
    )
    group.add_argument("--seed", type=int, default=0)


def _add_strict(parser, what):
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"refuse (exit 2, before {what}) when scored records were seen in "
        "pretraining or training, by their content fingerprints (see "
        "docs/leakage.md); without it the count is only reported",
    )


def _add_model_size(parser):
    parser.add_argument(
        "--size",
        default="small",
        choices=("paper", "small", "tiny"),
        help=(
            "encoder size: paper (the reference code's configurations, see "
            "README), small (CPU-sized) or tiny (tests)"
        ),
    )


def _add_encoder(parser, what="the encoder"):
    parser.add_argument(
        "--encoder",
        default=None,
        choices=ENCODERS,
        help=f"{what}: xresnet1d or s4 for simclr/byol/swav, lstm or s4 "
        "(its context network) for cpc, transformer or s4 (over the same patch "
        "tokens) for jepa (default: the method's, xresnet1d / lstm / "
        "transformer); s4 CPC is ECG-CPC (see README)",
    )


def _add_downstream(parser, mode):
    group = parser.add_argument_group("downstream training")
    group.add_argument(
        "--eval-epochs",
        type=int,
        default=None,
        help="maximum epochs (default: the protocol's, see train_downstream)",
    )
    group.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better val macro AUC "
        "(0: never; default: the protocol's)",
    )
    group.add_argument(
        "--min-epochs",
        type=int,
        default=None,
        help="epochs before early stopping may stop a stage (default: 20)",
    )
    group.add_argument("--eval-batch-size", type=int, default=128)
    group.add_argument(
        "--eval-lr",
        type=float,
        default=None,
        help="peak learning rate of the head (default: 1e-2 linear, 1e-3 "
        "frozen/finetune/scratch)",
    )
    group.add_argument(
        "--window-seconds",
        type=_positive_float,
        default=2.5,
        help="training crop and evaluation window (default: 2.5 s)",
    )
    group.add_argument(
        "--stride-seconds",
        type=_positive_float,
        default=None,
        help="evaluation window stride (default: half a window)",
    )
    if mode in ("finetune", "downstream"):
        group.add_argument(
            "--linear-probe-epochs",
            type=int,
            default=None,
            help="epochs of the linear stage before finetuning (LP-FT; 0: plain "
            "finetuning; default: 20)",
        )
        group.add_argument(
            "--discriminative-lr",
            type=float,
            default=None,
            help="backbone lr = this factor x --eval-lr (default: one lr for all)",
        )
        group.add_argument(
            "--backbone-batch-norm",
            choices=("train", "frozen"),
            default=None,
            help="whether the backbone's BatchNorm layers train (default: train)",
        )
    if mode == "downstream":
        group.add_argument(
            "--head-hidden-dims",
            type=int,
            nargs="*",
            default=None,
            metavar="WIDTH",
            help="widths of the head's hidden layers (none given: a linear head; "
            "default: 512 for frozen, none otherwise)",
        )
        group.add_argument(
            "--head-dropout",
            type=float,
            default=None,
            help="dropout before the head's output layer, half of it before its "
            "hidden layers (default: 0.5 for frozen, 0 otherwise)",
        )


def _add_bootstrap(parser):
    group = parser.add_argument_group("confidence intervals")
    group.add_argument(
        "--bootstrap-resamples",
        type=_non_negative_int,
        default=1000,
        help="bootstrap resamples of the test records for the 95%% intervals of "
        "the macro AUROC / AUPRC (0: no intervals; default: 1000)",
    )
    group.add_argument(
        "--bootstrap-seed",
        type=int,
        default=0,
        help="seed of the resampling; the same seed pairs the intervals of runs "
        "scored on the same records (default: 0)",
    )


def _add_multi_process(parser):
    group = parser.add_argument_group(
        "multi-process / multi-host data parallelism (JAX, TensorFlow, torch; "
        "see docs/distributed.md)"
    )
    group.add_argument(
        "--distributed",
        choices=("none", "auto", "multi-process"),
        default="none",
        help="none: one process (default); multi-process: join the job given "
        "by --job-addresses/--num-processes/--process-id or, where absent, by "
        "KERAS_ECG_JOB_ADDRESSES/_NUM_PROCESSES/_PROCESS_ID, TF_CONFIG, "
        "torchrun or SLURM; auto: multi-process when that environment describes more "
        "than one process. --batch-size is the GLOBAL batch, split evenly "
        "over the processes",
    )
    group.add_argument(
        "--job-addresses",
        default=None,
        help="host:port of process 0 (JAX coordinator, torch rendezvous), or "
        "of every process, comma-separated, process 0 first (TensorFlow needs "
        "all)",
    )
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)
    group.add_argument(
        "--collective-timeout-seconds",
        type=_positive_float,
        default=60.0,
        help="a job whose process stops answering fails after about this "
        "long (default: 60 s)",
    )
    group.add_argument(
        "--synchronized-batch-norm",
        action="store_true",
        help="TensorFlow, torch: BatchNorm statistics over the global batch "
        "of each step (all-reduced across replicas, workers or processes); "
        "JAX's are global anyway",
    )


def build_parser():
    parser = _Parser(
        prog="keras-ecg",
        description="Self-supervised representation learning on 12-lead ECG "
        "(CPC, SimCLR, BYOL, SwAV, JEPA) with Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="pretrain on embedded synthetic ECGs, then compare with random init "
        "and supervised training on few labels",
    )
    _add_backend(demo)
    _add_data(demo, "Hz (default: 100)")
    _add_model_size(demo)
    _add_output(demo, "runs/demo")
    demo.add_argument("--method", default="simclr", choices=METHODS)
    _add_encoder(demo)
    demo.add_argument("--epochs", type=int, default=None, help="pretraining epochs")
    demo.add_argument("--lr", type=float, default=1e-3, help="pretraining lr")
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument(
        "--augmentation",
        default="gn_chr_to",
        help="augmentation preset for SimCLR/BYOL/SwAV (default: gn_chr_to, "
        "which keeps the time scale that rate, PR, QRS and QT classes need)",
    )
    demo.add_argument(
        "--label-fractions",
        type=float,
        nargs="+",
        default=None,
        help="shares of the labelled training records the classifiers see",
    )
    _add_downstream(demo, "demo")
    _add_bootstrap(demo)
    _add_online_probe(demo)

    pretrain = sub.add_parser("pretrain", help="self-supervised pretraining")
    _add_backend(pretrain)
    _add_data(pretrain, "Hz (default: 100)")
    _add_model_size(pretrain)
    _add_output(pretrain, "runs/pretrain")
    pretrain.add_argument("--method", required=True, choices=METHODS)
    _add_encoder(pretrain)
    pretrain.add_argument("--epochs", type=int, default=20)
    pretrain.add_argument("--lr", type=float, default=1e-3)
    pretrain.add_argument("--batch-size", type=int, default=128)
    pretrain.add_argument(
        "--crop-seconds",
        type=_positive_float,
        default=None,
        help="pretraining crop (default: 2.5 s; CPC and JEPA 10 s)",
    )
    pretrain.add_argument(
        "--augmentation",
        default="rrc_to",
        help="augmentation preset for SimCLR/BYOL/SwAV (default: rrc_to)",
    )
    pretrain.add_argument(
        "--init-from-preset",
        metavar="HANDLE",
        default=None,
        help="start from a preset (folder, hf://org/name, kaggle://...): continue "
        "pretraining its model if it is a --method model, else initialise the "
        "method's encoder from its backbone (same architecture: --size). Its "
        "preprocessing is reused",
    )
    pretrain.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=50,
        help="save a resumable checkpoint every N steps (0: every epoch only)",
    )
    _add_online_probe(pretrain)
    _add_multi_process(pretrain)

    for name, help_text in (
        ("linear-eval", "linear evaluation of a pretrained encoder"),
        ("finetune", "finetune a pretrained encoder (or train from scratch)"),
        (
            "downstream",
            "train a classifier on an encoder with any --protocol: linear, "
            "frozen (MLP head), finetune (LP-FT) or scratch",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_backend(p)
        _add_data(p, "Hz (default: the pretrained model's, else 100)")
        _add_model_size(p)
        _add_output(p, f"runs/{name}")
        if name == "downstream":
            p.add_argument(
                "--protocol",
                required=True,
                choices=PROTOCOLS,
                help="linear: linear probe on frozen features; frozen: an MLP "
                "head on frozen features; finetune: LP-FT; scratch: supervised "
                "training of a freshly initialised encoder of the same "
                "architecture (the --checkpoint's, or --method/--encoder/--size "
                "with --random-init)",
            )
        _add_downstream(p, {"linear-eval": "linear"}.get(name, name))
        _add_bootstrap(p)
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", help="pretrained model from `pretrain`")
        source.add_argument(
            "--init-from-preset",
            metavar="HANDLE",
            help="the backbone and preprocessing of a preset (folder, "
            "hf://org/name, kaggle://owner/model/keras/variant[/version])",
        )
        source.add_argument(
            "--random-init",
            action="store_true",
            help="a freshly initialised encoder (baseline; with `finetune`: "
            "supervised training from scratch)"
            if name != "downstream"
            else "a freshly initialised encoder of --method/--encoder/--size: "
            "the random-init baseline of the protocol",
        )
        if name == "downstream":
            p.add_argument(
                "--random-init-baseline",
                action="store_true",
                help="also train the protocol on a freshly initialised encoder "
                "of the same architecture and report the paired difference "
                "(with --checkpoint or --init-from-preset)",
            )
        p.add_argument(
            "--method",
            default="simclr",
            choices=METHODS,
            help="encoder architecture for --random-init",
        )
        _add_encoder(
            p,
            "encoder of --random-init (with --checkpoint the checkpoint's "
            "architecture is used; a different --encoder is refused)",
        )
        _add_strict(p, "training")

    evaluate = sub.add_parser(
        "evaluate", help="macro AUC of a trained classifier on labelled records"
    )
    _add_backend(evaluate)
    _add_data(evaluate, "Hz (default: the model's)")
    _add_output(evaluate, "runs/evaluate")
    evaluate.add_argument("--model", required=True, help="classifier (.keras)")
    evaluate.add_argument("--split", default="test", choices=SPLITS)
    evaluate.add_argument(
        "--labels",
        default=None,
        help="CSV of labels for records whose files carry none (clinical "
        "exports): a record_id column (as `predict` writes it) and either a "
        "'labels' column of codes (';'-separated) or one 0/1 column per class; "
        "SCP statements or SNOMED CT codes (all digits), mapped to the model's",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    _add_bootstrap(evaluate)
    _add_strict(evaluate, "scoring")

    embed = sub.add_parser("embed", help="export embeddings of a pretrained encoder")
    _add_backend(embed)
    _add_data(embed, "Hz (default: the pretrained model's)")
    _add_output(embed, "runs/embed")
    embed.add_argument("--checkpoint", required=True, help="pretrained model")
    embed.add_argument("--split", default="all", choices=SPLITS)
    embed.add_argument("--window-seconds", type=_positive_float, default=2.5)
    embed.add_argument("--stride-seconds", type=_positive_float, default=None)
    embed.add_argument(
        "--plot", choices=("pca", "tsne"), default=None, help="also draw a 2-D PNG"
    )

    predict = sub.add_parser(
        "predict", help="per-class probabilities of a classifier for new records"
    )
    _add_backend(predict)
    predict.add_argument("--model", required=True, help="classifier (.keras)")
    predict.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="a folder of WFDB records (PTB-XL or CinC layout) and/or clinical "
        "exports, or record files: .hea, GE MUSE / Philips Sierra XML, HL7 "
        "aECG, DICOM, EDF/EDF+, SCP-ECG (recognised from their content; pip "
        "install 'keras-ecg[formats]')",
    )
    predict.add_argument(
        "--output", default="predictions.csv", help="CSV file to write"
    )
    predict.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output (and the PNGs of --explain)",
    )
    predict.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="also write 0/1 columns `<class>_pred` (probability >= threshold)",
    )
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument(
        "--skip-bad-records",
        action="store_true",
        help="skip unreadable records (reported) instead of stopping",
    )
    predict.add_argument(
        "--explain",
        type=int,
        default=None,
        metavar="K",
        help="also explain each record's K most probable classes (integrated "
        "gradients, keras_ecg.explain): one PNG per record in --explain-dir "
        "(its leads on ECG paper, one column per class, red/blue shading where "
        "samples raised/lowered the probability) and CSV columns "
        "explain_<r>_class (the class of rank r = 1..K), explain_<r>_<lead> "
        "(the lead's share of that class's absolute attribution; a rank's "
        "shares sum to 1) and explain_plot (the PNG)",
    )
    predict.add_argument(
        "--explain-dir",
        default=None,
        help="folder of the --explain PNGs, <record_id>.png (default: "
        "<--output without .csv>_explanations/)",
    )
    predict.add_argument(
        "--explain-steps",
        type=int,
        default=32,
        help="integration steps per window of --explain (default: 32)",
    )

    tune = sub.add_parser(
        "tune", help="KerasTuner search scored by a downstream probe AUC"
    )
    _add_backend(tune)
    _add_data(tune, "Hz (default: 100)")
    _add_model_size(tune)
    _add_output(tune, "runs/tune")
    tune.add_argument("--method", required=True, choices=METHODS)
    _add_encoder(tune)
    tune.add_argument(
        "--tuner", default="random", choices=("random", "bayesian", "hyperband")
    )
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--epochs", type=int, default=10, help="pretraining epochs")
    tune.add_argument("--batch-size", type=int, default=64)
    _add_cache_command(sub)
    _add_download_command(sub)
    _add_preset_command(sub)
    _add_convert_command(sub)
    return parser


def _add_preset_command(sub):
    preset = sub.add_parser(
        "preset",
        help="save a run's model as a preset (keras-hub layout) or describe one",
    )
    actions = preset.add_subparsers(
        dest="preset_action", required=True, metavar="ACTION"
    )
    save = actions.add_parser(
        "save",
        help="save the model of a finished pretrain / finetune / linear-eval run "
        "folder (classifier.keras, else pretrained.keras) as a preset",
    )
    _add_backend(save)
    save.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    save.add_argument("preset_dir", metavar="PRESET_DIR", help="the preset folder")
    save.add_argument("--description", default=None, help="free text for metadata.json")
    save.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier preset in PRESET_DIR",
    )
    info = actions.add_parser(
        "info", help="what a preset holds (no framework is imported)"
    )
    info.add_argument(
        "handle",
        metavar="HANDLE",
        help="a preset folder, hf://org/name[@revision] or "
        "kaggle://owner/model/framework/variation[/version]",
    )
    info.add_argument("--json", action="store_true", help="print it as JSON")


def run_preset_info(args):
    """`keras-ecg preset info`: reads JSON files only, so no --backend."""
    import json

    from keras_ecg.presets import HubPackageError
    from keras_ecg.presets import PresetError
    from keras_ecg.presets import preset_info

    try:
        info = preset_info(args.handle)
    except (PresetError, HubPackageError) as error:
        raise CLIError(str(error)) from None
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    print("\n".join(describe_preset(info)))


def describe_preset(info):
    """The lines `keras-ecg preset info` prints for a `preset_info` dict."""
    meta = info["metadata"]
    lines = [f"preset: {info['handle']}", f"folder: {info['path']}"]
    lines.append(f"files: {', '.join(info['files'])}")
    lines.append(
        f"saved: {meta.get('date_saved', '?')} with keras-ecg "
        f"{meta.get('keras_ecg_version', '?')}, Keras {meta.get('keras_version', '?')}"
        f" ({meta.get('backend', '?')} backend), preset format "
        f"{meta.get('keras_ecg_preset_format')}"
    )
    if meta.get("description"):
        lines.append(f"description: {meta['description']}")
    task = info["task"]
    if task is None:
        lines.append("task: none (a backbone only)")
    else:
        count = meta.get("task_parameter_count")
        lines.append(
            f"task: {task['class_name']} ({task['registered_name']})"
            + (f", {count:,} parameters" if isinstance(count, int) else "")
        )
        config = task["config"]
        if config.get("num_classes") is not None:
            names = config.get("class_names") or []
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            lines.append(
                f"classes: {config['num_classes']}"
                + (f" ({config.get('label_set')})" if config.get("label_set") else "")
                + (f": {shown}" if names else "")
            )
    for key in ("method", "size"):
        if meta.get(key) is not None:
            lines.append(f"{key}: {meta[key]}")
    backbone = info["backbone"]
    count = meta.get("parameter_count")
    lines.append(
        f"backbone: {backbone['class_name']} ({backbone['registered_name']})"
        + (f", {count:,} parameters" if isinstance(count, int) else "")
    )
    settings = [
        f"{key}={value}"
        for key, value in backbone["config"].items()
        if key not in ("name", "trainable", "dtype", "layers", "build_input_shape")
        and isinstance(value, (int, float, str, list, bool))
    ]
    if settings:
        lines.append(f"  {', '.join(settings)}")
    pre = info["preprocessor"]
    if pre is None:
        lines.append("preprocessing: none saved")
    else:
        leads = pre.get("lead_names") or []
        scale = "standardised per lead" if pre["standardized"] else "in mV"
        lines.append(
            f"preprocessing: {pre['sampling_rate']} Hz, {len(leads)} leads "
            f"({', '.join(leads)}), {scale}, {pre['window_seconds']:g} s windows, "
            f"{pre['stride_seconds']:g} s stride, {pre['aggregation']} aggregation"
        )
    if meta.get("data_fingerprint"):
        lines.append(f"data fingerprint: {meta['data_fingerprint']}")
    counts = meta.get("record_fingerprints")
    if isinstance(counts, dict):
        lines.append(
            "record fingerprints: "
            + ", ".join(f"{count} {name} records" for name, count in counts.items())
        )
    run = meta.get("training_run")
    if isinstance(run, dict):
        lines.append(f"training run: keras-ecg {run.get('command')}")
    return lines


def _add_cache_command(sub):
    cache = sub.add_parser(
        "cache",
        help="list or remove the decoded-signal caches that --cache-dir holds",
    )
    actions = cache.add_subparsers(dest="cache_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="entries, status, records and size")
    where = (
        "the cache folder (default: $KERAS_ECG_CACHE_DIR, else "
        "$XDG_CACHE_HOME/keras-ecg/signals or ~/.cache/keras-ecg/signals)"
    )
    listing.add_argument("--cache-dir", default=None, help=where)
    remove = actions.add_parser("remove", help="delete entries (by key, or --all)")
    remove.add_argument("--cache-dir", default=None, help=where)
    remove.add_argument("keys", nargs="*", help="entry keys, as `list` shows them")
    remove.add_argument("--all", action="store_true", help="delete every entry")


def run_cache(args):
    """`keras-ecg cache list|remove`: trains nothing, so no --backend."""
    from keras_ecg.data.signal_cache import default_cache_dir
    from keras_ecg.data.signal_cache import list_caches
    from keras_ecg.data.signal_cache import remove_caches

    folder = args.cache_dir or default_cache_dir()
    if not os.path.isdir(folder):
        if args.cache_dir is not None:
            raise CLIError(f"--cache-dir {args.cache_dir}: no such folder.")
        # The default folder appears with the first cached dataset.
        entries = []
    elif args.cache_action == "list":
        entries = list_caches(folder)
    if args.cache_action == "list":
        print(f"{len(entries)} cache entr{'y' if len(entries) == 1 else 'ies'} in "
              f"{os.path.abspath(folder)}")  # fmt: skip
        for e in entries:
            records = "-" if e["records"] is None else e["records"]
            print(
                f"{e['key']}  {e['status']:8s}  {records!s:>7} records  "
                f"{e['bytes'] / 1e6:10.1f} MB  {e.get('created') or '-'}  "
                f"{e.get('reader') or '-'} {e.get('source') or ''}".rstrip()
            )
        return
    if bool(args.keys) == bool(args.all):
        raise CLIError("cache remove: give entry keys or --all (not both).")
    try:
        if not os.path.isdir(folder):
            removed, freed = [], 0
            if args.keys:
                raise KeyError(f"no cache entry {args.keys} in {folder}")
        else:
            removed, freed = remove_caches(folder, None if args.all else args.keys)
    except KeyError as error:
        raise CLIError(f"cache remove: {error.args[0]}") from None
    print(f"removed {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'}, "
          f"{freed / 1e6:.1f} MB freed")  # fmt: skip


def _add_download_command(sub):
    download = sub.add_parser(
        "download",
        help="download PTB-XL or CinC 2021 from PhysioNet (resumable, verified "
        "against its SHA256SUMS.txt)",
    )
    download.add_argument(
        "dataset",
        metavar="DATASET",
        help="ptbxl (PTB-XL 1.0.3) or cinc2021 (PhysioNet/CinC Challenge 2021 1.0.3)",
    )
    download.add_argument(
        "--output",
        required=True,
        help="dataset folder (new, empty, or an earlier download to resume); "
        "then use it as --data",
    )
    download.add_argument(
        "--sampling-rate",
        type=int,
        default=None,
        help="ptbxl: 100 or 500 fetches only records100/ or records500/ (plus "
        "the metadata); default both. cinc2021 has one set of files",
    )
    download.add_argument(
        "--base-url",
        default=None,
        help="server index standing for https://physionet.org/files/ (a "
        "mirror; default: $KERAS_ECG_PHYSIONET_URL, else wfdb's PhysioNet "
        "address)",
    )


def run_download(args):
    """`keras-ecg download`: trains nothing, so no --backend and no Keras."""
    from keras_ecg.data.download import DownloadError
    from keras_ecg.data.download import download_dataset

    try:
        download_dataset(
            args.dataset,
            args.output,
            sampling_rate=args.sampling_rate,
            base_url=args.base_url,
        )
    except DownloadError as error:
        raise CLIError(str(error)) from None


CONVERT_SOURCES = ("reference",)


def _add_convert_command(sub):
    convert = sub.add_parser(
        "convert",
        help="convert a checkpoint of another code base (the paper's reference "
        "code) to a keras-ecg preset",
    )
    _add_backend(convert)
    convert.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SOURCE",
        help="'reference': a PyTorch Lightning checkpoint of the paper's code, "
        "hhi-aml/ecg-selfsupervised (needs torch; docs/reference_checkpoints.md)",
    )
    convert.add_argument("checkpoint", metavar="CKPT", help="the checkpoint file")
    convert.add_argument("--output", required=True, help="the preset folder to write")
    convert.add_argument(
        "--method",
        default=None,
        help="simclr, byol, swav or cpc (default: detected from the checkpoint)",
    )
    convert.add_argument(
        "--description", default=None, help="free text for metadata.json"
    )
    convert.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier preset in --output",
    )


def run_convert(args):
    """`keras-ecg convert --from reference CKPT --output DIR`: a preset.

    Raises:
        CLIError: an unknown source or method, a missing or unreadable
            checkpoint, one that is not the reference's, or an output folder
            that holds something else (or a preset, without --overwrite).
    """
    from keras_ecg.convert import REFERENCE_METHODS
    from keras_ecg.convert import ReferenceCheckpointError
    from keras_ecg.convert import convert_reference
    from keras_ecg.presets import PresetError
    from keras_ecg.presets import save_to_preset
    from keras_ecg.presets.preset_files import check_destination

    if args.source not in CONVERT_SOURCES:
        raise CLIError(
            f"--from {args.source}: unknown source; expected one of "
            f"{', '.join(CONVERT_SOURCES)}."
        )
    if args.method is not None and args.method not in REFERENCE_METHODS:
        raise CLIError(
            f"--method {args.method}: unknown method; expected one of "
            f"{', '.join(REFERENCE_METHODS)}."
        )
    if not os.path.isfile(args.checkpoint):
        raise CLIError(f"CKPT {args.checkpoint}: no such file.")
    output = args.output
    try:
        check_destination(output, args.overwrite, "--output")
    except PresetError as error:
        raise CLIError(str(error)) from None
    try:
        conversion = convert_reference(args.checkpoint, method=args.method)
    except (ReferenceCheckpointError, ImportError) as error:
        raise CLIError(" ".join(str(error).split())) from None
    details = conversion.metadata
    metadata = {
        "method": conversion.method,
        "size": "paper",
        "description": args.description
        or (
            f"The paper's reference {conversion.method} model "
            f"({details['source']['repository']}), converted from "
            f"{details['source']['checkpoint']}."
        ),
        "reference_conversion": details,
    }
    save_to_preset(conversion.model, output, metadata=metadata)
    info = details["conversion"]
    pre = conversion.model.preprocessor
    print(
        f"converted the reference's {conversion.method} "
        f"({details['source']['module']}, epoch {details['source']['epoch']}) to "
        f"preset {output}",
        flush=True,
    )
    print(
        f"  input: {pre.sampling_rate} Hz, leads {', '.join(pre.lead_names)}; "
        f"standardisation: {details['input']['standardization']}"
    )
    for key, text in info["folded_keys"].items():
        print(f"  folded {key}: {text}")
    reasons = {}
    for key, reason in info["unused_keys"].items():
        reasons.setdefault(reason, []).append(key)
    for reason, keys in reasons.items():
        shown = ", ".join(keys[:3]) + (
            f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
        )
        print(f"  unused {shown}: {reason}")
    if info["duplicate_keys"]:
        print(
            f"  {info['duplicate_keys']} keys are second names of converted tensors "
            "(checked equal)"
        )
    for note in info["notes"]:
        print(f"  note: {note}")
    return {"preset": output, "method": conversion.method}


def select_backend(requested):
    """Sets `KERAS_BACKEND` before Keras is imported; returns the backend.

    Raises:
        CLIError: Keras was already imported in this process with another
            backend (it cannot switch).
    """
    if requested is None:
        return os.environ.get("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if active != requested:
            raise CLIError(
                f"--backend {requested}: Keras was already imported with the "
                f"{active} backend in this process and cannot switch; run "
                "keras-ecg in a fresh process."
            )
    os.environ["KERAS_BACKEND"] = requested
    return requested


def _hint(error):
    """A one-line suggestion for a data error, or ''."""
    from keras_ecg.data.errors import ECGDataError
    from keras_ecg.data.errors import FormatsExtraMissingError

    if isinstance(error, FormatsExtraMissingError):
        return (
            "hint: pip install 'keras-ecg[formats]', or pass --skip-bad-records "
            "to skip such files."
        )
    if isinstance(error, ECGDataError):
        return (
            "hint: fix or remove the record, or pass --skip-bad-records to skip "
            "unreadable records (they are counted and reported)."
        )
    return ""


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # Commands that train nothing run without importing Keras or a framework.
    frameworkless = {
        "cache": run_cache,
        "download": run_download,
        "preset info": run_preset_info,
    }
    name = args.command
    if name == "preset":
        name = f"preset {args.preset_action}"
    if name in frameworkless:
        try:
            frameworkless[name](args)
        except CLIError as error:
            print(f"keras-ecg {name}: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        return 0
    try:
        select_backend(args.backend)
    except CLIError as error:
        print(f"keras-ecg {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from keras_ecg import quiet

    # Before any framework is imported: its log levels, then its import with
    # the lines its native libraries print while loading filtered out.
    verbose = getattr(args, "verbose", False)
    quiet.set_environment(verbose)
    with quiet.native_stderr_filtered(verbose):
        # Keras (and a framework, and TensorFlow for tf.data) from here on.
        from keras_ecg import jobs
    with quiet.framework_logs_hidden(verbose):
        return _run_with_framework(args, jobs)


def run_job(args, jobs):
    """Parses `args` into the command's settings and runs its job."""
    name = args.command
    if name == "preset":
        name = f"preset {args.preset_action}"
    settings_class, job = jobs.COMMANDS[name]
    return job(jobs.settings_from_namespace(settings_class, args))


def _run_with_framework(args, jobs):
    if args.command == "convert":
        try:
            run_convert(args)
        except CLIError as error:
            print(f"keras-ecg convert: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        return 0

    from keras_ecg.callbacks import NonFiniteLossError
    from keras_ecg.data.errors import ECGDataError
    from keras_ecg.run_folder import RunFolderError

    try:
        run_job(args, jobs)
    except jobs.LostProcessError as error:
        print(f"keras-ecg {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except NonFiniteLossError as error:
        # The message says where and what to try; a traceback adds nothing.
        print(f"keras-ecg {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (
        CLIError,
        ECGDataError,
        RunFolderError,
        FileNotFoundError,
        jobs.InputError,  # and jobs.SettingsError, a setting out of range
    ) as error:
        print(f"keras-ecg {args.command}: error: {error}", file=sys.stderr)
        hint = _hint(error)
        if hint and not getattr(args, "skip_bad_records", True):
            print(hint, file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
