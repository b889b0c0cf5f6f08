"""The base of the self-supervised models: a `keras.Model` that can carry its
input preprocessing."""

import keras

from keras_ecg.models.ecg_preprocessor import PreprocessorAttribute
from keras_ecg.presets.preset_mixin import PresetMixin


class SelfSupervisedModel(PresetMixin, PreprocessorAttribute, keras.Model):
    """A `keras.Model` with an optional, serialized `preprocessor`.

    A pretrained encoder is only meaningful on data prepared the way it saw
    its pretraining data (sampling rate, lead order, per-lead standardisation).
    `SimCLR`, `BYOL`, `SwAV` and `CPC` derive from this class so that the
    preprocessing (a `keras_ecg.models.ECGPreprocessor`) is saved inside their
    `.keras` file, and finetuning / embedding reuse it instead of guessing.
    It can be set after training: `model.preprocessor = preprocessor`.

    `model.save_to_preset(folder)` saves the model with its encoder and
    preprocessing as a preset (keras-hub's layout, see `keras_ecg.presets`);
    `SimCLR.from_preset(handle)` (any subclass) loads one back, refusing a
    preset of another method.

    Args:
        preprocessor: optional `ECGPreprocessor` or its serialized config.
        **kwargs: base `keras.Model` arguments.
    """

    def __init__(self, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def get_config(self):
        config = super().get_config()
        if self.preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(
                self.preprocessor
            )
        return config
