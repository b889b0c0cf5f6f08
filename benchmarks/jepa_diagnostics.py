"""JEPA pretraining diagnostics on PTB-XL: collapse, what the loss learns, probes.

Pretrains JEPA (`build_method("jepa", ...)`, the CLI's optimizer and
schedules) on the training folds and, after every `--every` epochs, measures
on a fixed batch of validation records (10 s crops, fixed masks):

- the JEPA loss (no EMA step) against two baselines that need no context:
  the best constant prediction (per-feature median of the target tokens) and
  the best position-only prediction (per-position, per-feature median over
  the records). A loss that only reaches the position baseline has learnt
  where a token is, not what it holds;
- collapse, for the target and the context encoder's full-sequence tokens
  and their per-record average: the effective rank (exp of the entropy of
  the normalised singular values of the centred matrix, Roy & Vetterli
  2007), the mean per-feature standard deviation across records, and the
  share of the token variance explained by the position alone;
- at `--probe-epochs`, logistic probes (`logistic_probe`, fitted on the
  training records' 2.5 s-window embeddings averaged per record, scored on
  the validation records; the test fold is not used) of the target and the
  context encoder, pooled as the average of the patch tokens or as the
  register token.

Usage:

    KERAS_BACKEND=tensorflow python benchmarks/jepa_diagnostics.py \
        --pretrain-epochs 20 --seeds 1
"""

import json
import os
import sys
import time

import numpy as np
import ptbxl_protocol as common


def effective_rank(matrix):
    """exp(entropy) of the normalised singular values of the centred matrix."""
    matrix = np.asarray(matrix, np.float64)
    matrix = matrix - matrix.mean(0, keepdims=True)
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular.sum() <= 0:
        return 0.0
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def token_statistics(tokens):
    """Collapse measures of `(records, N, D)` tokens (see the module docstring)."""
    tokens = np.asarray(tokens, np.float64)
    records, n, d = tokens.shape
    pooled = tokens.mean(1)
    total = tokens.reshape(-1, d).var(0).sum()
    within_position = tokens.var(0).sum(-1).mean()  # over records, per position
    return {
        "token_rank": effective_rank(tokens.reshape(-1, d)),
        "pooled_rank": effective_rank(pooled),
        "pooled_std": float(pooled.std(0).mean()),
        "token_std": float(tokens.reshape(-1, d).std(0).mean()),
        "position_share": float(1.0 - within_position / max(total, 1e-12)),
    }


def masked_l1(predictions, targets, valid):
    weights = valid[..., None].astype(np.float64)
    count = weights.sum() * predictions.shape[-1]
    return float((np.abs(predictions - targets) * weights).sum() / count)


def measure(model, x, masks):
    """Loss, its context-free baselines and the collapse measures on `x`."""
    import keras

    from keras_ecg.models.encoders.ecg_transformer import gather_tokens

    context_indices, context_valid, target_indices, target_valid = masks
    context = model.encoder(
        x,
        token_indices=context_indices,
        token_valid=context_valid,
        return_tokens=True,
        training=False,
    )
    predictions = model.predictor(
        context,
        context_indices,
        target_indices,
        context_valid=context_valid,
        target_valid=target_valid,
        training=False,
    )
    target_all = model.target_encoder(x, return_tokens=True, training=False)
    online_all = model.encoder(x, return_tokens=True, training=False)
    np_ = keras.ops.convert_to_numpy
    targets = np_(gather_tokens(target_all, target_indices))
    valid = np_(target_valid).astype(bool)
    target_all, online_all = np_(target_all), np_(online_all)
    indices = np_(target_indices)
    constant = np.median(targets[valid], axis=0)
    by_position = np.median(target_all, axis=0)  # (N, D)
    row = {
        "loss": masked_l1(np_(predictions), targets, valid),
        "constant_baseline": masked_l1(
            np.broadcast_to(constant, targets.shape), targets, valid
        ),
        "position_baseline": masked_l1(by_position[indices], targets, valid),
    }
    for name, tokens in (("target", target_all), ("context", online_all)):
        for key, value in token_statistics(tokens).items():
            row[f"{name}_{key}"] = value
    return row


