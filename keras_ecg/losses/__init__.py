"""keras_ecg.losses."""
