"""keras_ecg.models."""
