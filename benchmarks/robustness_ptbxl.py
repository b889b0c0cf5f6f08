"""Robustness to physiological noise on the PTB-XL subset.

The paper's robustness experiment on a CPU budget: classifiers trained on
clean records (a linear probe and a finetuned classifier on a self-supervised
encoder, and the same architecture trained from scratch, each with the
default protocol of `train_downstream`) are tested on the test fold corrupted
by the physiological noise stack of the reference evaluation (baseline
wander, powerline, electrode motion, baseline shift) at levels 1-6, added in
mV before the training standardisation. Test macro ROC AUC over the classes
with a positive training record, sliding windows averaged per record; mean ±
sample std over `--seeds` (seed s seeds pretraining, training and the noise).

Usage (with --update-readme the table goes into benchmarks/README.md between
the robustness markers):

    KERAS_BACKEND=tensorflow python benchmarks/robustness_ptbxl.py \
        --method cpc --update-readme
"""

import sys
import time

import ptbxl_protocol as common

BEGIN = "<!-- robustness:begin -->"
END = "<!-- robustness:end -->"
PROTOCOLS = ("linear", "finetune", "scratch")


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/robustness_ptbxl")
    parser.add_argument("--method", default="cpc")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = parser.parse_args(argv)

    from keras_ecg.evaluation.downstream import train_downstream
    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.evaluation.experiments import robustness_table
    from keras_ecg.utils import enable_determinism

    common.quiet_warnings()
    started = time.time()
    train, val, test, standardizer, raw_test = common.load_fold_splits(args)
    split_text = common.describe_splits(args, train, val, test)
    print(split_text, flush=True)
    trained = trained_class_mask(train)

    scores = {}  # (protocol, level) -> [auc per seed]
    for seed in range(args.seeds):
        path, _, _ = common.pretrain(args, args.method, seed, train)
        for protocol in PROTOCOLS:
            enable_determinism(seed)
            backbone = common.protocol_backbone(
                protocol, args.method, args.size, seed, path
            )
            model = train_downstream(
                backbone,
                train,
                val,
                mode=protocol,
                seed=seed,
                verbose=0,
                epochs=args.eval_epochs,
            )["model"]
            rows = robustness_table(
                model,
                raw_test,
                standardizer,
                levels=args.levels,
                seed=seed,
                trained_classes=trained,
            )
            for r in rows:
                scores.setdefault((protocol, r["noise_level"]), []).append(
                    r["macro_auc"]
                )
            print(seed, protocol, [round(r["macro_auc"], 4) for r in rows], flush=True)

    lines = [
        "| noise level | pretrained, linear | pretrained, finetune | from scratch |",
        "|---|---|---|---|",
    ]
    for level in [0] + list(args.levels):
        cells = " | ".join(common.mean_std(scores[(p, level)]) for p in PROTOCOLS)
        lines.append(f"| {level if level else '0 (clean)'} | {cells} |")
    common.report(
        args,
        __file__,
        started,
        f"{args.method} pretrained {args.pretrain_epochs} epochs; {split_text}; "
        "classifiers trained on clean records with the `train_downstream` "
        "defaults; ",
        lines,
        [{"protocol": p, "level": lvl, "aucs": v} for (p, lvl), v in scores.items()],
        BEGIN,
        END,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
