"""Label efficiency on the PTB-XL subset: pretrained vs supervised from scratch.

The paper's label-efficiency experiment on a CPU budget: one self-supervised
encoder per seed is pretrained on all training records (labels unused); then,
for each fraction of the labelled training records (nested subsets, drawn per
record), a linear probe and a finetuned classifier on the pretrained encoder
are compared with the same architecture trained from scratch, each with the
default protocol of `train_downstream` (early stopping on the full validation
fold). Test macro ROC AUC over the classes with a positive record in the
training fraction, sliding windows averaged per record; mean ± sample std over
`--seeds`.

Usage (with --update-readme the table goes into benchmarks/README.md between
the label_efficiency markers):

    KERAS_BACKEND=tensorflow python benchmarks/label_efficiency_ptbxl.py \
        --method cpc --update-readme
"""

import sys
import time

import ptbxl_protocol as common

BEGIN = "<!-- label_efficiency:begin -->"
END = "<!-- label_efficiency:end -->"
PROTOCOLS = ("linear", "finetune", "scratch")


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/label_efficiency_ptbxl")
    parser.add_argument("--method", default="cpc")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0]
    )
    args = parser.parse_args(argv)

    from keras_ecg.evaluation.downstream import evaluate_records
    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.evaluation.experiments import label_fraction_subset
    from keras_ecg.utils import enable_determinism

    common.quiet_warnings()
    started = time.time()
    train, val, test, _, _ = common.load_fold_splits(args)
    split_text = common.describe_splits(args, train, val, test)
    print(split_text, flush=True)

    rows = []
    for seed in range(args.seeds):
        path, _, _ = common.pretrain(args, args.method, seed, train)
        for fraction in args.fractions:
            subset = label_fraction_subset(train, fraction, seed=seed)
            row = {"seed": seed, "fraction": fraction, "records": len(subset)}
            for protocol in PROTOCOLS:
                enable_determinism(seed)
                backbone = common.protocol_backbone(
                    protocol, args.method, args.size, seed, path
                )
                result = train_downstream(
                    backbone,
                    subset,
                    val,
                    mode=protocol,
                    batch_size=min(128, len(subset)),
                    seed=seed,
                    verbose=0,
                    epochs=args.eval_epochs,
                )
                row[protocol] = evaluate_records(
                    result["model"], test, trained_classes=trained_class_mask(subset)
                )["macro_auc"]
            rows.append(row)
            print(row, flush=True)

    lines = [
        "| label fraction | records | pretrained, linear | pretrained, finetune | "
        "from scratch |",
        "|---|---|---|---|---|",
    ]
    for fraction in args.fractions:
        group = [r for r in rows if r["fraction"] == fraction]
        cells = " | ".join(common.mean_std([r[p] for r in group]) for p in PROTOCOLS)
        lines.append(f"| {fraction:g} | {group[0]['records']} | {cells} |")
    common.report(
        args,
        __file__,
        started,
        f"{args.method} pretrained {args.pretrain_epochs} epochs on all "
        f"training records; {split_text}; downstream: `train_downstream` "
        "defaults on each fraction; ",
        lines,
        rows,
        BEGIN,
        END,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
