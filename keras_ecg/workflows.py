"""The CLI's jobs: demo, pretrain, linear-eval / finetune, evaluate, embed."""

import os
import platform

import keras
import numpy as np

from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.callbacks import StopOnNonFiniteLoss
from keras_ecg.callbacks import resumable_fit
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.sources import load_splits
from keras_ecg.evaluation.downstream import evaluate_records
from keras_ecg.evaluation.downstream import train_downstream
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.utils import enable_determinism


def _print_header(args, what):
    print(
        f"keras-ecg {what} | backend={keras.backend.backend()} | data={args.data} | "
        f"python {platform.python_version()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs)",
        flush=True,
    )


def prepare_data(args, standardizer_path=None):
    """Loads `--data`, splits it and standardises every lead on the train split.

    With `standardizer_path`, an existing standardiser is reused (so a
    pretrained encoder sees data scaled as in pretraining) or the new one saved.
    """
    standardizer = None
    if standardizer_path and os.path.exists(standardizer_path):
        standardizer = LeadStandardizer.load(standardizer_path)
    splits = load_splits(
        args.data,
        sampling_rate=args.sampling_rate,
        label_set=args.label_set,
        num_synthetic_records=args.num_records,
        cache_dir=args.cache_dir,
        on_error="skip" if args.skip_bad_records else "raise",
        seed=args.seed,
        standardizer=standardizer,
    )
    if standardizer_path and standardizer is None:
        splits.standardizer.save(standardizer_path)
    train, val, test = splits.train, splits.val, splits.test
    print(
        f"records: {len(train)} train / {len(val)} val / {len(test)} test, "
        f"{train.num_leads} leads at {train.sampling_rate} Hz, "
        f"{train.num_classes} classes",
        flush=True,
    )
    return train, val, test


def _augmentation(name):
    from keras_ecg.layers.augmentation.presets import paper_augmentations

    return paper_augmentations(name)


def pretrain(args, train, output_dir, augmentation="rrc_to"):
    """Pretrains `args.method`; checkpoints every N steps, resumes if interrupted.

    Reproducible: runs under `keras_ecg.utils.enable_determinism(args.seed)`,
    which stays in effect for the rest of the process.
    """
    enable_determinism(args.seed)
    model = build_method(args.method, size=args.size, input_leads=train.num_leads)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.lr))
    dataset = make_method_dataset(
        args.method,
        train,
        batch_size=min(args.batch_size, len(train)),
        augmentation=_augmentation(augmentation),
        seed=args.seed,
    )
    build_on_batch(model, dataset)
    # Step checkpoints: a killed run resumes from its last step; a NaN/inf loss
    # raises NonFiniteLossError before the bad state can be checkpointed.
    history = resumable_fit(
        model,
        dataset,
        epochs=args.epochs,
        backup_dir=os.path.join(output_dir, "backup"),
        save_every_steps=getattr(args, "checkpoint_every_steps", 50),
        callbacks=[StopOnNonFiniteLoss(method=args.method)],
        verbose=2,
        shuffle=False,
    )
    path = os.path.join(output_dir, "pretrained.keras")
    model.save(path)
    StepCheckpoint(os.path.join(output_dir, "backup")).delete()
    print(f"pretrained model saved to {path}", flush=True)
    return model, history


def build_on_batch(model, dataset):
    """Builds `model` on one batch of `dataset` (needed by `BackupAndRestore`)."""
    batch = next(iter(dataset))
    x = batch[0] if isinstance(batch, tuple) else batch
    x = keras.tree.map_structure(
        lambda t: keras.ops.convert_to_tensor(np.asarray(t)), x
    )
    model(x, training=False)


def _linear_eval(backbone, train, val, test, args, mode="linear"):
    result = train_downstream(
        backbone,
        train,
        val,
        mode=mode,
        epochs=args.eval_epochs,
        batch_size=min(args.eval_batch_size, len(train)),
        learning_rate=args.eval_lr,
        discriminative_lr=getattr(args, "discriminative_lr", None),
        seed=args.seed,
        verbose=2,
    )
    row = {
        "best_epoch": result["best_epoch"] + 1,  # 1-based, as Keras prints
        "val_macro_auc": result["best_val_auc"],
    }
    if len(test):
        row["test_macro_auc"] = evaluate_records(result["model"], test)["macro_auc"]
    return result["model"], row


