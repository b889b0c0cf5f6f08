"""
Title: Finetuning a self-supervised ECG encoder vs training from scratch
Author: keras-ecg developers
Description: Pretrain an encoder without labels, finetune it end to end
    (LP-FT: a linear head first, then every weight), and compare with the same
    classifier trained from scratch.

Run on the embedded SYNTHETIC data (not clinical) or on PTB-XL:

    python examples/finetune.py --method byol
    python examples/finetune.py --data ../shared/data/ptbxl
    python examples/finetune.py --method simclr --encoder s4
"""

import argparse
import time
import warnings

import keras

from keras_ecg.data.sources import load_splits
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
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
parser.add_argument(
    "--eval-epochs", type=int, default=None, help="maximum downstream epochs"
)
parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
parser.add_argument(
    "--discriminative-lr",
    type=float,
    default=None,
    help="encoder learning rate = this factor * --lr (default: one rate)",
)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
keras.utils.set_random_seed(args.seed)
# Small splits lack positives of rare classes; those are left out of the AUC.
warnings.filterwarnings("ignore", message=".*excluded from the macro AUC")
start = time.time()

# ## Data
# PTB-XL folds 1-8 / 9 / 10, leads standardised on the training records. The
# PTB-XL subset shipped with the project has no fold 10: validation stands in.

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

# ## Self-supervised pretraining

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

# ## Finetuning vs from scratch
# Both train every weight with the same warm-up + cosine schedule and early
# stopping on the validation macro AUC. Finetuning first fits a linear head on
# the frozen pretrained encoder (LP-FT), so that a random head's first, large
# gradients do not overwrite the pretrained features.


def downstream(backbone, mode, discriminative_lr=None):
    result = train_downstream(
        backbone,
        train,
        val,
        mode=mode,
        epochs=args.eval_epochs,
        batch_size=min(128, len(train)),
        learning_rate=args.lr,
        discriminative_lr=discriminative_lr,
        seed=args.seed,
        verbose=0,
        standardizer=standardizer,
    )
    test_auc = evaluate_records(result["model"], test, standardizer=standardizer)[
        "macro_auc"
    ]
    return result["best_val_auc"], test_auc, result["best_epoch"]


rows = [
    (
        f"{args.method} finetuned",
        *downstream(pretrained.backbone, "finetune", args.discriminative_lr),
    )
]
keras.utils.set_random_seed(args.seed + 1)
scratch = build_method(
    args.method, size=args.size, input_leads=train.num_leads, encoder=args.encoder
)
rows.append(("from scratch", *downstream(scratch.backbone, "scratch")))

# ## Results

print("\n| encoder | val macro AUC | test macro AUC | best epoch |\n|---|---|---|---|")
for name, val_auc, test_auc, epoch in rows:
    print(f"| {name} | {val_auc:.4f} | {test_auc:.4f} | {epoch} |")
print(f"\ndone in {time.time() - start:.0f} s")
