"""The paper's PTB-XL protocol on a CPU budget: pretrain, linear eval, finetune.

Rows: CPC and SimCLR pretraining followed by linear evaluation and finetuning,
against a randomly initialised encoder under linear evaluation and the same
classifier trained from scratch. Macro ROC AUC over the label set's classes
present in the test records, sliding windows (250, stride 125) averaged per
record, as in Mehari & Strodthoff (2022).

The shared PTB-XL subset has no fold 10, so the test split is fold 9 and the
training records are folds 1-8; 10% of those (by record, seeded) are held out
for epoch selection, so the test fold never selects anything. Pretraining uses
the training records only (no labels).

Usage (writes a markdown table and, with --update-readme, puts it in
benchmarks/README.md between the reproduce_ptbxl markers):

    KERAS_BACKEND=tensorflow python benchmarks/reproduce_ptbxl.py \
        --data ../shared/data/ptbxl --update-readme
"""

import argparse
import json
import os
import sys
import time

from machine import cpu_name

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN = "<!-- reproduce_ptbxl:begin -->"
END = "<!-- reproduce_ptbxl:end -->"
DEFAULT_LR_NOTE = "1e-2 linear (BatchNorm head, near-zero init), 1e-3 otherwise"


def load_subset_splits(data_dir, label_set, seed, with_raw_test=False):
    """Train / val / test of the PTB-XL subset, standardised on train.

    Folds 1-8 minus a seeded 10% of their records (held out for epoch
    selection) train; fold 9 tests (the subset has no fold 10). With
    `with_raw_test`, also returns the standardizer and the test split in mV
    (for noise added before standardisation).
    """
    import numpy as np

    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.data.ptbxl import load_ptbxl

    data = load_ptbxl(data_dir, sampling_rate=100, label_set=label_set)
    train_all = data.select_folds(range(1, 9))
    test = data.select_folds([9])
    order = np.random.default_rng(seed).permutation(len(train_all))
    num_val = max(1, len(train_all) // 10)
    val = train_all.subset(np.sort(order[:num_val]))
    train = train_all.subset(np.sort(order[num_val:]))
    standardizer = LeadStandardizer().fit(train)
    splits = tuple(standardizer.transform(d) for d in (train, val, test))
    return splits + (standardizer, test) if with_raw_test else splits


def pretrain_once(method, size, epochs, seed, train, output_dir, lr=1e-3):
    """Pretrains `method` on `train`; returns the `.keras` path and seconds."""
    from keras_ecg.workflows import pretrain

    namespace = argparse.Namespace(
        method=method,
        size=size,
        lr=lr,
        batch_size=32 if method == "cpc" else 128,
        epochs=epochs,
        seed=seed,
    )
    start = time.time()
    out = os.path.join(output_dir, method)
    pretrain(namespace, train, out)
    return os.path.join(out, "pretrained.keras"), time.time() - start


def protocol_backbone(protocol, method, size, seed, pretrained_path):
    """The encoder a downstream protocol starts from.

    `"scratch"`: a freshly initialised encoder of `method` (seeded); otherwise
    a new copy of the pretrained encoder, so every run starts from the same
    pretrained weights (finetuning changes an encoder in place).
    """
    import keras

    from keras_ecg.models.method_factory import build_method

    if protocol == "scratch":
        keras.utils.set_random_seed(seed + 1)
        return build_method(method, size=size).backbone
    return keras.saving.load_model(pretrained_path).backbone


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
        f.write(before + begin + "\n" + table + end + after)
    print(f"updated {readme}")


def experiment_parser(description, output):
    """The arguments shared by the one-method PTB-XL subset experiments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data", default=os.path.join(HERE, "..", "..", "shared", "data", "ptbxl")
    )
    parser.add_argument("--label-set", default="all")
    parser.add_argument("--method", default="cpc")
    parser.add_argument("--size", default="small", choices=("paper", "small", "tiny"))
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--eval-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=output)
    parser.add_argument("--update-readme", action="store_true")
    return parser


def command_line(script, argv):
    """The `Command:` line that reproduces a run, for the results table."""
    import keras

    arguments = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"KERAS_BACKEND={keras.backend.backend()} python benchmarks/{script} "
    return f"\nCommand: `{(command + arguments).strip()}`\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.path.join(HERE, "..", "..", "shared", "data", "ptbxl")
    )
    parser.add_argument("--label-set", default="all")
    parser.add_argument("--size", default="small", choices=("paper", "small", "tiny"))
    parser.add_argument("--methods", nargs="+", default=["cpc", "simclr"])
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--cpc-pretrain-epochs", type=int, default=None)
    parser.add_argument("--cpc-batch-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-epochs", type=int, default=15)
    parser.add_argument(
        "--eval-lr",
        type=float,
        default=None,
        help="downstream lr; default: 1e-2 linear, 1e-3 finetune/scratch",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/reproduce_ptbxl")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)

    import keras

    from keras_ecg.evaluation.downstream import evaluate_records
    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.models.method_factory import build_method
    from keras_ecg.workflows import pretrain

    os.makedirs(args.output, exist_ok=True)
    start_all = time.time()
    train, val, test = load_subset_splits(args.data, args.label_set, args.seed)
    present = int((test.labels.sum(0) > 0).sum())
    print(
        f"PTB-XL subset: {len(train)} train / {len(val)} val (folds 1-8) / "
        f"{len(test)} test (fold 9) records; label set {args.label_set!r}: "
        f"{train.num_classes} classes, {present} with a positive in the test fold",
        flush=True,
    )

    rows = []

    def downstream(name, backbone, mode):
        t0 = time.time()
        keras.utils.set_random_seed(args.seed)
        result = train_downstream(
            backbone,
            train,
            val,
            mode=mode,
            epochs=args.eval_epochs,
            batch_size=args.batch_size,
            learning_rate=args.eval_lr,
            seed=args.seed,
            verbose=2,
        )
        auc = evaluate_records(result["model"], test)["macro_auc"]
        row = {
            "model": name,
            "protocol": mode,
            "val_macro_auc": result["best_val_auc"],
            "test_macro_auc": auc,
            "best_epoch": result["best_epoch"] + 1,
            "seconds": time.time() - t0,
        }
        rows.append(row)
        print(f"--> {name} / {mode}: test macro AUC {auc:.4f}", flush=True)

    def fresh_backbone(method):
        keras.utils.set_random_seed(args.seed + 1)
        return build_method(method, size=args.size).backbone

    downstream("random init (xresnet1d)", fresh_backbone("simclr"), "linear")
    downstream("supervised (xresnet1d)", fresh_backbone("simclr"), "scratch")
    for method in args.methods:
        epochs = args.pretrain_epochs
        if method == "cpc" and args.cpc_pretrain_epochs:
            epochs = args.cpc_pretrain_epochs
        namespace = argparse.Namespace(
            method=method,
            size=args.size,
            lr=args.lr,
            batch_size=args.batch_size,
            epochs=epochs,
            seed=args.seed,
        )
        t0 = time.time()
        out = os.path.join(args.output, method)
        os.makedirs(out, exist_ok=True)
        model, history = pretrain(namespace, train, out)
        pretrain_seconds = time.time() - t0
        path = os.path.join(out, "pretrained.keras")
        for mode in ("linear", "finetune"):
            # Each protocol starts from the same pretrained weights.
            backbone = keras.saving.load_model(path).backbone
            downstream(f"{method} pretrained ({epochs} ep)", backbone, mode)
            rows[-1]["pretrain_seconds"] = pretrain_seconds
            rows[-1]["pretrain_final_loss"] = float(history["loss"][-1])

    total = time.time() - start_all
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} ({os.cpu_count()} "
        f"logical CPUs), Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}; `{args.size}` encoders; pretraining "
        f"{args.pretrain_epochs} epochs (CPC "
        f"{args.cpc_pretrain_epochs or args.pretrain_epochs}), batch "
        f"{args.batch_size} (CPC {args.cpc_batch_size}), AdamW lr {args.lr}; "
        f"downstream {args.eval_epochs} "
        f"epochs, lr {args.eval_lr or DEFAULT_LR_NOTE}; "
        f"label set `{args.label_set}` "
        f"({present} classes present in fold 9); {len(train)}/{len(val)}/"
        f"{len(test)} train/val/test records; total {total / 60:.1f} min.\n\n"
    )
    lines = [
        "| model | protocol | val macro AUC | test macro AUC | best epoch | "
        "downstream s | pretrain s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['protocol']} | {r['val_macro_auc']:.4f} | "
            f"{r['test_macro_auc']:.4f} | {r['best_epoch']} | {r['seconds']:.0f} | "
            f"{r.get('pretrain_seconds', 0):.0f} |"
        )
    table = header + "\n".join(lines) + "\n"
    table += command_line("reproduce_ptbxl.py", argv)
    print("\n" + table)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    if args.update_readme:
        update_readme(table, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
