"""Downstream protocols compared on the PTB-XL subset, over seeds.

What makes finetuning a pretrained encoder pay off? Each named protocol below
is one `train_downstream` configuration; every one is run on the same
pretrained encoders (one per method and seed) and the same splits, and scored
by test macro ROC AUC over the classes with a positive training record
(sliding windows averaged per record). Scratch rows train a freshly
initialised encoder of the same architecture.

Usage (with --update-readme the table goes into benchmarks/README.md between
the finetune_protocols markers):

    KERAS_BACKEND=tensorflow python benchmarks/finetune_protocols_ptbxl.py \
        --methods cpc simclr --seeds 3 --update-readme
"""

import collections
import sys
import time

import ptbxl_protocol as common

BEGIN = "<!-- finetune_protocols:begin -->"
END = "<!-- finetune_protocols:end -->"

# The protocols of keras-ecg <= 0.1.0 (15 epochs at a constant 1e-3, a
# Glorot-initialised plain Dense head, no linear stage): the failure measured
# in issue 9 (finetuning below the linear probe).
_OLD = dict(
    epochs=15,
    patience=0,
    schedule="constant",
    head_batch_norm=False,
    output_initializer="glorot_uniform",
)

# name -> (mode, train_downstream options, what it tests)
PROTOCOLS = {
    "linear": ("linear", {}, "linear evaluation (the default)"),
    "ft-old": (
        "finetune",
        dict(_OLD, linear_probe_epochs=0),
        "the previous finetuning: 15 epochs at lr 1e-3, Glorot Dense head",
    ),
    "ft-plain": (
        "finetune",
        dict(linear_probe_epochs=0),
        "no linear stage; BatchNorm head started near zero, up to 50 epochs, "
        "warm-up + cosine, early stopping (patience 10)",
    ),
    "ft-discriminative": (
        "finetune",
        dict(linear_probe_epochs=0, discriminative_lr=0.1),
        "as ft-plain, backbone at 0.1 x the head's lr",
    ),
    "lp-ft-discriminative": (
        "finetune",
        dict(discriminative_lr=0.1),
        "20 linear epochs first, then the backbone at 0.1 x lr (the "
        "reference's CPC recipe)",
    ),
    "lp-ft": (
        "finetune",
        {},
        "20 linear epochs first, then every weight at one lr (the default)",
    ),
    "lp-ft-frozen-bn": (
        "finetune",
        dict(backbone_batch_norm="frozen"),
        "lp-ft with the backbone's BatchNorm layers kept in inference mode",
    ),
    "scratch-old": (
        "scratch",
        _OLD,
        "supervised from scratch, the previous protocol",
    ),
    "scratch": ("scratch", {}, "supervised from scratch (the default)"),
}


def main(argv=None):
    parser = common.base_parser(
        __doc__.splitlines()[0], "runs/finetune_protocols_ptbxl"
    )
    parser.add_argument("--methods", nargs="+", default=["cpc", "simclr"])
    parser.add_argument(
        "--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS)
    )
    parser.add_argument("--eval-batch-size", type=int, default=128)
    args = parser.parse_args(argv)

    from keras_ecg.evaluation.downstream import evaluate_records
    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.utils import enable_determinism

    common.quiet_warnings()
    started = time.time()
    train, val, test, _, _ = common.load_fold_splits(args)
    print(common.describe_splits(args, train, val, test), flush=True)
    trained = trained_class_mask(train)

    overrides = {"epochs": args.eval_epochs} if args.eval_epochs else {}
    rows = []
    for seed in range(args.seeds):
        for method in args.methods:
            path, seconds, loss = common.pretrain(args, method, seed, train)
            for name in args.protocols:
                mode, options, _ = PROTOCOLS[name]
                if mode == "scratch":
                    # Scratch depends on the architecture only: run it once
                    # per architecture (xresnet, CPC, transformer).
                    first = next(
                        m
                        for m in args.methods
                        if common.architecture(m) == common.architecture(method)
                    )
                    if method != first:
                        continue
                t0 = time.time()
                enable_determinism(seed)
                backbone = common.protocol_backbone(mode, method, args.size, seed, path)
                result = train_downstream(
                    backbone,
                    train,
                    val,
                    mode=mode,
                    batch_size=args.eval_batch_size,
                    seed=seed,
                    verbose=0,
                    **{**options, **overrides},
                )
                auc = evaluate_records(result["model"], test, trained_classes=trained)
                row = {
                    "seed": seed,
                    "method": {"cpc encoder": "cpc"}.get(
                        common.architecture(method)[0], common.architecture(method)[0]
                    )
                    if mode == "scratch"
                    else method,
                    "protocol": name,
                    "val_macro_auc": result["best_val_auc"],
                    "test_macro_auc": auc["macro_auc"],
                    "epochs_run": [s["epochs_run"] for s in result["stages"]],
                    "seconds": time.time() - t0,
                }
                rows.append(row)
                print(
                    f"seed {seed} {row['method']:9s} {name:18s} val "
                    f"{row['val_macro_auc']:.4f} test {row['test_macro_auc']:.4f} "
                    f"epochs {row['epochs_run']} ({row['seconds']:.0f} s)",
                    flush=True,
                )

    grouped = collections.defaultdict(list)
    for row in rows:
        grouped[(row["method"], row["protocol"])].append(row)
    lines = [
        "| encoder | protocol | val macro AUC | test macro AUC | epochs run | "
        "s / run |",
        "|---|---|---|---|---|---|",
    ]
    for (method, name), group in grouped.items():
        epochs = [sum(r["epochs_run"]) for r in group]
        lines.append(
            f"| {method} | {name} | "
            f"{common.mean_std([r['val_macro_auc'] for r in group])} | "
            f"{common.mean_std([r['test_macro_auc'] for r in group])} | "
            f"{min(epochs)}-{max(epochs)} | "
            f"{sum(r['seconds'] for r in group) / len(group):.0f} |"
        )
    legend = "\n".join(f"- `{name}`: {PROTOCOLS[name][2]}" for name in args.protocols)
    common.report(
        args,
        __file__,
        started,
        f"{common.describe_splits(args, train, val, test)}; pretraining "
        f"{args.pretrain_epochs} epochs (batch {args.batch_size}, CPC "
        f"{args.cpc_batch_size}); ",
        lines,
        rows,
        BEGIN,
        END,
        notes=legend,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
