"""
Title: Which leads and which part of the beat drove a prediction
Author: keras-ecg developers
Description: Train a small classifier, predict on new records with
    `keras-ecg predict --explain`, and look at the integrated-gradients
    attributions of its most probable classes on ECG paper.

It runs on the embedded SYNTHETIC data (not clinical), whose classes are
defined by known ECG criteria: an anteroseptal infarct (ASMI) has QS
complexes in V1-V2 and inverted T waves in V1-V3, an inferior one (IMI) Q
waves in II, III and aVF. The README's picture is made by

    python examples/explain_prediction.py --output docs/images/explained_prediction.png
"""

import argparse
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from keras_ecg import cli
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.models import ECGPreprocessor
from keras_ecg.models.method_factory import build_encoder

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--num-records", type=int, default=1500)
parser.add_argument(
    "--classes", nargs="+", default=["NORM", "IMI", "ASMI", "CLBBB", "LVH"]
)
parser.add_argument("--size", default="small", choices=("small", "tiny"))
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument(
    "--show", default="ASMI", help="explain a test record of this class"
)
parser.add_argument("--top-k", type=int, default=2, help="classes per record")
parser.add_argument("--num-test-records", type=int, default=12)
parser.add_argument(
    "--output", default=None, help="copy the chosen record's PNG here (palette PNG)"
)
parser.add_argument("--workdir", default=None, help="default: a temporary folder")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
keras.utils.set_random_seed(args.seed)
start = time.time()
workdir = args.workdir or tempfile.mkdtemp(prefix="explain_")
os.makedirs(workdir, exist_ok=True)

# ## Data: folds 1-8 train, 9 validation, 10 test

data = make_synthetic_ecg(args.num_records, classes=args.classes, seed=args.seed)
train = data.subset(np.flatnonzero(data.folds <= 8))
val = data.subset(np.flatnonzero(data.folds == 9))
test = data.subset(np.flatnonzero(data.folds == 10))
preprocessor = ECGPreprocessor.from_data(train)

# ## A classifier trained from scratch (it carries its preprocessing)

result = train_downstream(
    build_encoder(args.size),
    train,
    val,
    mode="scratch",
    epochs=args.epochs,
    preprocessor=preprocessor,
    standardizer=preprocessor,
    seed=args.seed,
    verbose=2,
)
model = result["model"]
auc = evaluate_records(model, test, standardizer=preprocessor)["macro_auc"]
print(f"test macro AUC {auc:.3f} ({len(test)} records)")
model_path = os.path.join(workdir, "classifier.keras")
model.save(model_path)

# ## New records, as WFDB files: the test records whose only label is --show
# first, so that the chosen one is among them

import wfdb  # noqa: E402

records = os.path.join(workdir, "records")
os.makedirs(records, exist_ok=True)
column = args.classes.index(args.show)
only = np.flatnonzero((test.labels[:, column] == 1) & (test.labels.sum(axis=1) == 1))
chosen = list(only[: args.num_test_records])
for i in chosen:
    wfdb.wrsamp(
        f"r{i:04d}",
        fs=test.sampling_rate,
        units=["mV"] * 12,
        sig_name=list(test.lead_names),
        p_signal=np.asarray(test.signals[i], dtype=np.float64),
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=records,
    )

# ## Predict and explain

output = os.path.join(workdir, "predictions.csv")
command = ["predict", "--model", model_path, "--data", records]
command += ["--output", output, "--explain", str(args.top_k), "--overwrite"]
print("keras-ecg " + " ".join(command), flush=True)
assert cli.main(command) == 0
import pandas as pd  # noqa: E402

frame = pd.read_csv(output)
# The record the classifier is surest of, among those it ranks --show first.
ranked = frame[frame["explain_1_class"] == args.show]
if ranked.empty:
    raise SystemExit(f"no test record has {args.show} as its most probable class")
row = ranked.loc[ranked[args.show].idxmax()]
leads = list(test.lead_names)
shares = row[[f"explain_1_{lead}" for lead in leads]].to_numpy(float)
print(
    f"{row['record_id']}: p({args.show}) = {row[args.show]:.2f}; lead shares "
    + ", ".join(f"{lead} {s:.0%}" for lead, s in zip(leads, shares, strict=True))
)
print(f"plot: {row['explain_plot']}")
if args.output:
    from PIL import Image

    # A 256-colour palette: the pink grid, the trace and the shading fit in
    # it, at a fraction of the RGBA file size.
    image = Image.open(row["explain_plot"]).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        args.output, optimize=True
    )
    print(f"-> {args.output} ({os.path.getsize(args.output) / 1024:.0f} KB)")
if not args.workdir:
    shutil.rmtree(workdir)
print(f"done in {time.time() - start:.0f} s")
