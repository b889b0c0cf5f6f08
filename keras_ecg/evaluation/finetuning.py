"""Discriminative learning rates for finetuning a pretrained backbone.

Finetuning with one learning rate either barely moves the new head or wrecks
the pretrained features. The reference code trains the backbone with a smaller
learning rate than the head (`--discriminative_lr_factor`); this module builds
that optimizer with Keras' public `keras.optimizers.MultiOptimizer`, so it
works under every backend and is saved with the model.
"""

import re

import keras

OPTIMIZERS = ("adamw", "adam", "sgd")


def _make_optimizer(kind, learning_rate, weight_decay, name):
    if callable(kind):
        return kind(learning_rate)
    if kind == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name
        )
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, name=name)
    if kind == "sgd":
        return keras.optimizers.SGD(
            learning_rate=learning_rate,
            weight_decay=weight_decay or None,
            name=name,
        )
    raise ValueError(
        f"discriminative_optimizer: unknown optimizer {kind!r}; expected one of "
        f"{OPTIMIZERS} or a callable `learning_rate -> Optimizer`."
    )


def _is_context_layer(layer):
    from keras_ecg.models.encoders.cpc_encoder import CPCContext

    return isinstance(layer, (CPCContext, keras.layers.RNN))


def _context_variables(backbone):
    """Variables of the recurrent (CPC context) part of `backbone`."""
    found = []
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        if _is_context_layer(layer):
            found.extend(layer.weights)
    return found


def split_classifier_variables(classifier):
    """Splits a classifier's variables into backbone, context and head groups.

    Args:
        classifier: a built `keras_ecg.models.ECGClassifier` (or any model with
            a `backbone` attribute).

    Returns:
        A dict `{"backbone": [...], "context": [...], "head": [...]}` of
        variables; `context` holds the recurrent layers of a CPC backbone (empty
        for convolutional backbones) and is not part of `backbone`.
    """
    if not getattr(classifier, "built", False):
        raise ValueError(
            "The classifier must be built before its variables can be grouped; "
            "call it on a batch or pass `input_shape`."
        )
    backbone = getattr(classifier, "backbone", None)
    if backbone is None:
        raise ValueError(
            f"{type(classifier).__name__} has no `backbone` attribute; "
            "discriminative learning rates need one."
        )
    context_ids = {id(v) for v in _context_variables(backbone)}
    backbone_ids = {id(v) for v in backbone.weights}
    groups = {"backbone": [], "context": [], "head": []}
    for variable in classifier.weights:
        if id(variable) in context_ids:
            groups["context"].append(variable)
        elif id(variable) in backbone_ids:
            groups["backbone"].append(variable)
        else:
            groups["head"].append(variable)
    return groups


def discriminative_optimizer(
    classifier,
    backbone_lr,
    head_lr,
    context_lr=None,
    weight_decay=1e-3,
    optimizer="adamw",
    input_shape=None,
):
    """A `MultiOptimizer` with separate learning rates for backbone and head.

    Variables are mapped by their (unique) `variable.path`, so the optimizer
    serialises with the model. The CPC context (LSTM) can get its own rate.

    Args:
        classifier: an `ECGClassifier`; built, or built here from `input_shape`.
        backbone_lr: learning rate (a float or a
            `keras.optimizers.schedules.LearningRateSchedule`) of the backbone
            (encoder) variables.
        head_lr: learning rate (float or schedule) of the head, also the
            default for any variable that is neither backbone nor context.
        context_lr: learning rate of the recurrent context of a CPC backbone;
            defaults to `backbone_lr`.
        weight_decay: decoupled weight decay of every sub-optimizer (`0`
            disables it).
        optimizer: `"adamw"` (the paper's), `"adam"`, `"sgd"`, or a callable
            `learning_rate -> keras.optimizers.Optimizer`.
        input_shape: `(batch, timesteps, leads)` to build an unbuilt classifier.

    Returns:
        A `keras.optimizers.MultiOptimizer`.

    Example:

    ```python
    classifier = ECGClassifier(pretrained.backbone, num_classes=71)
    classifier.build((None, 250, 12))
    classifier.compile(
        optimizer=discriminative_optimizer(classifier, 1e-4, 1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    ```
    """
    for name, value in (("backbone_lr", backbone_lr), ("head_lr", head_lr)):
        if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
            continue
        if not float(value) >= 0.0:
            raise ValueError(f"{name} must be a non-negative number, got {value}.")
    if context_lr is None:
        context_lr = backbone_lr
    if input_shape is not None and not classifier.built:
        classifier.build(tuple(input_shape))
    groups = split_classifier_variables(classifier)

    head_opt = _make_optimizer(optimizer, head_lr, weight_decay, "head_optimizer")
    mapping = keras.optimizers.OptimizerMap(default_optimizer=head_opt)
    owners = {}
    mapped = set()  # `key in mapping` is always True: unmatched keys -> default
    for group, lr in (("backbone", backbone_lr), ("context", context_lr)):
        if not groups[group]:
            continue
        sub = _make_optimizer(optimizer, lr, weight_decay, f"{group}_optimizer")
        for variable in groups[group]:
            owners.setdefault(variable.path, set()).add(group)
            # Escaped: OptimizerMap treats keys as regexes for unmatched paths.
            key = re.escape(variable.path)
            if key not in mapped:
                mapped.add(key)
                mapping[key] = sub
    for variable in groups["head"]:
        owners.setdefault(variable.path, set()).add("head")
    clashes = sorted(path for path, group in owners.items() if len(group) > 1)
    if clashes:
        raise ValueError(
            f"Variables of different groups share the path(s) {clashes[:5]}; "
            "give the backbone and head layers distinct names."
        )
    return keras.optimizers.MultiOptimizer(mapping, name="discriminative")
