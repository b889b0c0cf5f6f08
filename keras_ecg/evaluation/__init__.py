"""keras_ecg.evaluation."""
