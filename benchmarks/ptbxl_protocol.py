"""Shared pieces of the PTB-XL benchmark scripts: splits, pretraining, tables.

The shared PTB-XL subset holds folds 1-9 (no fold 10), so its default split is
train 1-7 / validation 8 / test 9; `--train-folds 1-8 --val-folds 9
--test-folds 10` is the paper's split on the full PTB-XL. The validation fold
selects epochs (and early-stops); the test fold is scored once per run.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "ptbxl"))
SUBSET_SPLIT = {"train_folds": "1-7", "val_folds": "8", "test_folds": "9"}


def parse_folds(text):
    """`"1-7"` -> [1..7], `"8"` -> [8], `"1,3,5-6"` -> [1, 3, 5, 6]."""
    folds = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = (int(v) for v in part.split("-", 1))
            if high < low:
                raise argparse.ArgumentTypeError(f"empty fold range {part!r}")
            folds.extend(range(low, high + 1))
        else:
            folds.append(int(part))
    if not folds:
        raise argparse.ArgumentTypeError(f"no folds in {text!r}")
    return folds


def fold_label(folds):
    """[1..7] -> "1-7"; [9] -> "9"."""
    folds = sorted(folds)
    if folds == list(range(folds[0], folds[-1] + 1)) and len(folds) > 1:
        return f"{folds[0]}-{folds[-1]}"
    return ",".join(str(f) for f in folds)


def base_parser(description, output):
    """Arguments shared by every PTB-XL benchmark script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--label-set", default="all")
    parser.add_argument("--train-folds", default=SUBSET_SPLIT["train_folds"])
    parser.add_argument("--val-folds", default=SUBSET_SPLIT["val_folds"])
    parser.add_argument("--test-folds", default=SUBSET_SPLIT["test_folds"])
    parser.add_argument("--size", default="small", choices=("paper", "small", "tiny"))
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cpc-batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="pretraining lr")
    parser.add_argument(
        "--eval-epochs",
        type=int,
        default=None,
        help="maximum downstream epochs (default: train_downstream's)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="runs with seeds 0..N-1 (mean +- std)"
    )
    parser.add_argument("--output", default=output)
    parser.add_argument(
        "--pretrained-dir",
        default=None,
        help="where pretrained encoders are kept (default: OUTPUT/pretrained); "
        "scripts given the same folder share them",
    )
    parser.add_argument(
        "--reuse-pretrained",
        action="store_true",
        help="reuse an encoder pretrained earlier with identical settings and "
        "data (checked against its settings.json)",
    )
    parser.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=1000,
        help="resamples of the test records for the 95%% confidence intervals",
    )
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--update-readme", action="store_true")
    return parser


def load_fold_splits(args, label_set=None, standardizer=None):
    """Standardised train / val / test splits by PTB-XL `strat_fold`.

    Args:
        args: the parsed arguments (data, folds, `label_set`).
        label_set: overrides `args.label_set`.
        standardizer: a fitted `LeadStandardizer` to apply (default: one
            fitted on these training records), e.g. the pretraining data's
            when several label sets are evaluated from one pretraining.

    Returns:
        `(train, val, test, standardizer, raw_test)`: standardised on the
        training records; `raw_test` in mV for noise added before
        standardisation.
    """
    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.data.ptbxl import load_ptbxl
    from keras_ecg.data.splits import check_disjoint_folds

    folds = {
        name: parse_folds(getattr(args, f"{name}_folds"))
        for name in ("train", "val", "test")
    }
    try:
        check_disjoint_folds({f"--{n}-folds": folds[n] for n in folds})
    except ValueError as error:
        raise SystemExit(str(error)) from None
    label_set = label_set or args.label_set
    data = load_ptbxl(args.data, sampling_rate=100, label_set=label_set)
    train, val, test = (data.select_folds(folds[n]) for n in ("train", "val", "test"))
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise SystemExit(
                f"no {name} records in folds {folds[name]} of {args.data} "
                "(the shared subset has folds 1-9 only)"
            )
    if standardizer is None:
        standardizer = LeadStandardizer().fit(train)
    splits = tuple(standardizer.transform(d) for d in (train, val, test))
    return splits + (standardizer, test)


