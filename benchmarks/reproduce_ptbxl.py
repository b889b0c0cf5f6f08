"""The paper's PTB-XL protocol: pretrain, linear evaluation, finetuning, over seeds.

Rows: for every method (CPC, SimCLR, BYOL, SwAV, JEPA by default), self-supervised
pretraining on the training records (labels unused), then linear evaluation
and finetuning with the default protocols of `train_downstream`; against a
randomly initialised encoder under linear evaluation and the same
architectures trained from scratch. Test macro ROC AUC over the classes with
a positive training record (the others never trained an output and are
listed), sliding windows (2.5 s, stride 1.25 s) averaged per record, as in
Mehari & Strodthoff (2022). Each row is the mean ± sample std over `--seeds`
runs (seed s seeds the pretraining, the head and the crops).

Default split: the shared subset's (train folds 1-7, val 8, test 9); on the
full PTB-XL, `--train-folds 1-8 --val-folds 9 --test-folds 10` is the paper's.

Usage (the table goes into benchmarks/README.md with --update-readme):

    KERAS_BACKEND=tensorflow python benchmarks/reproduce_ptbxl.py --update-readme
"""

import collections
import sys
import time

import ptbxl_protocol as common

BEGIN = "<!-- reproduce_ptbxl:begin -->"
END = "<!-- reproduce_ptbxl:end -->"
METHODS = ("cpc", "simclr", "byol", "swav", "jepa")


def baselines(specs):
    """(label, spec) of the random-init / scratch rows: one per architecture."""
    rows = []
    for spec in specs:
        if common.architecture(spec) not in rows:
            rows.append(common.architecture(spec))
    return rows


def comparisons(specs):
    """(label, (model, protocol) A, (model, protocol) B) of the paired tests:
    each method against its architecture's baseline, and against CPC."""
    pairs = []
    for spec in specs:
        label = f"{common.spec_label(spec)} pretrained"
        arch = baselines([spec])[0][0]
        pairs.append(
            (f"{label}, finetune - scratch", (label, "finetune"), (arch, "scratch"))
        )
        pairs.append(
            (
                f"{label}, linear - random init",
                (label, "linear"),
                (f"random init ({arch})", "linear"),
            )
        )
    if "cpc" in specs:
        for spec in specs:
            if spec == "cpc":
                continue
            label = f"{common.spec_label(spec)} pretrained"
            for mode in ("linear", "finetune"):
                pairs.append(
                    (
                        f"{label} - cpc pretrained, {mode}",
                        (label, mode),
                        ("cpc pretrained", mode),
                    )
                )
    return pairs


