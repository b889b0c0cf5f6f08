"""Pretraining scale on PTB-XL: the gain over random init vs pretraining steps and data.

For each method spec (default JEPA, CPC and ECG-CPC's S4 CPC), seed and
point `fraction:epochs`, the spec is pretrained on `fraction` of the training
records (a nested per-seed subset of records, `label_fraction_subset`) for
`epochs` epochs (labels unused), then evaluated with the default protocols of
`train_downstream` on ALL labelled training records: linear evaluation and
finetuning. The gains are paired per seed: linear against the same
architecture's randomly initialised encoder under linear evaluation, finetune
against the same architecture trained from scratch, both run once per seed
(they do not depend on the point). Test macro ROC AUC over the classes with a
positive training record, sliding windows (2.5 s, stride 1.25 s) averaged
per record, as `reproduce_ptbxl.py`; mean ± sample std over `--seeds`.

A point applies to every spec, or to some: `1:150@jepa,cpc`. Steps per epoch
are `records // batch` (full batches only), so points of equal
`fraction x epochs` take equal optimizer steps (e.g. 0.25:80, 0.5:40, 1:20):
the data axis at a fixed compute budget.

Usage (with --update-readme the table goes into benchmarks/README.md between
the pretrain_scale markers):

    KERAS_BACKEND=tensorflow python benchmarks/pretrain_scale_ptbxl.py \
        --methods jepa cpc cpc:s4 --points 1:20 0.5:40 0.25:80 1:60 \
        --seeds 2 --update-readme
"""

import collections
import sys
import time

import numpy as np
import ptbxl_protocol as common
from reproduce_ptbxl import baselines

BEGIN = "<!-- pretrain_scale:begin -->"
END = "<!-- pretrain_scale:end -->"
PROTOCOLS = ("linear", "finetune")
DEFAULT_POINTS = ("1:20", "0.5:40", "0.25:80", "1:60")


def parse_point(text):
    """`"0.5:40"` -> `(0.5, 40, None)`; `"1:150@jepa,cpc"` -> `(1.0, 150,
    ("jepa", "cpc"))` (the specs it applies to; None: every spec).

    Raises:
        ValueError: not `fraction:epochs[@spec,...]`, a fraction outside
            (0, 1] or fewer than one epoch.
    """
    body, _, only = str(text).partition("@")
    fraction, sep, epochs = body.partition(":")
    try:
        fraction, epochs = float(fraction), int(epochs)
    except ValueError:
        raise ValueError(f"point {text!r}: expected fraction:epochs") from None
    if not sep or not 0.0 < fraction <= 1.0 or epochs < 1:
        raise ValueError(
            f"point {text!r}: expected fraction:epochs with 0 < fraction <= 1 "
            "and epochs >= 1"
        )
    specs = tuple(s for s in only.split(",") if s) if only else None
    return fraction, epochs, specs


def paired_gains(rows, baseline_rows):
    """Per seed: `row - baseline` of the same seed; seeds without a
    baseline are left out."""
    base = {r["seed"]: r["test_macro_auc"] for r in baseline_rows}
    return [r["test_macro_auc"] - base[r["seed"]] for r in rows if r["seed"] in base]