def relative_change(variables, initial):
    """`||w - w0|| / ||w0||` over all of `variables` (one number)."""
    import keras

    now = [keras.ops.convert_to_numpy(v) for v in variables]
    moved = sum(float(((a - b) ** 2).sum()) for a, b in zip(now, initial))
    size = sum(float((b**2).sum()) for b in initial)
    return float(np.sqrt(moved / max(size, 1e-30)))


def adam_scale(optimizer, variables):
    """Median over `variables` of Adam's `sqrt(v_hat)`, the gradient scale its
    step divides by (compared with its `epsilon`), and the share below eps."""
    import keras

    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    if steps == 0:
        return None, None
    keys = {
        optimizer._var_key(v): i for i, v in enumerate(optimizer._trainable_variables)
    }
    scales = []
    for variable in variables:
        index = keys.get(optimizer._var_key(variable))
        if index is None:
            continue
        velocity = keras.ops.convert_to_numpy(optimizer._velocities[index])
        correction = 1.0 - float(optimizer.beta_2) ** steps
        scales.append(np.sqrt(velocity.ravel() / correction))
    scales = np.concatenate(scales)
    return float(np.median(scales)), float((scales < optimizer.epsilon).mean())


def pooled_copy(encoder, pooling):
    """A copy of a built ECGTransformer with another downstream pooling."""
    config = dict(encoder.get_config(), pooling=pooling)
    clone = encoder.__class__.from_config(config)
    clone.build((None, None, encoder.input_leads))
    clone.set_weights(encoder.get_weights())
    return clone


def probes(model, train, val):
    """Logistic-probe val macro AUC of target / context x avg / register."""
    from keras_ecg.evaluation.downstream import trained_class_mask
    from keras_ecg.evaluation.linear_probe import extract_embeddings
    from keras_ecg.evaluation.linear_probe import logistic_probe

    scored = trained_class_mask(train)
    results = {}
    for name, encoder in (("target", model.target_encoder), ("context", model.encoder)):
        poolings = ["avg"]
        if getattr(encoder, "num_registers", 0):
            poolings.append("register")
        for pooling in poolings:
            backbone = pooled_copy(encoder, pooling)
            train_emb = extract_embeddings(backbone, train)
            val_emb = extract_embeddings(backbone, val)
            result = logistic_probe(
                train_emb,
                train.labels[:, scored],
                val_emb,
                val.labels[:, scored],
                max_iter=300,
            )
            results[f"{name}_{pooling}"] = result["macro_auc"]
    return results


def parse_kwargs(items):
    """`["momentum=0.99", "seed=3"]` -> `{"momentum": 0.99, "seed": 3}`."""
    kwargs = {}
    for item in items or []:
        key, _, value = item.partition("=")
        kwargs[key] = json.loads(value)
    return kwargs


