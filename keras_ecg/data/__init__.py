"""keras_ecg.data."""
