"""keras_ecg.models.encoders."""