def run_seed(args, seed, train, val, history):
    """Pretrains one seed, measuring as the module docstring says."""
    import keras

    from keras_ecg.evaluation.experiments import label_fraction_subset
    from keras_ecg.models.jepa_masks import keep_mask_to_indices
    from keras_ecg.models.jepa_masks import sample_keep_count
    from keras_ecg.models.jepa_masks import sample_keep_masks
    from keras_ecg.models.method_factory import build_method
    from keras_ecg.models.method_factory import make_method_dataset
    from keras_ecg.models.method_factory import pretraining_optimizer
    from keras_ecg.utils import enable_determinism

    started = time.time()
    probe_epochs = args.probe_epochs
    if probe_epochs is None:
        probe_epochs = [0, args.pretrain_epochs]
    method, encoder_name = common.parse_spec(args.method)
    enable_determinism(seed)
    pretrain_data = train
    if args.data_fraction < 1.0:
        pretrain_data = label_fraction_subset(train, args.data_fraction, seed)
    dataset = make_method_dataset(
        method, pretrain_data, batch_size=args.batch_size, seed=seed
    )
    steps = int(dataset.cardinality())
    # The EMA schedule spans the whole run although fit runs in chunks.
    settings = dict(
        {"total_steps": args.pretrain_epochs * steps}, **parse_kwargs(args.jepa_kwargs)
    )
    model = build_method(method, size=args.size, encoder=encoder_name, **settings)
    optimizer = pretraining_optimizer(method, args.lr, args.pretrain_epochs * steps)
    for key, value in parse_kwargs(args.optimizer_kwargs).items():
        setattr(optimizer, key, value)
    model.compile(optimizer=optimizer)
    crop = int(10.0 * val.sampling_rate)
    x_val = np.stack(
        [np.asarray(s[:crop], np.float32) for s in val.signals[: args.val_records]]
    )
    model(x_val[:2], training=False)  # builds; the target copies the encoder
    num_tokens = model.encoder.num_tokens(crop)
    generator = keras.random.SeedGenerator(1234)
    num_keep = sample_keep_count(
        num_tokens, model.min_keep_ratio, model.max_keep_ratio, generator
    )
    keep = sample_keep_masks(
        len(x_val), num_tokens, num_keep, model.min_block_size, generator
    )
    context_slots, target_slots = model.slot_counts(num_tokens)
    masks = keep_mask_to_indices(keep, context_slots) + keep_mask_to_indices(
        keep, target_slots, select_kept=False
    )

    def numpy_weights(layer):
        return [keras.ops.convert_to_numpy(v).copy() for v in layer.weights]

    # The encoder's are aligned with the target's (`JEPA.online_weights`).
    initial = {
        "encoder": numpy_weights(model.encoder),
        "predictor": numpy_weights(model.predictor),
    }

    def record(epoch, loss):
        row = {"seed": seed, "epoch": epoch, "steps": epoch * steps}
        row["train_loss"] = loss
        row.update(measure(model, x_val, masks))
        parts = (
            ("encoder", model.encoder, True),
            ("target", model.target_encoder, False),
            ("predictor", model.predictor, True),
        )
        for name, part, trained in parts:
            start = initial["predictor" if name == "predictor" else "encoder"]
            row[f"{name}_change"] = relative_change(part.weights, start)
            if trained:
                scale, below = adam_scale(model.optimizer, part.trainable_weights)
                row[f"{name}_adam_scale"] = scale
                row[f"{name}_below_eps"] = below
        if epoch in probe_epochs:
            row.update(probes(model, train, val))
        history.append(row)
        print(json.dumps(row), flush=True)
        with open(os.path.join(args.output, "history.json"), "w") as f:
            json.dump(history, f, indent=1)

    record(0, None)
    epoch = 0
    while epoch < args.pretrain_epochs:
        chunk = min(args.every, args.pretrain_epochs - epoch)
        later = [e for e in probe_epochs if e > epoch]
        if later:
            chunk = min(chunk, later[0] - epoch)
        fit = model.fit(
            dataset, initial_epoch=epoch, epochs=epoch + chunk, verbose=0, shuffle=False
        )
        epoch += chunk
        record(epoch, float(fit.history["loss"][-1]))
    print(
        f"seed {seed}: {args.pretrain_epochs} epochs x {steps} steps on "
        f"{len(pretrain_data)} records; {(time.time() - started) / 60:.1f} min",
        flush=True,
    )


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0], "runs/jepa_diagnostics")
    parser.add_argument("--method", default="jepa", help="jepa or jepa:ENCODER")
    parser.add_argument("--every", type=int, default=5, help="epochs between measures")
    parser.add_argument(
        "--probe-epochs",
        type=int,
        nargs="+",
        default=None,
        help="epochs after which to probe (0: the initialisation; default: 0 "
        "and the last)",
    )
    parser.add_argument("--data-fraction", type=float, default=1.0)
    parser.add_argument("--val-records", type=int, default=128)
    parser.add_argument(
        "--jepa-kwargs",
        nargs="*",
        default=[],
        help="JEPA constructor overrides as key=JSON (momentum=0.99)",
    )
    parser.add_argument(
        "--optimizer-kwargs",
        nargs="*",
        default=[],
        help="optimizer attributes set before training, key=JSON (epsilon=1e-8)",
    )
    args = parser.parse_args(argv)

    common.quiet_warnings()
    train, val, test, _, _ = common.load_fold_splits(args)
    print(common.describe_splits(args, train, val, test), flush=True)
    print(common.command_line(os.path.basename(__file__), args), flush=True)
    os.makedirs(args.output, exist_ok=True)
    history = []
    for seed in range(args.seeds):
        run_seed(args, seed, train, val, history)
    return 0


if __name__ == "__main__":
    sys.exit(main())
