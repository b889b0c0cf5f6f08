import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.layers import ECGAugmentation
from keras_ecg.layers import TimeOut
from tests.layers.augmentation import augmentation_checks as checks


@keras.saving.register_keras_serializable(package="keras_ecg_tests")
class Scale(ECGAugmentation):
    """A minimal subclass: one per-example factor."""

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        return {"factor": self._uniform((batch_size,), 0.5, 2.0, seed)}

    def _transform(self, x, parameters):
        return x * parameters["factor"][:, None, None]


def reference(x, params):
    return x * params["factor"][:, None, None]


def test_subclass_contract_against_reference():
    checks.check_reference(Scale, reference)
    checks.check_tf_data(Scale, reference)
    checks.check_common(Scale)


def test_probability_draws_an_apply_mask_per_example():
    layer = Scale(probability=0.3, seed=0)
    params = checks.to_numpy(layer.get_random_transformation((400, 250, 12)))
    assert params["apply"].dtype == bool and params["apply"].shape == (400,)
    assert abs(params["apply"].mean() - 0.3) < 0.08
    # transform() keeps the examples whose mask is off.
    x = checks.ecg_batch()
    small = checks.to_numpy(layer.get_random_transformation(x.shape))
    y = checks.to_numpy(layer.transform(x, small))
    np.testing.assert_allclose(y, checks.expected_output(reference, x, small))
    assert "apply" not in checks.to_numpy(
        Scale(seed=0).get_random_transformation((4, 250, 12))
    )


def test_dynamic_batch_size_in_tf_data():
    x = checks.ecg_batch(batch=5)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2)  # batches 2, 2, 1
    assert dataset.element_spec.shape[0] is None
    outputs = [np.asarray(y) for y in dataset.map(TimeOut(seed=0))]
    assert [y.shape[0] for y in outputs] == [2, 2, 1]


def test_bad_inputs_raise_clear_errors():
    layer = Scale(seed=0)
    with pytest.raises(ValueError, match=r"Scale expects ECG of shape"):
        layer(np.zeros((250,), "float32"))
    with pytest.raises(ValueError, match=r"Scale expects ECG of shape"):
        layer(np.zeros((2, 3, 250, 12), "float32"))
    with pytest.raises(ValueError, match="at least 2 timesteps"):
        layer(np.zeros((2, 1, 12), "float32"))
    with pytest.raises(ValueError, match="static number of timesteps"):
        layer.get_random_transformation((2, None, 12))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"Scale: `probability` must be in \[0, 1\]"):
        Scale(probability=-0.1)
    with pytest.raises(TypeError, match="probability"):
        Scale(probability="high")


def test_config_holds_all_arguments():
    config = Scale(probability=0.25, seed=3, name="scale").get_config()
    assert config["probability"] == 0.25 and config["seed"] == 3
    assert "sampling_rate" not in config  # only for time-dependent layers
    rebuilt = Scale.from_config(config)
    assert rebuilt.probability == 0.25 and rebuilt.seed == 3
