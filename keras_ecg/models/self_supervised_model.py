"""The base of the self-supervised models: a `keras.Model` that can carry its
input preprocessing."""

import keras


class SelfSupervisedModel(keras.Model):
    """A `keras.Model` with an optional, serialized `preprocessor`.

    A pretrained encoder is only meaningful on data prepared the way it saw
    its pretraining data (sampling rate, lead order, per-lead standardisation).
    `SimCLR`, `BYOL`, `SwAV` and `CPC` derive from this class so that the
    preprocessing (a `keras_ecg.models.ECGPreprocessor`) is saved inside their
    `.keras` file, and finetuning / embedding reuses it instead of guessing.

    Args:
        preprocessor: optional serializable preprocessing object (e.g. an
            `ECGPreprocessor`) or its serialized config.
        **kwargs: base `keras.Model` arguments.
    """

    def __init__(self, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    @property
    def preprocessor(self):
        return self.__dict__.get("_attached_preprocessor")

    @preprocessor.setter
    def preprocessor(self, value):
        if isinstance(value, dict):
            value = keras.saving.deserialize_keras_object(value)
        # Kept out of Keras' layer tracking: it holds no weights, and a
        # pretrained (built) model must accept one after training.
        object.__setattr__(self, "_attached_preprocessor", value)

    def get_config(self):
        config = super().get_config()
        if self.preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(
                self.preprocessor
            )
        return config
