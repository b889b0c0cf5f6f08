"""
Title: Label efficiency of self-supervised ECG pretraining
Author: keras-ecg developers
Description: Train classifiers on growing fractions of the labelled training
    records (5 % to 100 %, nested subsets), starting from a pretrained encoder
    or from scratch, and tabulate the test macro AUC per fraction.

Run on the embedded SYNTHETIC data (not clinical) or on PTB-XL:

    python examples/label_efficiency.py --method simclr
    python examples/label_efficiency.py --data ../shared/data/ptbxl
    python examples/label_efficiency.py --method cpc --encoder s4
"""

import argparse
import time
import warnings

import keras
import numpy as np

from keras_ecg.data.sources import load_splits
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.evaluation.experiments import label_fraction_subset
from keras_ecg.layers.augmentation.presets import paper_augmentations
from keras_ecg.models.method_factory import ENCODERS
from keras_ecg.models.method_factory import METHODS
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset

# ## Setup

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--data", default="synthetic", help="'synthetic' or a folder")
parser.add_argument("--method", default="simclr", choices=METHODS)
parser.add_argument(
    "--encoder",
    default=None,
    choices=ENCODERS,
    help="xresnet1d or s4 (simclr/byol/swav), lstm or s4 (cpc); default: the method's",
)
parser.add_argument("--size", default="small", choices=("paper", "small", "tiny"))
parser.add_argument("--num-records", type=int, default=600)
parser.add_argument(
    "--label-set",
    default=None,
    help="PTB-XL label set (default: superdiagnostic); synthetic data: all",
)
parser.add_argument("--epochs", type=int, default=5, help="pretraining epochs")
parser.add_argument("--eval-epochs", type=int, default=3)
parser.add_argument(
    "--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0]
)
parser.add_argument("--mode", default="finetune", choices=("finetune", "linear"))
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
keras.utils.set_random_seed(args.seed)
# Small subsets lack positives of rare classes; those are left out of the AUC.
warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")
start = time.time()

# ## Data
# The PTB-XL subset shipped with the project has no fold 10: validation stands
# in for the test split.

splits = load_splits(
    args.data,
    label_set=args.label_set
    or ("all" if args.data == "synthetic" else "superdiagnostic"),
    num_synthetic_records=args.num_records,
    seed=args.seed,
    test_falls_back_to_val=True,
    # In mV: the pipelines standardise every crop and window on the fly.
    standardize=False,
)
train, val, test, standardizer = splits[:4]
print(f"{len(train)} train / {len(val)} val / {len(test)} test records")

# ## Self-supervised pretraining on all training records (labels unused)

pretrained = build_method(
    args.method, size=args.size, input_leads=train.num_leads, encoder=args.encoder
)
pretrained.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3))
pretrained.fit(
    make_method_dataset(
        args.method,
        train,
        batch_size=min(args.batch_size, len(train)),
        augmentation=paper_augmentations("rrc_to", sampling_rate=train.sampling_rate),
        seed=args.seed,
        standardizer=standardizer,
    ),
    epochs=args.epochs,
    verbose=2,
    shuffle=False,  # the tf.data pipeline shuffles
)
probe = np.zeros((1, 250, train.num_leads), "float32")


def encoder(pretrained_weights):
    """A fresh encoder, with a copy of the pretrained weights if asked.

    Finetuning changes an encoder in place, so every run gets its own copy.
    """
    backbone = build_method(
        args.method, size=args.size, input_leads=train.num_leads, encoder=args.encoder
    ).backbone
    backbone(probe)
    if pretrained_weights:
        backbone.set_weights(pretrained.backbone.get_weights())
    return backbone


# ## Label fractions
# Subsets are drawn with one seed, whole patients at a time where the data
# has patient ids (PTB-XL), so each fraction's records contain the smaller
# fraction's (nested), as in the paper's curves.

rows = []
for fraction in args.fractions:
    subset = label_fraction_subset(train, fraction, seed=args.seed)
    row = {"fraction": fraction, "records": len(subset)}
    for name, weights in (("pretrained", True), ("scratch", False)):
        keras.utils.set_random_seed(args.seed + 1)
        result = train_downstream(
            encoder(weights),
            subset,
            val,
            mode=args.mode if weights else "scratch",
            epochs=args.eval_epochs,
            batch_size=min(128, len(subset)),
            seed=args.seed,
            verbose=0,
            standardizer=standardizer,
        )
        scored = evaluate_records(result["model"], test, standardizer=standardizer)
        row[name] = scored["macro_auc"]
    rows.append(row)
    print(row, flush=True)

# ## Results

print(
    f"\nTest macro AUC ({args.method} {args.mode} vs from scratch)\n"
    "| fraction | records | pretrained | scratch |\n|---|---|---|---|"
)
for r in rows:
    print(
        f"| {r['fraction']:g} | {r['records']} | {r['pretrained']:.4f} | "
        f"{r['scratch']:.4f} |"
    )
print(f"\ndone in {time.time() - start:.0f} s")
