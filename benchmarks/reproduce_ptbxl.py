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

from keras_ecg.data.ptbxl import LABEL_SETS

BEGIN = "<!-- reproduce_ptbxl:begin -->"
END = "<!-- reproduce_ptbxl:end -->"
METHODS = ("cpc", "simclr", "byol", "swav", "jepa")
PROTOCOLS = ("linear", "frozen", "finetune")


def baselines(specs):
    """(label, spec) of the random-init / scratch rows: one per architecture."""
    rows = []
    for spec in specs:
        if common.architecture(spec) not in rows:
            rows.append(common.architecture(spec))
    return rows


def comparisons(specs, protocols=("linear", "finetune")):
    """(label, (model, protocol) A, (model, protocol) B) of the paired tests:
    each method against its architecture's baseline (finetune against
    scratch, a frozen-encoder protocol against a random encoder under the
    same protocol), and against CPC under each protocol."""
    pairs = []
    for spec in specs:
        label = f"{common.spec_label(spec)} pretrained"
        arch = baselines([spec])[0][0]
        for mode in protocols:
            if mode == "finetune":
                baseline, what = (arch, "scratch"), "scratch"
            else:
                baseline, what = (f"random init ({arch})", mode), "random init"
            pairs.append((f"{label}, {mode} - {what}", (label, mode), baseline))
    if "cpc" in specs:
        for spec in specs:
            if spec == "cpc":
                continue
            label = f"{common.spec_label(spec)} pretrained"
            for mode in protocols:
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
    for label, a, b in comparisons(args.methods, args.protocols):
        if a not in grouped or b not in grouped:
            continue
        diff = common.paired_difference(args, y_true, grouped[a], grouped[b])
        lines.append(
            f"| {label} | {common.interval_text(diff['macro_auroc'])} | "
            f"{common.interval_text(diff['macro_auprc'])} |"
        )
    return lines


def table_lines(args, rows, test, trained):
    """The results table of one label set and its paired differences."""
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
    return lines + ["", *difference_lines(args, y_true, grouped)]


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
    parser.add_argument(
        "--label-sets",
        nargs="+",
        choices=LABEL_SETS,
        default=None,
        help="evaluate these PTB-XL label sets, all from one pretraining per "
        "method and seed (default: --label-set); a table per label set",
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        default=["linear", "finetune"],
        help="downstream protocols of the pretrained encoders; the random-init "
        "baseline runs each frozen-encoder protocol, `scratch` pairs finetune",
    )
    args = parser.parse_args(argv)
    for spec in args.methods:
        try:
            common.parse_spec(spec)
        except ValueError as error:
            parser.error(f"--methods {spec}: {error}")

    from keras_ecg.evaluation.downstream import trained_class_mask

    common.quiet_warnings()
    started = time.time()
    label_sets = args.label_sets or [args.label_set]
    # Pretraining uses no labels: the training folds' records of the `all`
    # label set (a record lacking e.g. a rhythm statement is still an ECG),
    # standardised once; every label set's splits get the same statistics.
    pretrain_train, _, _, standardizer, _ = common.load_fold_splits(
        args, label_set="all"
    )
    tasks = collections.OrderedDict()
    for label_set in label_sets:
        train, val, test, _, _ = common.load_fold_splits(
            args, label_set=label_set, standardizer=standardizer
        )
        split_text = common.describe_splits(args, train, val, test, label_set)
        print(split_text, flush=True)
        tasks[label_set] = (train, val, test, trained_class_mask(train), split_text)
    several = len(label_sets) > 1

    rows = []

    def downstream(seed, label_set, label, backbone, mode, pretrain_seconds=None):
        train, val, test, trained, _ = tasks[label_set]
        scores = common.downstream_scores(
            args, backbone, mode, seed, train, val, test, trained
        )
        rows.append(
            {
                "seed": seed,
                "label_set": label_set,
                "model": label,
                "protocol": mode,
                **scores,
                "pretrain_seconds": pretrain_seconds,
            }
        )
        where = f"{label_set} | " if several else ""
        print(
            f"seed {seed} | {where}{label} | {mode}: val "
            f"{scores['val_macro_auc']:.4f} test {scores['test_macro_auc']:.4f} "
            f"({scores['seconds']:.0f} s)",
            flush=True,
        )

    frozen = [p for p in args.protocols if p != "finetune"]
    baseline_modes = frozen + (["scratch"] if "finetune" in args.protocols else [])
    for seed in range(args.seeds):
        for label_set in label_sets:
            for label, architecture in baselines(args.methods):
                for mode in baseline_modes:
                    backbone = common.protocol_backbone(
                        "scratch", architecture, args.size, seed, None
                    )
                    name = label if mode == "scratch" else f"random init ({label})"
                    downstream(seed, label_set, name, backbone, mode)
        for spec in args.methods:
            path, seconds, _ = common.pretrain(args, spec, seed, pretrain_train)
            label = f"{common.spec_label(spec)} pretrained"
            for label_set in label_sets:
                for mode in args.protocols:
                    # Each protocol starts from the same pretrained weights.
                    backbone = common.protocol_backbone(
                        mode, spec, args.size, seed, path
                    )
                    downstream(seed, label_set, label, backbone, mode, seconds)

    lines, notes = [], []
    for label_set, (train, _val, test, trained, split_text) in tasks.items():
        if several:
            lines += [f"#### Label set `{label_set}`", "", split_text, ""]
        lines += table_lines(
            args, [r for r in rows if r["label_set"] == label_set], test, trained
        )
        untrained = [c for c, t in zip(train.classes, trained) if not t]
        present = test.labels[:, trained].sum(0) > 0
        notes.append(
            (f"`{label_set}`: " if several else "")
            + f"classes scored: the {int(trained.sum())} with a positive training "
            f"record ({int(present.sum())} of them with a positive test record; "
            "classes without positives or negatives in the test fold have no "
            "AUC and are left out of the mean). Left out for having no positive "
            f"training record: {', '.join(untrained) if untrained else 'none'}."
        )
        if several:
            lines.append("")
    notes.append(
        f"95% CI: bootstrap over the test records "
        f"({args.bootstrap_resamples} resamples, seed {args.bootstrap_seed}; "
        "percentile interval for AUROC, basic (reflected) interval for AUPRC, "
        "see 'Bootstrap interval coverage' in benchmarks/README.md); "
        "each resample scores every seed's predictions, so the interval is the "
        "test-set noise of the seed mean, and the ± is the spread over seeds. "
        "Differences: paired bootstrap on the same resamples; `*` marks an "
        "interval that excludes 0. Pretraining: the training folds' records "
        f"({len(pretrain_train)}), labels unused, one per method and seed for "
        "every label set."
    )
    split_text = (
        next(iter(tasks.values()))[4]
        if not several
        else f"label sets {', '.join(label_sets)}"
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
        notes=" ".join(notes),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
