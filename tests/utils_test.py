"""Tests of the run-level utilities."""

import keras
import tensorflow as tf

from keras_ecg.utils import enable_determinism


def test_enable_determinism_seeds_and_switches_off_grappler():
    # Grappler's memory optimiser sums large gradients in arrival order,
    # which differs between processes; op determinism does not cover it.
    previous = tf.config.optimizer.get_experimental_options()
    try:
        enable_determinism(3)
        assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"]
        first = keras.ops.convert_to_numpy(keras.random.uniform((4,)))
        enable_determinism(3)
        second = keras.ops.convert_to_numpy(keras.random.uniform((4,)))
        assert first.tolist() == second.tolist()
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": False, **previous}
        )
