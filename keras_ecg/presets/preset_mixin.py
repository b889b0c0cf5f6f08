"""`save_to_preset` / `from_preset` as methods, keras-hub style."""


class PresetMixin:
    """Adds `save_to_preset` and the class-checking `from_preset` to a model.

    Like keras-hub's `Backbone` and `Task`: a class declares whether it is a
    preset's `"backbone"` (an encoder: `XResNet1D`, `CPCEncoder`, ...) or its
    `"task"` (a self-supervised method model, an `ECGClassifier`), and
    `Cls.from_preset(handle)` loads that part of the preset, refusing one of
    another class: `SimCLR.from_preset` on a BYOL preset is an error, and
    `XResNet1D.from_preset` loads the backbone of any preset whose backbone is
    an `XResNet1D` (whatever its task). A class whose constructor takes the
    backbone can name that argument in `preset_backbone_argument`; its
    `from_preset(handle, **kwargs)` then builds a new model on the preset's
    backbone and preprocessor (e.g. `ECGClassifier.from_preset(handle,
    num_classes=5)`, as keras-hub's classifiers do).

    Subclasses of a class with the mixin inherit it; nothing in
    `keras_ecg.presets` lists the model classes.
    """

    preset_component = "task"
    preset_backbone_argument = None

    def save_to_preset(self, preset_dir, preprocessor=None, metadata=None):
        """Saves this model as a preset (see `keras_ecg.presets.save_to_preset`).

        Args:
            preset_dir: the folder to write.
            preprocessor: defaults to `self.preprocessor`, if any.
            metadata: optional JSON-serializable dict for `metadata.json`.

        Returns:
            `preset_dir`.
        """
        from keras_ecg.presets.preset_saver import save_to_preset

        return save_to_preset(
            self, preset_dir, preprocessor=preprocessor, metadata=metadata
        )

    @classmethod
    def from_preset(cls, handle, load_weights=True, **kwargs):
        """Loads this class's part of a preset (its backbone or task).

        Args:
            handle: a preset folder, `hf://...` or `kaggle://...` handle.
            load_weights: `False` builds the architecture with fresh weights.
            **kwargs: only for classes with a `preset_backbone_argument`:
                constructor arguments of a new model on the preset's backbone.

        Returns:
            An instance of this class (or of a subclass).

        Raises:
            PresetError: the preset's part is not of this class, or the
                preset cannot be read (one line).
        """
        from keras_ecg.presets.preset_loader import load_preset_as

        return load_preset_as(cls, handle, load_weights=load_weights, **kwargs)
