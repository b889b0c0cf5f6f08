"""`PresetMixin`: `Cls.from_preset` loads its part of a preset and refuses a
preset whose part is of another class."""

import pytest

from keras_ecg.models import CPC
from keras_ecg.models import SimCLR
from keras_ecg.models.encoders import XResNet1D
from keras_ecg.presets import PresetError
from tests.presets.preset_helpers import method_model


def test_class_checks(tmp_path):
    byol, _ = method_model("byol")
    byol.save_to_preset(tmp_path / "byol")
    with pytest.raises(PresetError, match=r"holds a task of class BYOL .*not SimCLR"):
        SimCLR.from_preset(tmp_path / "byol")
    # Any backbone class check on the backbone, whatever the task.
    assert isinstance(XResNet1D.from_preset(tmp_path / "byol"), XResNet1D)
    cpc, _ = method_model("cpc")
    cpc.save_to_preset(tmp_path / "cpc")
    with pytest.raises(
        PresetError, match="backbone is of class Sequential .*not XResNet1D"
    ):
        XResNet1D.from_preset(tmp_path / "cpc")
    with pytest.raises(PresetError, match="not CPC: load it with BYOL.from_preset"):
        CPC.from_preset(tmp_path / "byol")
    encoder = XResNet1D(block_depths=(1,), widths=(8,), stem_filters=(8,))
    encoder.save_to_preset(tmp_path / "enc")
    with pytest.raises(PresetError, match=r"holds no task model .*class XResNet1D"):
        SimCLR.from_preset(tmp_path / "enc")
    with pytest.raises(TypeError, match="takes no constructor arguments"):
        SimCLR.from_preset(tmp_path / "byol", temperature=0.1)
