"""`keras-ecg` command line: pretrain, evaluate and embed ECG encoders.

The Keras backend is chosen with `--backend` (or `KERAS_BACKEND`) before Keras
is imported, so nothing at module level here imports Keras.
"""

import argparse
import json
import os
import sys
import time


def _add_common(parser):
    parser.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (embedded, no download), a PTB-XL folder, or a WFDB folder",
    )
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=None,
        help="Keras backend (default: $KERAS_BACKEND or tensorflow)",
    )
    parser.add_argument("--sampling-rate", type=int, default=100)
    parser.add_argument("--label-set", default="all")
    parser.add_argument(
        "--num-records", type=int, default=1200, help="records of the synthetic dataset"
    )
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--skip-bad-records", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/latest")
    parser.add_argument(
        "--size",
        default="small",
        choices=("paper", "small", "tiny"),
        help="encoder size: the paper's architecture, CPU-sized, or tiny (tests)",
    )
    parser.add_argument("--batch-size", type=int, default=128)


def _add_downstream(parser):
    parser.add_argument("--eval-epochs", type=int, default=10)
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument(
        "--eval-lr",
        type=float,
        default=None,
        help="downstream learning rate (default: 1e-2 linear, 1e-3 finetune)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ecg",
        description="Self-supervised representation learning on 12-lead ECG.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="pretrain + linear-evaluate on embedded synthetic data vs random init",
    )
    _add_common(demo)
    _add_downstream(demo)
    demo.add_argument(
        "--method", default="simclr", choices=("simclr", "byol", "swav", "cpc")
    )
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--lr", type=float, default=1e-3)
    demo.set_defaults(output="runs/demo", eval_epochs=15, batch_size=64)

    pretrain = sub.add_parser("pretrain", help="self-supervised pretraining")
    _add_common(pretrain)
    pretrain.add_argument(
        "--method", required=True, choices=("simclr", "byol", "swav", "cpc")
    )
    pretrain.add_argument("--epochs", type=int, default=20)
    pretrain.add_argument("--lr", type=float, default=1e-3)
    pretrain.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=50,
        help="save a resumable checkpoint every N steps (0: every epoch only)",
    )
    pretrain.add_argument(
        "--augmentation",
        default="rrc_to",
        help="augmentation preset for SimCLR/BYOL/SwAV",
    )

    for name, help_text in (
        ("linear-eval", "linear evaluation of a pretrained encoder"),
        ("finetune", "finetune a pretrained encoder"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        _add_downstream(p)
        p.add_argument(
            "--checkpoint",
            default=None,
            help="pretrained model (.keras) from `pretrain`",
        )
        p.add_argument(
            "--random-init",
            action="store_true",
            help="use an untrained encoder (baseline)",
        )
        p.add_argument(
            "--method",
            default="simclr",
            choices=("simclr", "byol", "swav", "cpc"),
            help="architecture for --random-init",
        )
        if name == "finetune":
            p.add_argument(
                "--discriminative-lr",
                type=float,
                default=None,
                help="backbone lr = this factor x --eval-lr (reference code: 0.1)",
            )

    evaluate = sub.add_parser("evaluate", help="macro AUC of a saved classifier")
    _add_common(evaluate)
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--split", default="val", choices=("train", "val", "test"))

    embed = sub.add_parser("embed", help="export embeddings of a pretrained encoder")
    _add_common(embed)
    embed.add_argument("--checkpoint", required=True)
    embed.add_argument("--split", default="val", choices=("train", "val", "test"))
    embed.add_argument(
        "--plot", choices=("pca", "tsne"), default=None, help="also draw a 2-D PNG"
    )

    tune = sub.add_parser(
        "tune", help="KerasTuner search scored by a downstream probe AUC"
    )
    _add_common(tune)
    tune.add_argument(
        "--method", required=True, choices=("simclr", "byol", "swav", "cpc")
    )
    tune.add_argument(
        "--tuner", default="random", choices=("random", "bayesian", "hyperband")
    )
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--epochs", type=int, default=10, help="pretraining epochs")
    tune.set_defaults(output="runs/tune", batch_size=64)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.makedirs(args.output, exist_ok=True)
    from keras_ecg import workflows

    handler = {
        "demo": workflows.run_demo,
        "pretrain": workflows.run_pretrain,
        "linear-eval": workflows.run_downstream,
        "finetune": workflows.run_downstream,
        "evaluate": workflows.run_evaluate,
        "embed": workflows.run_embed,
        "tune": workflows.run_tune,
    }[args.command]
    from keras_ecg.callbacks import NonFiniteLossError

    start = time.time()
    try:
        results = handler(args)
    except NonFiniteLossError as error:
        # The message says where and what to try; a traceback adds nothing.
        print(f"keras-ecg {args.command}: {error}", file=sys.stderr)
        return 1
    results["seconds"] = round(time.time() - start, 1)
    path = os.path.join(args.output, f"{args.command}_results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=str)
    print(f"\nResults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
