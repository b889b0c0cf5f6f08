"""Input-pipeline throughput vs. one SimCLR training step, on real PTB-XL.

Measures how many samples/s `keras_ecg.data.make_pretraining_dataset` produces
when making TWO augmented 250-sample views of 12-lead PTB-XL 100 Hz records
(the paper's "rrc_to" augmentation: RandomResizedCrop + TimeOut), then times a
SimCLR training step on the same batch, and says whether the pipeline keeps
ahead of training. Both run on this machine's CPUs one after the other; during
real training they share the cores, so the margin printed is an upper bound.

Usage:
    KERAS_BACKEND=jax python benchmarks/input_pipeline.py --batch-size 256 \
        --steps 20 --train-steps 2 --size paper
"""

import argparse
import os
import pathlib
import platform
import sys
import time

from machine import cpu_name
from machine import usable_cores

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT / ".." / "shared" / "data" / "ptbxl"


def load_data(path):
    import warnings

    from keras_ecg.data.ptbxl import load_ptbxl

    with warnings.catch_warnings():
        # The shared copy is a subset: the "records not on disk" notice is expected.
        warnings.simplefilter("ignore")
        return load_ptbxl(path, sampling_rate=100, drop_unlabelled=False)


def make_augmentation(name, seed):
    if name == "none":
        return None
    from keras_ecg.layers.augmentation.presets import paper_augmentations

    return paper_augmentations(name, sampling_rate=100, seed=seed)


def time_pipeline(data, batch_size, steps, augmentation, warmup=3):
    """Returns (seconds per batch, first batch) of a repeating 2-view pipeline."""
    from keras_ecg.data.pipelines import make_pretraining_dataset

    ds = make_pretraining_dataset(
        data,
        crop_length=250,
        num_views=2,
        augmentation=augmentation,
        batch_size=batch_size,
        repeat=True,
    )
    iterator = iter(ds)
    for _ in range(warmup):
        first = next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
    seconds = (time.perf_counter() - start) / steps
    del batch
    return seconds, first


def time_training_step(first_batch, size, steps):
    """Seconds per SimCLR (or a plain conv model's) training step on one batch."""
    import keras
    import numpy as np
    import tensorflow as tf

    (views,) = first_batch
    views = tuple(np.asarray(v) for v in views)
    try:
        from keras_ecg.models.method_factory import build_method

        model = build_method("simclr", size=size)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        what = f"SimCLR ({size} XResNet1D encoder)"
        dataset = tf.data.Dataset.from_tensors((views,))
    except ImportError:
        # Stand-in: an xresnet-like conv stack, forward + backward on both views.
        inputs = keras.Input(views[0].shape[1:])
        x = inputs
        for filters in (32, 64, 128, 256):
            x = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
            x = keras.layers.Conv1D(filters, 5, strides=2, padding="same")(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(inputs, keras.layers.Dense(128)(x))
        model.compile(optimizer="adam", loss="mse")
        what = "plain conv model (keras_ecg.models.SimCLR missing)"
        stacked = np.concatenate(views)
        dataset = tf.data.Dataset.from_tensors(
            (stacked, np.zeros((len(stacked), 128), "float32"))
        )
    model.fit(dataset.repeat(1), epochs=1, verbose=0, shuffle=False)  # trace / compile
    start = time.perf_counter()
    model.fit(dataset.repeat(steps), epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps, what


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="PTB-XL folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed pipeline batches")
    parser.add_argument(
        "--train-steps", type=int, default=2, help="timed training steps (0: skip)"
    )
    parser.add_argument(
        "--size",
        default="paper",
        choices=("paper", "small", "tiny"),
        help="SimCLR encoder size for the training-step comparison",
    )
    parser.add_argument(
        "--augmentation",
        default="rrc_to",
        help="paper augmentation setting (keras_ecg presets) or 'none'",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    print(
        f"machine: {cpu_name()}, {usable_cores()} usable cores "
        f"({os.cpu_count()} logical), {platform.system()} {platform.machine()}"
    )
    print(f"backend: {keras.backend.backend()} (keras {keras.__version__})")

    start = time.perf_counter()
    data = load_data(args.data)
    lengths = {len(s) for s in data.signals}
    print(
        f"data: {len(data)} PTB-XL records at {data.sampling_rate} Hz from "
        f"{os.path.normpath(args.data)}, lengths {sorted(lengths)}, "
        f"{data.num_leads} leads (loaded in {time.perf_counter() - start:.1f} s)"
    )
    print(f"batch: {args.batch_size} records -> 2 views of (250, 12) each")

    results = {}
    try:
        augmentation = make_augmentation(args.augmentation, args.seed)
        label = f"2 views, augmentation {args.augmentation!r}"
    except ImportError:
        augmentation = None
        label = "2 views, NO augmentation (placeholder: presets module missing)"
    settings = [("2 views, crops only (no augmentation)", None)]
    if augmentation is not None:
        settings.append((label, augmentation))
    elif args.augmentation != "none":
        settings = [(label, None)]
    for name, aug in settings:
        seconds, first = time_pipeline(data, args.batch_size, args.steps, aug)
        results[name] = seconds
        print(
            f"pipeline [{name}]: {args.batch_size / seconds:9.0f} samples/s, "
            f"{1 / seconds:7.2f} steps/s",
            flush=True,
        )
    pipeline_seconds = seconds

    if args.train_steps > 0:
        train_seconds, what = time_training_step(first, args.size, args.train_steps)
        print(
            f"training [{what}]: {args.batch_size / train_seconds:9.0f} samples/s, "
            f"{1 / train_seconds:7.2f} steps/s"
        )
        ratio = train_seconds / pipeline_seconds
        verdict = "YES" if ratio > 1 else "NO"
        print(
            f"pipeline keeps ahead of training: {verdict} (the pipeline makes a "
            f"batch {ratio:.1f}x faster than a training step consumes one; "
            "measured sequentially on the same CPUs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