def signed(values):
    """`"+0.0123 ± 0.0040"` (mean ± sample std); `"—"` if empty."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "—"
    if len(values) == 1:
        return f"{values[0]:+.4f}"
    return f"{values.mean():+.4f} ± {values.std(ddof=1):.4f}"


MODES = {"linear": "linear", "finetune": "scratch"}


def difference_lines(args, y_true, grouped, base):
    """Paired bootstrap differences of seed means (same test resamples).

    Per point and protocol: the spec against its architecture's baseline
    (random init / scratch); per spec, every later point against its first
    one (more data or steps); per point, every spec against the first spec.
    """
    lines = [
        "| difference (seed means) | macro AUROC [95% CI] | macro AUPRC [95% CI] |",
        "|---|---|---|",
    ]

    def add(label, runs_a, runs_b):
        diff = common.paired_difference(args, y_true, runs_a, runs_b)
        lines.append(
            f"| {label} | {common.interval_text(diff['macro_auroc'])} | "
            f"{common.interval_text(diff['macro_auprc'])} |"
        )

    def runs(group, protocol):
        return [r for r in group if r["protocol"] == protocol]

    def name(spec, fraction, epochs):
        return f"{common.spec_label(spec)} {fraction:g}:{epochs}"

    for (spec, fraction, epochs), group in grouped.items():
        label = common.architecture(spec)[0]
        for protocol, mode in MODES.items():
            what = "random init" if mode == "linear" else "scratch"
            if runs(group, protocol) and base[(label, mode)]:
                add(
                    f"{name(spec, fraction, epochs)}, {protocol} - {what}",
                    runs(group, protocol),
                    base[(label, mode)],
                )
    keys = list(grouped)
    for protocol in MODES:
        for spec in dict.fromkeys(k[0] for k in keys):
            points = [k for k in keys if k[0] == spec]
            for later in points[1:]:
                a, b = (
                    runs(grouped[later], protocol),
                    runs(grouped[points[0]], protocol),
                )
                if a and b:
                    add(f"{name(*later)} - {name(*points[0])}, {protocol}", a, b)
        specs = list(dict.fromkeys(k[0] for k in keys))
        for fraction, epochs in dict.fromkeys(k[1:] for k in keys):
            first = (specs[0], fraction, epochs)
            for spec in specs[1:]:
                other = (spec, fraction, epochs)
                if first in grouped and other in grouped:
                    a = runs(grouped[other], protocol)
                    b = runs(grouped[first], protocol)
                    if a and b:
                        add(
                            f"{name(*other)} - {common.spec_label(specs[0])}, "
                            f"{protocol}",
                            a,
                            b,
                        )
    return lines


def report(args, started, split_text, rows, y_true):
    """The results table and the paired differences; see `common.report`."""
    grouped = collections.OrderedDict()
    for row in rows:
        if "spec" in row:
            key = (row["spec"], row["fraction"], row["epochs"])
            grouped.setdefault(key, []).append(row)
    base = collections.defaultdict(list)
    for row in rows:
        if "architecture" in row:
            base[(row["architecture"], row["protocol"])].append(row)
    lines = [
        "| method | pretraining records | epochs | steps | linear | "
        "gain vs random init | finetune | gain vs scratch | pretrain min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, _ in baselines(args.methods):
        cells = [
            common.mean_std(r["test_macro_auc"] for r in base[(label, mode)])
            for mode in ("linear", "scratch")
        ]
        lines.append(
            f"| baseline ({label}) | — | — | — | {cells[0]} (random init) | — | "
            f"{cells[1]} (scratch) | — | — |"
        )
    for (spec, fraction, epochs), group in grouped.items():
        label = common.architecture(spec)[0]
        cells = []
        for protocol, mode in MODES.items():
            runs = [r for r in group if r["protocol"] == protocol]
            cells.append(common.mean_std(r["test_macro_auc"] for r in runs))
            cells.append(signed(paired_gains(runs, base[(label, mode)])))
        first = group[0]
        minutes = np.mean([r["pretrain_seconds"] for r in group]) / 60
        lines.append(
            f"| {common.spec_label(spec)} | {first['records']} ({fraction:g}) | "
            f"{epochs} | {first['steps']} | {' | '.join(cells)} | {minutes:.1f} |"
        )
    if all("test_scores" in r for r in rows):
        lines += ["", *difference_lines(args, y_true, grouped, base)]
    batch = ", ".join(
        f"{common.spec_label(s)} {common.pretrain_batch_size(args, s)}"
        for s in args.methods
    )
    common.report(
        args,
        __file__,
        started,
        f"{split_text}; pretraining on a fraction of the training records "
        f"(nested per seed), AdamW lr {args.lr} (JEPA: the reference's warm-up "
        f"+ cosine schedule to it), batch {batch}; downstream on all labelled "
        "training records with the `train_downstream` defaults; test macro "
        "AUROC; gains paired per seed (mean ± std); differences: paired "
        f"bootstrap of the seed means over the test records "
        f"({args.bootstrap_resamples} resamples, seed {args.bootstrap_seed}), "
        "`*` where the 95% interval excludes 0; ",
        lines,
        rows,
        BEGIN,
        END,
    )


def load_results(folder):
    """The rows of an earlier run's results.json, with their per-record test
    scores from scores.npz (written by `common.write_outputs`)."""
    import json
    import os

    with open(os.path.join(folder, "results.json")) as f:
        rows = json.load(f)
    scores_path = os.path.join(folder, "scores.npz")
    if os.path.exists(scores_path):
        with np.load(scores_path) as arrays:
            for key in arrays.files:
                index, _, field = key.partition("_")
                rows[int(index)][field] = arrays[key]
    return rows


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/pretrain_scale_ptbxl")
    parser.set_defaults(pretrain_epochs=None)  # the points give the epochs
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["jepa", "cpc", "cpc:s4"],
        help="method specs: a method, or method:encoder (e.g. cpc:s4, jepa:s4)",
    )
    parser.add_argument(
        "--points",
        nargs="+",
        default=list(DEFAULT_POINTS),
        help="fraction:epochs of pretraining, optionally @spec,spec (e.g. "
        "1:150@jepa,cpc: that point for those specs only)",
    )
    parser.add_argument(
        "--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS
    )
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument(
        "--from-results",
        default=None,
        help="a finished run's --output folder: rebuild its table (and paired "
        "differences) from results.json + scores.npz, training nothing; the "
        "other options must be the run's",
    )
    args = parser.parse_args(argv)
    for spec in args.methods:
        try:
            common.parse_spec(spec)
        except ValueError as error:
            parser.error(f"--methods {spec}: {error}")
    try:
        points = [parse_point(p) for p in args.points]
    except ValueError as error:
        parser.error(f"--points: {error}")
    for _, _, only in points:
        for spec in only or ():
            if spec not in args.methods:
                parser.error(f"--points: {spec!r} is not one of --methods")

    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.evaluation.experiments import label_fraction_subset

    common.quiet_warnings()
    started = time.time()
    train, val, test, _, _ = common.load_fold_splits(args)
    split_text = common.describe_splits(args, train, val, test)
    print(split_text, flush=True)
    trained = trained_class_mask(train)
    if args.from_results:
        rows = load_results(args.from_results)
        # The header's "total" is then the sum of the runs' own times.
        pretrained = {
            (r["spec"], r["fraction"], r["epochs"], r["seed"]): r["pretrain_seconds"]
            for r in rows
            if "spec" in r
        }
        spent = sum(r["seconds"] for r in rows) + sum(pretrained.values())
        report(args, time.time() - spent, split_text, rows, test.labels[:, trained])
        return 0
    rows = []

    def downstream(seed, backbone, mode, **row):
        scores = common.downstream_scores(
            args, backbone, mode, seed, train, val, test, trained
        )
        row.update(
            seed=seed,
            protocol=mode,
            val_macro_auc=scores["val_macro_auc"],
            test_macro_auc=scores["test_macro_auc"],
            test_macro_auc_ci=scores["test_macro_auc_ci"],
            test_macro_auprc=scores["test_macro_auprc"],
            test_macro_auprc_ci=scores["test_macro_auprc_ci"],
            seconds=scores["seconds"],
            # Per-record test scores (scores.npz): the paired intervals.
            test_scores=scores["test_scores"],
        )
        rows.append(row)
        print(
            {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in row.items()
                if k != "test_scores"
            },
            flush=True,
        )

    for seed in range(args.seeds):
        for label, architecture in baselines(args.methods):
            for protocol in args.protocols:
                backbone = common.protocol_backbone(
                    "scratch", architecture, args.size, seed, None
                )
                downstream(seed, backbone, MODES[protocol], architecture=label)
        for spec in args.methods:
            for fraction, epochs, only in points:
                if only is not None and spec not in only:
                    continue
                subset = train
                if fraction < 1.0:
                    subset = label_fraction_subset(train, fraction, seed=seed)
                batch = min(common.pretrain_batch_size(args, spec), len(subset))
                path, seconds, loss = common.pretrain(
                    args,
                    spec,
                    seed,
                    subset,
                    epochs=epochs,
                    tag=f"f{fraction:g}_e{epochs}",
                )
                for protocol in args.protocols:
                    backbone = common.protocol_backbone(
                        protocol, spec, args.size, seed, path
                    )
                    downstream(
                        seed,
                        backbone,
                        protocol,
                        spec=spec,
                        fraction=fraction,
                        records=len(subset),
                        epochs=epochs,
                        steps=epochs * (len(subset) // batch),
                        pretrain_seconds=seconds,
                        final_loss=loss,
                    )

    report(args, started, split_text, rows, test.labels[:, trained])
    return 0


if __name__ == "__main__":
    sys.exit(main())