def describe_splits(args, train, val, test, label_set=None):
    trained = int((train.labels.sum(0) > 0).sum())
    return (
        f"PTB-XL folds {fold_label(parse_folds(args.train_folds))} train "
        f"({len(train)} records) / {fold_label(parse_folds(args.val_folds))} val "
        f"({len(val)}) / {fold_label(parse_folds(args.test_folds))} test "
        f"({len(test)}); label set `{label_set or args.label_set}`: "
        f"{train.num_classes} "
        f"classes, {trained} with a positive training record"
    )


# A method spec names a method and, optionally, its encoder: "cpc" (the
# method's default encoder) or "cpc:s4" (`build_method("cpc", encoder="s4")`).
def parse_spec(spec):
    """`"cpc:s4"` -> `("cpc", "s4")`; `"simclr"` -> `("simclr", "xresnet1d")`.

    Raises:
        ValueError: an unknown method or encoder, or one the method cannot use.
    """
    from keras_ecg.models.method_factory import resolve_encoder

    method, _, encoder = str(spec).partition(":")
    return method, resolve_encoder(method, encoder or None)


def spec_label(spec):
    """The table name of a spec: the method, prefixed by a non-default
    encoder (`"cpc:s4"` -> `"s4-cpc"`, ECG-CPC's architecture)."""
    from keras_ecg.models.method_factory import DEFAULT_ENCODER

    method, encoder = parse_spec(spec)
    return method if encoder == DEFAULT_ENCODER[method] else f"{encoder}-{method}"


def architecture(spec):
    """`(label, spec building it)` of a spec's encoder architecture: the
    random-init and from-scratch rows depend on the architecture only."""
    method, encoder = parse_spec(spec)
    if method == "cpc":
        if encoder == "lstm":
            return "cpc encoder", "cpc"
        return f"cpc encoder + {encoder} context", f"cpc:{encoder}"
    if encoder == "transformer":
        return "transformer", "jepa"
    if encoder == "xresnet1d":
        return "xresnet1d", "simclr"
    return f"{encoder} encoder", f"simclr:{encoder}"


def pretrain_batch_size(args, method):
    return args.cpc_batch_size if parse_spec(method)[0] == "cpc" else args.batch_size


def pretrain(args, spec, seed, train, epochs=None, tag=None):
    """Pretrains a method spec (or reuses it); returns path, seconds, final loss.

    With `--reuse-pretrained`, an encoder is reused only when the settings it
    was pretrained with (method, encoder, size, epochs, batch, lr, seed,
    training records' fingerprint) equal this run's; otherwise it is
    pretrained again.

    Args:
        epochs: pretraining epochs (default `args.pretrain_epochs`).
        tag: optional suffix of the encoder's folder (e.g. the data fraction
            and epochs), so that runs of one spec and seed on other records
            or budgets are kept side by side.
    """
    import json

    from keras_ecg.jobs.pretrain import pretrain_model as pretrain_job
    from keras_ecg.models.method_factory import DEFAULT_ENCODER
    from keras_ecg.run_folder import dataset_fingerprint

    method, encoder = parse_spec(spec)
    root = args.pretrained_dir or os.path.join(args.output, "pretrained")
    name = method if encoder == DEFAULT_ENCODER[method] else f"{method}_{encoder}"
    out = os.path.join(root, f"{name}_seed{seed}" + (f"_{tag}" if tag else ""))
    path = os.path.join(out, "pretrained.keras")
    settings_path = os.path.join(out, "settings.json")
    settings = {
        "method": method,
        "size": args.size,
        "epochs": args.pretrain_epochs if epochs is None else int(epochs),
        "batch_size": pretrain_batch_size(args, method),
        "lr": args.lr,
        "seed": seed,
        "train_records": dataset_fingerprint(train),
    }
    if encoder != DEFAULT_ENCODER[method]:
        # Default encoders keep the settings that earlier runs recorded.
        settings["encoder"] = encoder
    if args.reuse_pretrained and os.path.exists(settings_path):
        with open(settings_path) as f:
            saved = json.load(f)
        if saved.get("settings") == settings and os.path.exists(path):
            print(f"reusing {path}", flush=True)
            return path, saved["seconds"], saved["final_loss"]
    if os.path.exists(out):
        import shutil

        shutil.rmtree(out)  # an earlier, different or unfinished pretraining
    # The pretraining job runs under `enable_determinism(seed)` itself.
    job = {k: v for k, v in settings.items() if k != "train_records"}
    job["encoder"] = encoder
    start = time.time()
    _, history = pretrain_job(argparse.Namespace(**job), train, out)
    seconds, loss = time.time() - start, float(history["loss"][-1])
    with open(settings_path, "w") as f:
        json.dump({"settings": settings, "seconds": seconds, "final_loss": loss}, f)
    return path, seconds, loss


