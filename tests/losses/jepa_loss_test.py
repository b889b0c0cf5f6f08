import keras
import numpy as np

from keras_ecg.losses import jepa_loss


def test_mean_absolute_error_over_valid_target_tokens():
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=(2, 4, 3)).astype("float32")
    targets = rng.normal(size=(2, 4, 3)).astype("float32")
    valid = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], bool)
    # By hand: |z - h| summed over the 6 valid tokens x 3 features, / 18.
    expected = (
        sum(
            abs(float(predictions[b, m, d]) - float(targets[b, m, d]))
            for b in range(2)
            for m in range(3)
            for d in range(3)
        )
        / 18
    )
    loss = float(keras.ops.convert_to_numpy(jepa_loss(predictions, targets, valid)))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # All valid: torch.mean(torch.abs(z - h)) of the reference.
    full = float(keras.ops.convert_to_numpy(jepa_loss(predictions, targets)))
    np.testing.assert_allclose(full, np.abs(predictions - targets).mean(), rtol=1e-6)
