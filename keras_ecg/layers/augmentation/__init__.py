"""keras_ecg.layers.augmentation."""
