import keras
import numpy as np
import pytest

from keras_ecg.layers import sincos_position_embedding
from tests.transformer_numpy import sincos


def test_values_follow_the_interleaved_sine_cosine_formula():
    table = keras.ops.convert_to_numpy(sincos_position_embedding(np.arange(7), 10))
    assert table.shape == (7, 10)
    np.testing.assert_allclose(table, sincos(np.arange(7), 10), atol=1e-6)
    # Position 0: sin 0 = 0 in even columns, cos 0 = 1 in odd ones.
    np.testing.assert_array_equal(table[0], [0, 1] * 5)
    # Column pair 0 has frequency 1: sin(p), cos(p).
    np.testing.assert_allclose(table[3, :2], [np.sin(3.0), np.cos(3.0)], atol=1e-6)


def test_any_positions_get_the_rows_of_the_full_table():
    positions = np.array([[0, 5, 199], [3, 3, 17]])
    rows = keras.ops.convert_to_numpy(sincos_position_embedding(positions, 8))
    assert rows.shape == (2, 3, 8)
    table = sincos(np.arange(200), 8)
    np.testing.assert_allclose(rows, table[positions], atol=1e-5)


def test_odd_width_is_refused():
    with pytest.raises(ValueError, match="even"):
        sincos_position_embedding(np.arange(3), 5)
