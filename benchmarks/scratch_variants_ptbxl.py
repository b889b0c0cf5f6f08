"""Encoder variants trained from scratch on PTB-XL: ablations of a configuration.

Each variant is a JSON object of constructor arguments that replace those of
the `--size` configuration of a pooled encoder (`build_encoder(size, 12,
encoder, **variant)`; `{}` is the configuration itself); every variant is
trained from scratch with the default protocol of `train_downstream` (the
`scratch` rows of `reproduce_ptbxl.py`) for each seed. Test macro ROC AUC over
the classes with a positive training record, sliding windows (2.5 s, stride
1.25 s) averaged per record; mean ± sample std over `--seeds`.

Usage (the table goes into benchmarks/README.md with --update-readme):

    KERAS_BACKEND=tensorflow python benchmarks/scratch_variants_ptbxl.py \
        --encoder s4 --variants '{}' '{"dropout": 0.2}' --update-readme
"""

import json
import sys
import time

import ptbxl_protocol as common

BEGIN = "<!-- scratch_variants:begin -->"
END = "<!-- scratch_variants:end -->"


def parse_variant(text):
    """`'{"dropout": 0.2}'` -> `{"dropout": 0.2}`.

    Raises:
        ValueError: not a JSON object.
    """
    try:
        variant = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"variant {text!r} is not JSON: {error}") from None
    if not isinstance(variant, dict):
        raise ValueError(f"variant {text!r}: expected a JSON object")
    return variant


def variant_label(encoder, variant):
    if not variant:
        return f"{encoder} (the configuration)"
    settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(variant.items()))
    return f"{encoder} ({settings})"


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/scratch_variants")
    parser.add_argument("--encoder", default="s4", choices=("s4", "xresnet1d"))
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["{}"],
        help="JSON objects of constructor arguments replacing the size's",
    )
    parser.add_argument("--eval-batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(text) for text in args.variants]
    except ValueError as error:
        parser.error(str(error))

    import keras

    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.models.method_factory import build_encoder

    common.quiet_warnings()
    started = time.time()
    train, val, test, _, _ = common.load_fold_splits(args)
    split_text = common.describe_splits(args, train, val, test)
    print(split_text, flush=True)
    trained = trained_class_mask(train)

    rows = []
    for seed in range(args.seeds):
        for variant in variants:
            label = variant_label(args.encoder, variant)
            keras.utils.set_random_seed(seed + 1)
            backbone = build_encoder(args.size, 12, args.encoder, **variant)
            scores = common.downstream_scores(
                args, backbone, "scratch", seed, train, val, test, trained
            )
            rows.append(
                {
                    "seed": seed,
                    "variant": variant,
                    "label": label,
                    "parameters": int(backbone.count_params()),
                    **scores,
                }
            )
            print(
                f"seed {seed} | {label} | scratch: val {scores['val_macro_auc']:.4f} "
                f"test {scores['test_macro_auc']:.4f} ({scores['seconds']:.0f} s)",
                flush=True,
            )

    lines = [
        "| encoder | parameters | val macro AUC | test macro AUC | epochs run | s |",
        "|---|---|---|---|---|---|",
    ]
    for variant in variants:
        group = [r for r in rows if r["variant"] == variant]
        epochs = [r["epochs_run"] for r in group]
        lines.append(
            f"| {group[0]['label']} | {group[0]['parameters']:,} | "
            f"{common.mean_std([r['val_macro_auc'] for r in group])} | "
            f"{common.mean_std([r['test_macro_auc'] for r in group])} | "
            f"{min(epochs)}-{max(epochs)} | "
            f"{sum(r['seconds'] for r in group) / len(group):.0f} |"
        )
    common.report(
        args,
        __file__,
        started,
        f"{split_text}; trained from scratch with the `train_downstream` defaults; ",
        lines,
        rows,
        BEGIN,
        END,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