def protocol_backbone(protocol, spec, size, seed, pretrained_path):
    """The encoder a downstream protocol starts from.

    `"scratch"`: a freshly initialised encoder of the spec's method and
    encoder (seeded); otherwise a new copy of the pretrained encoder, so
    every run starts from the same pretrained weights (finetuning changes an
    encoder in place).
    """
    import keras

    from keras_ecg.models.method_factory import build_method

    if protocol == "scratch" or pretrained_path is None:
        method, encoder = parse_spec(spec)
        keras.utils.set_random_seed(seed + 1)
        return build_method(method, size=size, encoder=encoder).backbone
    return keras.saving.load_model(pretrained_path).backbone


def downstream_scores(args, backbone, mode, seed, train, val, test, trained):
    """One downstream run of `train_downstream` (defaults, `--eval-batch-size`,
    `--eval-epochs`), seeded, scored on `test` per record.

    Returns:
        dict: `val_macro_auc` (the selected epoch's), `test_macro_auc` (over
        the `trained` classes) and `test_macro_auprc`, each with its
        `..._ci` (95% bootstrap over test records), `epochs_run` (all
        stages), `seconds`, and `test_scores`, the per-record scores of the
        `trained` classes (`write_outputs` keeps arrays in scores.npz).
    """
    from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics
    from keras_ecg.evaluation.downstream import evaluate_records
    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.utils import enable_determinism

    started = time.time()
    enable_determinism(seed)
    result = train_downstream(
        backbone,
        train,
        val,
        mode=mode,
        batch_size=args.eval_batch_size,
        seed=seed,
        verbose=0,
        epochs=args.eval_epochs,
    )
    scored = evaluate_records(result["model"], test, trained_classes=trained)
    y_score = scored["scores"][:, trained]
    interval = bootstrap_macro_metrics(
        test.labels[:, trained],
        y_score,
        num_resamples=args.bootstrap_resamples,
        seed=args.bootstrap_seed,
    )
    auroc, auprc = interval["macro_auroc"], interval["macro_auprc"]
    return {
        "val_macro_auc": result["best_val_auc"],
        "test_macro_auc": scored["macro_auc"],
        "test_macro_auc_ci": [auroc["low"], auroc["high"]],
        "test_macro_auprc": auprc["value"],
        "test_macro_auprc_ci": [auprc["low"], auprc["high"]],
        "epochs_run": sum(s["epochs_run"] for s in result["stages"]),
        "seconds": time.time() - started,
        "test_scores": y_score,
    }


def seed_mean_intervals(args, y_true, runs):
    """95% bootstrap intervals of the seed-mean macro AUROC / AUPRC.

    Every resample of the test records scores all seeds' predictions, and the
    metric is their mean: the interval is the test-set sampling noise of the
    reported mean (the ± beside it is the seed-to-seed spread).
    """
    from keras_ecg.evaluation.bootstrap import bootstrap_macro_metrics

    return bootstrap_macro_metrics(
        y_true,
        np.stack([r["test_scores"] for r in runs]),
        num_resamples=args.bootstrap_resamples,
        seed=args.bootstrap_seed,
    )


