"""keras_ecg.layers."""