def difference_lines(args, y_true, grouped):
    lines = [
        "| difference (seed means) | macro AUROC [95% CI] | macro AUPRC [95% CI] |",
        "|---|---|---|",
    ]
    for label, a, b in comparisons(args.methods):
        if a not in grouped or b not in grouped:
            continue
        diff = common.paired_difference(args, y_true, grouped[a], grouped[b])
        lines.append(
            f"| {label} | {common.interval_text(diff['macro_auroc'])} | "
            f"{common.interval_text(diff['macro_auprc'])} |"
        )
    return lines


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/reproduce_ptbxl")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        help="method specs: a method, or method:encoder (e.g. cpc:s4, the "
        "ECG-CPC architecture; simclr:s4)",
    )
    parser.add_argument("--eval-batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    for spec in args.methods:
        try:
            common.parse_spec(spec)
        except ValueError as error:
            parser.error(f"--methods {spec}: {error}")

    from keras_ecg.evaluation.downstream import trained_class_mask

    common.quiet_warnings()
    started = time.time()
    train, val, test, _, _ = common.load_fold_splits(args)
    split_text = common.describe_splits(args, train, val, test)
    print(split_text, flush=True)
    trained = trained_class_mask(train)
    untrained = [c for c, t in zip(train.classes, trained) if not t]
    present = test.labels[:, trained].sum(0) > 0

    rows = []

    def downstream(seed, label, backbone, mode, pretrain_seconds=None):
        scores = common.downstream_scores(
            args, backbone, mode, seed, train, val, test, trained
        )
        rows.append(
            {
                "seed": seed,
                "model": label,
                "protocol": mode,
                **scores,
                "pretrain_seconds": pretrain_seconds,
            }
        )
        print(
            f"seed {seed} | {label} | {mode}: val {scores['val_macro_auc']:.4f} "
            f"test {scores['test_macro_auc']:.4f} ({scores['seconds']:.0f} s)",
            flush=True,
        )

    for seed in range(args.seeds):
        for label, architecture in baselines(args.methods):
            for mode in ("linear", "scratch"):
                backbone = common.protocol_backbone(
                    "scratch", architecture, args.size, seed, None
                )
                name = f"random init ({label})" if mode == "linear" else label
                downstream(seed, name, backbone, mode)
        for spec in args.methods:
            path, seconds, _ = common.pretrain(args, spec, seed, train)
            label = f"{common.spec_label(spec)} pretrained"
            for mode in ("linear", "finetune"):
                # Each protocol starts from the same pretrained weights.
                backbone = common.protocol_backbone(mode, spec, args.size, seed, path)
                downstream(seed, label, backbone, mode, seconds)

    grouped = collections.OrderedDict()
    for row in rows:
        grouped.setdefault((row["model"], row["protocol"]), []).append(row)
    y_true = test.labels[:, trained]
    lines = [
        "| encoder | protocol | val macro AUC | test macro AUROC | 95% CI | "
        "test macro AUPRC | 95% CI | epochs run | downstream s | pretrain s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, mode), group in grouped.items():
        epochs = [r["epochs_run"] for r in group]
        pretrain_s = [r["pretrain_seconds"] for r in group if r["pretrain_seconds"]]
        interval = common.seed_mean_intervals(args, y_true, group)
        lines.append(
            f"| {model} | {mode} | "
            f"{common.mean_std([r['val_macro_auc'] for r in group])} | "
            f"{common.mean_std([r['test_macro_auc'] for r in group])} | "
            f"{common.ci_text(interval['macro_auroc'])} | "
            f"{common.mean_std([r['test_macro_auprc'] for r in group])} | "
            f"{common.ci_text(interval['macro_auprc'])} | "
            f"{min(epochs)}-{max(epochs)} | "
            f"{sum(r['seconds'] for r in group) / len(group):.0f} | "
            f"{sum(pretrain_s) / len(pretrain_s) if pretrain_s else 0:.0f} |"
        )
    lines += ["", *difference_lines(args, y_true, grouped)]
    notes = (
        f"Classes scored: the {int(trained.sum())} with a positive training record "
        f"({int(present.sum())} of them with a positive test record; classes "
        "without positives or negatives in the test fold have no AUC and are left "
        "out of the mean). Left out for having no positive training record: "
        f"{', '.join(untrained) if untrained else 'none'}. "
        f"95% CI: percentile bootstrap over the {len(test)} test records "
        f"({args.bootstrap_resamples} resamples, seed {args.bootstrap_seed}); "
        "each resample scores every seed's predictions, so the interval is the "
        "test-set noise of the seed mean, and the ± is the spread over seeds. "
        "Differences: paired bootstrap on the same resamples; `*` marks an "
        "interval that excludes 0."
    )
    common.report(
        args,
        __file__,
        started,
        f"{split_text}; pretraining {args.pretrain_epochs} epochs, AdamW lr "
        f"{args.lr} (JEPA: the reference's warm-up + cosine schedule to it), "
        f"batch {args.batch_size} (CPC {args.cpc_batch_size}); "
        "downstream: `train_downstream` defaults; ",
        lines,
        rows,
        BEGIN,
        END,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