def paired_difference(args, y_true, runs_a, runs_b):
    """Paired bootstrap of seed-mean(A) - seed-mean(B) on the same resamples."""
    from keras_ecg.evaluation.bootstrap import paired_bootstrap

    return paired_bootstrap(
        y_true,
        np.stack([r["test_scores"] for r in runs_a]),
        np.stack([r["test_scores"] for r in runs_b]),
        num_resamples=args.bootstrap_resamples,
        seed=args.bootstrap_seed,
    )


def ci_text(entry, digits=4):
    """`[0.8712, 0.9120]`."""
    return f"[{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def interval_text(entry, digits=4):
    """`0.8938 [0.8712, 0.9120]`, or a signed difference with `*` when its
    interval excludes 0."""
    from keras_ecg.evaluation.bootstrap import format_interval

    text = format_interval(entry, digits)
    return text + (" *" if entry.get("excludes_zero") else "")


def mean_std(values):
    """`"0.7912 ± 0.0043"` (sample std over seeds; one value: no ±)."""
    import numpy as np

    values = np.asarray([v for v in values if v is not None], dtype=float)
    if len(values) == 0:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def header_line(args, started, extra=""):
    import keras
    from machine import cpu_name

    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} ({os.cpu_count()} "
        f"logical CPUs), Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}; `{args.size}` encoders; seeds 0-"
        f"{args.seeds - 1} (mean ± sample std); {extra}total "
        f"{(time.time() - started) / 60:.1f} min."
    )


def command_line(script, args, skip=("update_readme",)):
    """A command that reproduces the run exactly: every option spelt out."""
    import keras

    parts = [f"KERAS_BACKEND={keras.backend.backend()} python benchmarks/{script}"]
    for key, value in sorted(vars(args).items()):
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "data" and os.path.isabs(str(value)):
            # The command runs from the repository root.
            value = os.path.relpath(value, REPO)
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(flag + " " + " ".join(str(v) for v in value))
        else:
            parts.append(f"{flag} {value}")
    return "Command: `" + " ".join(parts) + "`"


def update_readme(table, begin, end):
    """Puts `table` between the `begin` / `end` markers of benchmarks/README.md."""
    readme = os.path.join(HERE, "README.md")
    with open(readme) as f:
        text = f.read()
    if begin not in text or end not in text:
        raise SystemExit(f"{readme} lacks the {begin} / {end} markers.")
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    with open(readme, "w") as f:
        f.write(before + begin + "\n" + table.rstrip() + "\n" + end + after)
    print(f"updated {readme}")


def report(args, script, started, description, lines, rows, begin, end, notes=""):
    """Prints the results table, writes it (and the rows) to `--output` and,
    with `--update-readme`, between `begin` / `end` in benchmarks/README.md.

    The table is: what was measured and how (`header_line` + `description`),
    the markdown `lines`, optional `notes`, and the reproducing command.
    """
    parts = [header_line(args, started, description), "\n".join(lines)]
    if notes:
        parts.append(notes)
    parts.append(command_line(os.path.basename(script), args))
    table = "\n\n".join(parts) + "\n"
    print("\n" + table)
    write_outputs(args, table, rows)
    if args.update_readme:
        update_readme(table, begin, end)


def write_outputs(args, table, rows):
    """results.md, results.json (scalars) and scores.npz (per-record test
    scores of every run, `<row index>`, so intervals can be recomputed)."""
    import json

    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(table)
    arrays = {}
    scalars = []
    for index, row in enumerate(rows):
        kept = {}
        for key, value in row.items():
            if isinstance(value, np.ndarray):
                arrays[f"{index}_{key}"] = value
            else:
                kept[key] = value
        scalars.append(kept)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(scalars, f, indent=2, default=float)
    if arrays:
        np.savez_compressed(os.path.join(args.output, "scores.npz"), **arrays)


def quiet_warnings():
    import warnings

    # Small validation folds lack positives of rare classes; the AUC details
    # list them, a warning per epoch adds nothing.
    warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")


sys.path.insert(0, HERE)
