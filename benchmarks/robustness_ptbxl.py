"""Robustness to physiological noise on the PTB-XL subset.

The paper's robustness experiment on a CPU budget: classifiers trained on
clean records (a linear probe and a finetuned classifier on a self-supervised
encoder, and the same architecture trained from scratch) are tested on fold 9
corrupted by the physiological noise stack of the reference evaluation
(baseline wander, powerline, electrode motion, baseline shift) at levels 1-6,
added in mV before the training standardisation. Splits as in
`reproduce_ptbxl.py`; test macro ROC AUC, sliding windows averaged per record.

Usage (with --update-readme the table goes into benchmarks/README.md between
the robustness markers):

    KERAS_BACKEND=tensorflow python benchmarks/robustness_ptbxl.py \
        --method cpc --update-readme
"""

import os
import sys
import time

from machine import cpu_name
from reproduce_ptbxl import command_line
from reproduce_ptbxl import experiment_parser
from reproduce_ptbxl import load_subset_splits
from reproduce_ptbxl import pretrain_once
from reproduce_ptbxl import protocol_backbone
from reproduce_ptbxl import update_readme

BEGIN = "<!-- robustness:begin -->"
END = "<!-- robustness:end -->"
PROTOCOLS = ("linear", "finetune", "scratch")


def main(argv=None):
    parser = experiment_parser(__doc__.splitlines()[0], "runs/robustness_ptbxl")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = parser.parse_args(argv)

    import keras

    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.evaluation.experiments import robustness_table

    os.makedirs(args.output, exist_ok=True)
    start = time.time()
    train, val, _, standardizer, raw_test = load_subset_splits(
        args.data, args.label_set, args.seed, with_raw_test=True
    )
    path, pretrain_seconds = pretrain_once(
        args.method, args.size, args.pretrain_epochs, args.seed, train, args.output
    )
    scores = {}
    for protocol in PROTOCOLS:
        backbone = protocol_backbone(protocol, args.method, args.size, args.seed, path)
        keras.utils.set_random_seed(args.seed)
        model = train_downstream(
            backbone,
            train,
            val,
            mode=protocol,
            epochs=args.eval_epochs,
            seed=args.seed,
            verbose=0,
        )["model"]
        rows = robustness_table(
            model, raw_test, standardizer, levels=args.levels, seed=args.seed
        )
        scores[protocol] = {r["noise_level"]: r["macro_auc"] for r in rows}
        print(protocol, scores[protocol], flush=True)

    total = time.time() - start
    table = (
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} ({os.cpu_count()} "
        f"logical CPUs), Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}; {args.method} (`{args.size}`) pretrained "
        f"{args.pretrain_epochs} epochs ({pretrain_seconds:.0f} s); downstream "
        f"{args.eval_epochs} epochs on the {len(train)} clean training records, "
        f"default learning rates; label set `{args.label_set}`; test = fold 9 "
        f"({len(raw_test)} records), noise seed {args.seed}; total "
        f"{total / 60:.1f} min.\n\n"
        "| noise level | pretrained, linear | pretrained, finetune | from scratch |\n"
        "|---|---|---|---|\n"
    )
    for level in [0] + list(args.levels):
        cells = " | ".join(f"{scores[p][level]:.4f}" for p in PROTOCOLS)
        table += f"| {level if level else '0 (clean)'} | {cells} |\n"
    table += command_line("robustness_ptbxl.py", argv)
    print("\n" + table)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(table)
    if args.update_readme:
        update_readme(table, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
