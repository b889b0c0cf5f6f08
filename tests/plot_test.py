"""Tests of the ECG plot helpers: files written, layout, and plotted data."""

import sys

import keras
import numpy as np
import pytest

from keras_ecg import plot
from keras_ecg.data.ecg_dataset import STANDARD_LEADS

matplotlib_image = pytest.importorskip("matplotlib.image")


def record(timesteps=300, leads=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.5, (timesteps, leads)).astype(np.float32)


def axes_by_label(figure):
    """Maps each panel's lead label (its first text) to the panel."""
    return {axis.texts[0].get_text(): axis for axis in figure.axes}


def only_line(axis):
    lines = axis.get_lines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.backend_agnostic
def test_plot_ecg_writes_png_of_expected_size(tmp_path):
    signal = record(timesteps=500)
    path = tmp_path / "ecg.png"
    figure = plot.plot_ecg(signal, 100, title="a record", path=path, dpi=50)
    assert path.stat().st_size > 10_000
    image = matplotlib_image.imread(str(path))
    # 14 x (1.3 * 6 + 0.4) inches at 50 dpi.
    assert image.shape[:2] == (410, 700)
    # The traces are dark on a light page: some, not all, pixels are dark.
    dark = (image[..., :3].mean(-1) < 0.3).mean()
    assert 0.001 < dark < 0.2
    assert figure.get_suptitle() == "a record"


@pytest.mark.backend_agnostic
def test_plot_ecg_lines_hold_the_signal():
    signal = record(timesteps=250, seed=1)
    figure = plot.plot_ecg(signal, 50)
    panels = axes_by_label(figure)
    assert len(figure.axes) == 12 and sorted(panels) == sorted(STANDARD_LEADS)
    for lead, name in enumerate(STANDARD_LEADS):
        x, y = only_line(panels[name]).get_data()
        np.testing.assert_array_equal(y, signal[:, lead])
        np.testing.assert_allclose(x, np.arange(250) / 50.0)
    # 6x2 layout: limb leads in the left column, precordial in the right.
    left = {round(panels[n].get_position().x0, 3) for n in STANDARD_LEADS[:6]}
    right = {round(panels[n].get_position().x0, 3) for n in STANDARD_LEADS[6:]}
    assert len(left) == len(right) == 1 and left.pop() < right.pop()
    # ECG paper: the y range covers the trace and snaps to 0.5 mV squares.
    low, high = panels["II"].get_ylim()
    assert low <= signal[:, 1].min() and high >= signal[:, 1].max()
    assert np.isclose(low / 0.5, round(low / 0.5))


def test_plot_ecg_accepts_backend_tensors_and_other_lead_counts():
    signal = record(timesteps=120, leads=3, seed=2)
    figure = plot.plot_ecg(
        keras.ops.convert_to_tensor(signal), 100, lead_names=("I", "II", "V1")
    )
    assert len(figure.axes) == 3
    for lead, name in enumerate(("I", "II", "V1")):
        _, y = only_line(axes_by_label(figure)[name]).get_data()
        np.testing.assert_allclose(y, signal[:, lead])


def test_plot_augmented_views_draws_each_view(tmp_path):
    signal = record(timesteps=400, seed=3)
    cropped = signal[100:300] * 2.0
    noisy = keras.ops.convert_to_tensor(signal + 0.1)
    path = tmp_path / "views.png"
    figure = plot.plot_augmented_views(signal, [cropped, noisy], 100, path=path, dpi=40)
    image = matplotlib_image.imread(str(path))
    # (4.5 * 3) x (1.3 * 4 + 0.6) inches at 40 dpi.
    assert image.shape[:2] == (232, 540)
    shown = ("I", "II", "V1", "V5")
    assert len(figure.axes) == 4 * 3
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles == ["original", "view 1", "view 2"]
    columns = [signal, cropped, signal + 0.1]
    # Axes are created row-major: row = shown lead, column = record.
    for index, axis in enumerate(figure.axes):
        row, col = divmod(index, 3)
        lead = STANDARD_LEADS.index(shown[row])
        assert axis.texts[0].get_text() == shown[row]
        x, y = only_line(axis).get_data()
        np.testing.assert_allclose(y, columns[col][:, lead], rtol=1e-6)
        np.testing.assert_allclose(x, np.arange(len(columns[col])) / 100.0)


@pytest.mark.backend_agnostic
def test_plot_augmented_views_accepts_stacked_views_and_titles():
    signal = record(timesteps=100, seed=4)
    views = np.stack([signal * 0.5, -signal])
    figure = plot.plot_augmented_views(signal, views, 100, leads_to_show=("aVR",))
    assert len(figure.axes) == 3
    _, y = only_line(figure.axes[2]).get_data()
    np.testing.assert_array_equal(y, -signal[:, 3])
    figure = plot.plot_augmented_views(
        signal, {"scaled": views[0]}, 100, leads_to_show=("V6", "I")
    )
    assert [a.get_title() for a in figure.axes if a.get_title()] == [
        "original",
        "scaled",
    ]
    _, y = only_line(figure.axes[3]).get_data()
    np.testing.assert_array_equal(y, views[0][:, 0])


@pytest.mark.backend_agnostic
def test_bad_inputs_raise_clear_errors():
    signal = record(timesteps=50)
    with pytest.raises(ValueError, match="channels-first"):
        plot.plot_ecg(signal.T, 100)
    with pytest.raises(ValueError, match="12 lead names"):
        plot.plot_ecg(signal[:, :8], 100)
    with pytest.raises(ValueError, match=r"\(timesteps, leads\)"):
        plot.plot_ecg(signal[None], 100)
    with pytest.raises(ValueError, match="views\\[1\\]"):
        plot.plot_augmented_views(signal, [signal, signal[:, :3]], 100)
    with pytest.raises(ValueError, match="missing \\['X'\\]"):
        plot.plot_augmented_views(signal, [signal], 100, leads_to_show=("I", "X"))


@pytest.mark.backend_agnostic
def test_missing_matplotlib_raises_install_hint(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install keras-ecg\[plot\]"):
        plot.plot_ecg(record(timesteps=10), 100)
