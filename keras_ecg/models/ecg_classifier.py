"""Downstream classifier: a (pre-trained) backbone plus a pooling/MLP head."""

import keras
import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import LABEL_VOCABULARIES
from keras_ecg.inference import windowed_prediction
from keras_ecg.layers.global_pooling import POOLING_MODES
from keras_ecg.layers.global_pooling import GlobalPooling1D
from keras_ecg.models.ecg_preprocessor import PreprocessorAttribute
from keras_ecg.presets.preset_mixin import PresetMixin


@keras.saving.register_keras_serializable(package="keras_ecg")
class ECGClassifier(PresetMixin, PreprocessorAttribute, keras.Model):
    """Backbone -> [pooling] -> fastai-style MLP head -> class logits.

    The backbone maps `(batch, timesteps, leads)` to a vector `(batch, D)`, used
    as is, or to a sequence `(batch, timesteps', D)`, pooled with `pooling`
    (the CPC downstream head concat-pools its LSTM outputs). Each head layer is
    fastai's `bn_drop_lin`: `[BatchNorm] -> Dropout -> Dense`, with ReLU after
    the hidden ones. The output is logits unless `activation` is given; for
    multi-label targets compile with `BinaryCrossentropy(from_logits=True)`.

    `freeze_backbone=True` is the linear-evaluation protocol: the backbone is
    set non-trainable, which in Keras 3 also runs its BatchNorm layers in
    inference mode, so neither its weights nor its moving statistics change.

    The optional metadata travels with the model (config and `.keras` file):
    an `ECGPreprocessor` (rate, lead order, standardisation statistics,
    windows) lets `predict_records` run on raw records, and `class_names`
    name its output columns. The model's `call` itself still takes
    preprocessed `(batch, window_length, leads)` windows.

    Args:
        backbone: a `keras.Model` / layer taking `(batch, timesteps, leads)`.
        num_classes: number of outputs.
        pooling: `"avg"`, `"max"`, `"last"`, `"concat"` (max, avg) or
            `"concat_last"` (max, avg, last); only used for sequence outputs.
        head_hidden_dims: widths of the hidden head layers; `()` gives a linear
            head.
        dropout: dropout rate before every head `Dense`, or one rate per
            head `Dense` (`len(head_hidden_dims) + 1` rates, e.g. fastai's
            `(0.25, 0.5)` for one hidden layer: half the rate before the
            hidden layers).
        use_batch_norm: whether to batch-normalise the input of every head
            `Dense`.
        activation: activation of the output layer; `None` returns logits.
        freeze_backbone: whether to freeze the backbone (linear evaluation).
        output_initializer: initializer of the output layer's kernel; linear
            probes usually start from a near-zero head (e.g.
            `keras.initializers.TruncatedNormal(stddev=0.01)`, as MAE's), so
            that the few steps of a linear evaluation are not spent undoing a
            random initial ranking.
        preprocessor: optional `keras_ecg.models.ECGPreprocessor` describing
            the input the model was trained on; needed by `predict_records`.
        class_names: optional list of `num_classes` label codes (e.g. SCP
            statements or SNOMED-CT codes), one per output.
        class_descriptions: optional list of `num_classes` human-readable
            descriptions of the classes.
        label_set: optional name of the label set the model was trained on
            (e.g. PTB-XL's `"superdiagnostic"`).
        label_vocabulary: the vocabulary of `class_names`, one of
            `keras_ecg.data.LABEL_VOCABULARIES` (`"scp"` for PTB-XL statements,
            `"snomed"` for SNOMED-CT codes of CinC folders) or `None`.
        **kwargs: base `keras.Model` arguments (`name`, `trainable`, ...).

    Example:

    >>> import numpy as np
    >>> from keras_ecg.models.encoders import XResNet1D
    >>> backbone = XResNet1D(block_depths=(1,), widths=(8,), expansion=1,
    ...                      stem_filters=(8,), pooling=None)
    >>> classifier = ECGClassifier(backbone, num_classes=5, pooling="concat",
    ...                            freeze_backbone=True)
    >>> classifier(np.zeros((2, 250, 12), "float32")).shape
    (2, 5)

    Carrying its preprocessing, a saved classifier predicts on raw records:

    ```python
    classifier = ECGClassifier(
        backbone,
        num_classes=5,
        preprocessor=ECGPreprocessor.from_standardizer(standardizer, 100),
        class_names=train.classes,
        label_set="superdiagnostic",
        label_vocabulary="scp",
    )
    ...  # fit
    classifier.save("classifier.keras")
    model = keras.saving.load_model("classifier.keras")  # after import keras_ecg
    probabilities = model.predict_records("new_records/")  # a DataFrame
    ```

    As a preset (see `keras_ecg.presets`): `classifier.save_to_preset(folder)`,
    `ECGClassifier.from_preset(handle)` loads a classifier preset back, and
    `ECGClassifier.from_preset(handle, num_classes=5, ...)` builds a new
    classifier on the backbone and preprocessing of any preset (e.g. a
    pretrained SimCLR's encoder).
    """

    # `from_preset(handle, **kwargs)` passes the preset's backbone as this.
    preset_backbone_argument = "backbone"

    def __init__(
        self,
        backbone,
        num_classes,
        pooling="concat",
        head_hidden_dims=(),
        dropout=0.0,
        use_batch_norm=False,
        activation=None,
        freeze_backbone=False,
        output_initializer="glorot_uniform",
        preprocessor=None,
        class_names=None,
        class_descriptions=None,
        label_set=None,
        label_vocabulary=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(
                f"ECGClassifier: num_classes must be positive, got {num_classes}."
            )
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"ECGClassifier: unknown pooling {pooling!r}; expected one of "
                f"{POOLING_MODES}."
            )
        self.head_hidden_dims = tuple(int(d) for d in head_hidden_dims)
        self.dropout = _check_dropout(dropout, len(self.head_hidden_dims) + 1)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.use_batch_norm = bool(use_batch_norm)
        self.activation = activation
        self.freeze_backbone = bool(freeze_backbone)
        self.output_initializer = keras.initializers.get(output_initializer)
        if self.freeze_backbone:
            _freeze(self.backbone)
        self.preprocessor = preprocessor
        # Tuples, not lists: Keras would wrap list attributes in tracked lists.
        self.class_names = _check_names(class_names, "class_names", self.num_classes)
        self.class_descriptions = _check_names(
            class_descriptions, "class_descriptions", self.num_classes, unique=False
        )
        if label_set is not None and not isinstance(label_set, str):
            raise ValueError(
                f"ECGClassifier: label_set must be a string or None, got {label_set!r}."
            )
        self.label_set = label_set
        if label_vocabulary is not None and label_vocabulary not in LABEL_VOCABULARIES:
            raise ValueError(
                f"ECGClassifier: label_vocabulary must be one of {LABEL_VOCABULARIES}"
                f" or None, got {label_vocabulary!r}."
            )
        self.label_vocabulary = label_vocabulary

        self.pool = GlobalPooling1D(pooling, name="pool")
        self.head_norms = []
        self.head_dropouts = []
        self.head_denses = []
        dims = self.head_hidden_dims + (self.num_classes,)
        rates = (
            self.dropout
            if isinstance(self.dropout, tuple)
            else (self.dropout,) * len(dims)
        )
        for i, (dim, rate) in enumerate(zip(dims, rates, strict=True)):
            last = i == len(dims) - 1
            suffix = "output" if last else f"hidden_{i}"
            if self.use_batch_norm:
                self.head_norms.append(
                    keras.layers.BatchNormalization(
                        momentum=0.9, epsilon=1e-5, name=f"head_bn_{suffix}"
                    )
                )
            self.head_dropouts.append(
                keras.layers.Dropout(rate, name=f"head_dropout_{suffix}")
            )
            self.head_denses.append(
                keras.layers.Dense(
                    dim,
                    activation=activation if last else "relu",
                    kernel_initializer=self.output_initializer
                    if last
                    else "glorot_uniform",
                    name=f"head_{suffix}",
                )
            )

    def _features(self, inputs, training):
        x = self.backbone(inputs, training=training)
        if len(x.shape) == 3:
            x = self.pool(x)
        elif len(x.shape) != 2:
            raise ValueError(
                "ECGClassifier: the backbone must return (batch, dim) or "
                f"(batch, timesteps, dim), got shape {tuple(x.shape)}."
            )
        return x

    def build(self, input_shape):
        if (
            self.preprocessor is not None
            and input_shape[-1] is not None
            and input_shape[-1] != self.preprocessor.num_leads
        ):
            raise ValueError(
                f"ECGClassifier: inputs have {input_shape[-1]} leads but the "
                f"preprocessor names {self.preprocessor.num_leads}: "
                f"{list(self.preprocessor.lead_names)}."
            )
        if not self.backbone.built:
            self.backbone.build(input_shape)
        if self.freeze_backbone:
            # Variables created while building an unbuilt backbone start
            # trainable: freeze again once they exist.
            _freeze(self.backbone)
        # A symbolic call works for functional and subclassed backbones alike.
        spec = self.backbone.compute_output_spec(
            keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype)
        )
        shape = tuple(spec.shape)
        if len(shape) == 3:
            shape = self.pool.compute_output_shape(shape)
        if shape[-1] is None:
            raise ValueError(
                "ECGClassifier: the backbone's feature dimension must be known, "
                f"got output shape {shape}."
            )
        for i, dense in enumerate(self.head_denses):
            if self.use_batch_norm:
                self.head_norms[i].build(shape)
            dense.build(shape)
            shape = tuple(shape[:-1]) + (dense.units,)
        self.built = True

    def call(self, inputs, training=None):
        x = self._features(inputs, training)
        for i, dense in enumerate(self.head_denses):
            if self.use_batch_norm:
                x = self.head_norms[i](x, training=training)
            x = self.head_dropouts[i](x, training=training)
            x = dense(x)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def column_names(self):
        """The class columns of `predict_records`: `class_names` or `class_<i>`."""
        if self.class_names is not None:
            return list(self.class_names)
        return [f"class_{i}" for i in range(self.num_classes)]

    def predict_records(
        self, records, batch_size=256, threshold=None, on_error="raise", recursive=True
    ):
        """Per-record probabilities on raw records, using the stored preprocessor.

        The records are brought to the model's rate, leads and scale
        (`ECGPreprocessor.prepare`), cut into the preprocessor's sliding
        windows (a last end-aligned window covers a record's tail), and the
        sigmoid of each window's logits is aggregated per record with the
        preprocessor's `aggregation` (`"mean"` by default, as in the paper),
        exactly as `keras_ecg.inference.predict_records` does (the downstream
        protocols of `keras_ecg.evaluation` score records with it too).

        Args:
            records: an `ECGDataset`, a folder of WFDB records and/or
                clinical exports, a `.hea` path, a clinical export (GE MUSE
                XML, Philips Sierra XML, HL7 aECG, DICOM waveform, EDF/EDF+,
                SCP-ECG; the `formats` extra) or a list of them (see
                `ECGPreprocessor.prepare`).
            batch_size: windows per prediction batch.
            threshold: optional decision threshold, one for all classes or a
                sequence of one per class. With it, one boolean column
                `"<class>_pred"` (`probability >= threshold`) per class is
                appended after the probability columns, which stay.
            on_error: `"raise"` or `"skip"` bad records (one
                `ECGDataWarning` lists the skipped ones).
            recursive: also read the sub-folders of a folder.

        Returns:
            A `pandas.DataFrame` with one row per (kept) record, in input
            order: `record_id`, then one float probability column per class,
            named by `class_names` (`class_0`, ... without them).

        Raises:
            ValueError: the classifier has no preprocessor, outputs no logits
                (`activation` set), or `threshold` is malformed.
            ECGDataError: a bad record with `on_error="raise"`.

        Example:

        ```python
        model = keras.saving.load_model("classifier.keras")
        scores = model.predict_records("cinc2021/", threshold=0.5)
        scores.set_index("record_id")
        ```
        """
        if self.preprocessor is None:
            raise ValueError(
                "ECGClassifier.predict_records needs the preprocessing the model "
                "was trained with, and this classifier has none. Pass "
                "`preprocessor=keras_ecg.ECGPreprocessor(...)` (e.g. "
                "`ECGPreprocessor.from_standardizer(standardizer, sampling_rate)`) "
                "when building it, or set `classifier.preprocessor`."
            )
        if self.activation not in (None, "linear"):
            raise ValueError(
                "ECGClassifier.predict_records applies the sigmoid itself and needs "
                f"a classifier that outputs logits, not activation={self.activation!r}."
            )
        thresholds = self._thresholds(threshold)
        preprocessor = self.preprocessor
        # Rate and leads here; the statistics are applied to each window in
        # the input pipeline, so the records are not copied to standardise.
        data = preprocessor.prepare(
            records, on_error=on_error, recursive=recursive, standardize=False
        )
        probabilities = windowed_prediction.predict_records(
            self,
            data,
            window_seconds=preprocessor.window_seconds,
            stride_seconds=preprocessor.stride_seconds,
            batch_size=batch_size,
            aggregation=preprocessor.aggregation,
            standardizer=preprocessor if preprocessor.standardizes else None,
        )
        names = self.column_names()
        frame = pd.DataFrame(probabilities, columns=names)
        frame.insert(0, "record_id", list(data.record_ids))
        if thresholds is not None:
            positive = probabilities >= thresholds
            for j, name in enumerate(names):
                frame[f"{name}_pred"] = positive[:, j]
        return frame

    def _thresholds(self, threshold):
        if threshold is None:
            return None
        values = np.asarray(threshold, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(self.num_classes, float(values))
        if values.shape != (self.num_classes,) or not np.all(
            (values >= 0.0) & (values <= 1.0)
        ):
            raise ValueError(
                "ECGClassifier.predict_records: threshold must be a probability in "
                f"[0, 1] or one per class ({self.num_classes}), got {threshold!r}."
            )
        return values

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "head_hidden_dims": list(self.head_hidden_dims),
            "dropout": (
                list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout
            ),
            "use_batch_norm": self.use_batch_norm,
            "activation": self.activation
            if self.activation is None or isinstance(self.activation, str)
            else keras.activations.serialize(self.activation),
            "freeze_backbone": self.freeze_backbone,
            "output_initializer": keras.initializers.serialize(self.output_initializer),
            "preprocessor": None
            if self.preprocessor is None
            else keras.saving.serialize_keras_object(self.preprocessor),
            "class_names": _as_list(self.class_names),
            "class_descriptions": _as_list(self.class_descriptions),
            "label_set": self.label_set,
            "label_vocabulary": self.label_vocabulary,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        # Configs saved before the metadata existed have no such keys; the
        # constructor defaults (None) apply.
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.saving.deserialize_keras_object(
                config["preprocessor"]
            )
        # `output_initializer` stays serialized: __init__'s initializers.get
        # takes the dict.
        return cls(**config)


def _check_names(names, what, num_classes, unique=True):
    """`names` as a tuple of `num_classes` strings, or None."""
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError(f"ECGClassifier: {what} must be a list, got {names!r}.")
    names = tuple(str(name) for name in names)
    if len(names) != num_classes:
        raise ValueError(
            f"ECGClassifier: {what} has {len(names)} entries but num_classes is "
            f"{num_classes}."
        )
    if unique and len(set(names)) != len(names):
        raise ValueError(f"ECGClassifier: {what} has duplicates: {list(names)}.")
    return names


def _check_dropout(dropout, num_layers):
    """A float, or a tuple of one rate per head `Dense`; each in [0, 1)."""
    per_layer = isinstance(dropout, (list, tuple))
    rates = [float(r) for r in dropout] if per_layer else [float(dropout)]
    if per_layer and len(rates) != num_layers:
        raise ValueError(
            f"ECGClassifier: {len(rates)} dropout rates for {num_layers} head "
            "layers; give one rate, or one per hidden layer plus the output."
        )
    if not all(0.0 <= r < 1.0 for r in rates):
        raise ValueError(f"ECGClassifier: dropout must be in [0, 1), got {dropout}.")
    return tuple(rates) if per_layer else rates[0]


def _as_list(values):
    return None if values is None else list(values)


def _freeze(layer):
    """Sets `trainable=False` on `layer` and, explicitly, on every nested layer.

    A functional model rebuilt from its config does not always propagate its
    own `trainable` flag to its layers, so the flag is set at every level.
    """
    layer.trainable = False
    for sublayer in getattr(layer, "layers", ()):
        _freeze(sublayer)
