"""Label efficiency on the PTB-XL subset: pretrained vs supervised from scratch.

The paper's label-efficiency experiment on a CPU budget: one self-supervised
encoder is pretrained on all training records (labels unused), then, for each
fraction of the labelled training records (nested subsets, drawn per record),
a linear probe and a finetuned classifier on the pretrained encoder are
compared with the same architecture trained from scratch. Splits as in
`reproduce_ptbxl.py`: folds 1-8 minus a 10% epoch-selection hold-out train,
fold 9 tests; test macro ROC AUC over the classes with positives in fold 9,
sliding windows averaged per record.

Usage (with --update-readme the table goes into benchmarks/README.md between
the label_efficiency markers):

    KERAS_BACKEND=tensorflow python benchmarks/label_efficiency_ptbxl.py \
        --method cpc --update-readme
"""

import os
import sys
import time
import warnings

from machine import cpu_name
from reproduce_ptbxl import command_line
from reproduce_ptbxl import experiment_parser
from reproduce_ptbxl import load_subset_splits
from reproduce_ptbxl import pretrain_once
from reproduce_ptbxl import protocol_backbone
from reproduce_ptbxl import update_readme

BEGIN = "<!-- label_efficiency:begin -->"
END = "<!-- label_efficiency:end -->"
PROTOCOLS = ("linear", "finetune", "scratch")


def main(argv=None):
    parser = experiment_parser(__doc__.splitlines()[0], "runs/label_efficiency_ptbxl")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0]
    )
    args = parser.parse_args(argv)

    import keras

    from keras_ecg.evaluation.downstream import evaluate_records
    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.evaluation.experiments import label_fraction_subset

    # Small fractions lack positives of rare classes in the training subset;
    # the test AUC still covers every class present in fold 9.
    warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")
    os.makedirs(args.output, exist_ok=True)
    start = time.time()
    train, val, test = load_subset_splits(args.data, args.label_set, args.seed)
    print(
        f"PTB-XL subset: {len(train)} train / {len(val)} val / {len(test)} test "
        f"records; label set {args.label_set!r}",
        flush=True,
    )
    path, pretrain_seconds = pretrain_once(
        args.method, args.size, args.pretrain_epochs, args.seed, train, args.output
    )

    rows = []
    for fraction in args.fractions:
        subset = label_fraction_subset(train, fraction, seed=args.seed)
        row = {"fraction": fraction, "records": len(subset)}
        for protocol in PROTOCOLS:
            keras.utils.set_random_seed(args.seed)
            backbone = protocol_backbone(
                protocol, args.method, args.size, args.seed, path
            )
            result = train_downstream(
                backbone,
                subset,
                val,
                mode=protocol,
                epochs=args.eval_epochs,
                batch_size=min(128, len(subset)),
                seed=args.seed,
                verbose=0,
            )
            row[protocol] = evaluate_records(result["model"], test)["macro_auc"]
        rows.append(row)
        print(row, flush=True)

    total = time.time() - start
    table = (
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} ({os.cpu_count()} "
        f"logical CPUs), Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}; {args.method} (`{args.size}`) pretrained "
        f"{args.pretrain_epochs} epochs on all {len(train)} training records "
        f"({pretrain_seconds:.0f} s); downstream {args.eval_epochs} epochs on "
        f"each fraction, default learning rates; label set `{args.label_set}`; "
        f"test = fold 9 ({len(test)} records); total {total / 60:.1f} min.\n\n"
        "| label fraction | records | pretrained, linear | pretrained, "
        "finetune | from scratch |\n|---|---|---|---|---|\n"
    )
    for r in rows:
        table += (
            f"| {r['fraction']:g} | {r['records']} | {r['linear']:.4f} | "
            f"{r['finetune']:.4f} | {r['scratch']:.4f} |\n"
        )
    table += command_line("label_efficiency_ptbxl.py", argv)
    print("\n" + table)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(table)
    if args.update_readme:
        update_readme(table, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