def _table(rows, columns):
    header = "| " + " | ".join(columns) + " |"
    lines = [header, "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [
            f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(args):
    _print_header(args, "demo")
    if args.data == "synthetic":
        print(
            "Data: the embedded SYNTHETIC 12-lead ECG generator (not clinical data).",
            flush=True,
        )
    train, val, test = prepare_data(args)
    print(
        f"\n[1/3] pretraining {args.method} ({args.size} encoder), "
        f"{args.epochs} epochs",
        flush=True,
    )
    model, history = pretrain(args, train, args.output)
    rows = []
    print("\n[2/3] linear evaluation of the pretrained encoder", flush=True)
    _, row = _linear_eval(model.backbone, train, val, test, args)
    rows.append({"encoder": f"{args.method} pretrained", **row})
    print("\n[3/3] linear evaluation of a randomly initialised encoder", flush=True)
    keras.utils.set_random_seed(args.seed + 1)
    random_model = build_method(
        args.method, size=args.size, input_leads=train.num_leads
    )
    _, row = _linear_eval(random_model.backbone, train, val, test, args)
    rows.append({"encoder": "random init", **row})
    table = _table(rows, ["encoder", "val_macro_auc", "test_macro_auc", "best_epoch"])
    print("\nLinear evaluation, macro ROC AUC (windows averaged per record):")
    print(table)
    return {
        "method": args.method,
        "backend": keras.backend.backend(),
        "data": args.data,
        "pretrain_loss": [float(v) for v in history["loss"]],
        "results": rows,
        "table": table,
    }


def run_pretrain(args):
    _print_header(args, "pretrain")
    train, _, _ = prepare_data(
        args, standardizer_path=os.path.join(args.output, "standardizer.json")
    )
    _, history = pretrain(args, train, args.output, augmentation=args.augmentation)
    return {
        "method": args.method,
        "backend": keras.backend.backend(),
        "loss": [float(v) for v in history["loss"]],
    }


def _load_backbone(args, num_leads):
    if args.random_init or not args.checkpoint:
        if not args.random_init:
            raise ValueError("Pass --checkpoint PATH or --random-init.")
        return build_method(args.method, size=args.size, input_leads=num_leads).backbone
    import keras_ecg.models  # noqa: F401  (registers the serializable classes)

    return keras.saving.load_model(args.checkpoint).backbone


def run_downstream(args):
    mode = "linear" if args.command == "linear-eval" else "finetune"
    _print_header(args, args.command)
    standardizer = None
    if args.checkpoint:
        standardizer = os.path.join(
            os.path.dirname(args.checkpoint), "standardizer.json"
        )
    train, val, test = prepare_data(args, standardizer_path=standardizer)
    backbone = _load_backbone(args, train.num_leads)
    model, row = _linear_eval(backbone, train, val, test, args, mode=mode)
    path = os.path.join(args.output, f"{mode}_classifier.keras")
    model.save(path)
    print(_table([row], list(row)))
    return {"mode": mode, "checkpoint": args.checkpoint, **row, "model": path}


def run_evaluate(args):
    _print_header(args, "evaluate")
    import keras_ecg.models  # noqa: F401

    splits = dict(zip(("train", "val", "test"), prepare_data(args)))
    model = keras.saving.load_model(args.model)
    result = evaluate_records(model, splits[args.split])
    print(f"{args.split} macro AUC: {result['macro_auc']:.4f}")
    return {"split": args.split, "macro_auc": result["macro_auc"]}


def run_embed(args):
    _print_header(args, "embed")
    import keras_ecg.models  # noqa: F401
    from keras_ecg.evaluation.embeddings import export_embeddings
    from keras_ecg.evaluation.embeddings import plot_embeddings_2d
    from keras_ecg.evaluation.linear_probe import extract_embeddings

    standardizer = os.path.join(os.path.dirname(args.checkpoint), "standardizer.json")
    splits = dict(
        zip(
            ("train", "val", "test"), prepare_data(args, standardizer_path=standardizer)
        )
    )
    data = splits[args.split]
    backbone = keras.saving.load_model(args.checkpoint).backbone
    embeddings = extract_embeddings(backbone, data, window_length=250, stride=125)
    paths = export_embeddings(
        embeddings,
        data.record_ids,
        data.labels,
        data.classes,
        os.path.join(args.output, "embeddings"),
    )
    result = {"embeddings": [str(p) for p in paths], "shape": list(embeddings.shape)}
    print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} -> {paths}")
    if args.plot:
        png = os.path.join(args.output, f"embeddings_{args.plot}.png")
        plot_embeddings_2d(
            embeddings, data.labels, data.classes, png, method=args.plot, seed=args.seed
        )
        result["plot"] = png
        print(f"2-D {args.plot} plot -> {png}")
    return result


def run_tune(args):
    _print_header(args, "tune")
    from keras_ecg.tuning import run_search

    train, val, _ = prepare_data(args)
    result = run_search(
        args.method,
        train,
        val,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        directory=args.output,
        seed=args.seed,
        size=args.size,
        batch_size=args.batch_size,
        verbose=1,
    )
    print(
        f"best probe AUC {result['best_score']:.4f} with "
        f"{result['best_hyperparameters']}; model: {result['best_model_path']}"
    )
    return result
