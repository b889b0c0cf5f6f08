"""`keras-ecg convert --from reference`, through `keras_ecg.cli.main`."""

import json
import os

import numpy as np
import pytest
import torch

from keras_ecg.cli import main
from keras_ecg.presets import from_preset
from tests.convert import reference_test as helpers


def _run(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr()


def _one_line_error(captured, text):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("keras-ecg convert: error:") and text in lines[0]


def test_reference_checkpoint_becomes_a_preset(tmp_path, capsys):
    module = helpers._reference_module("simclr", 250)
    checkpoint = helpers._save(tmp_path, module, name="simclr_all.ckpt")
    output = tmp_path / "simclr_preset"
    code, captured = _run(
        ["convert", "--from", "reference", checkpoint, "--output", output], capsys
    )
    assert code == 0, captured.err
    assert "converted the reference's simclr" in captured.out
    assert "folded encoder.features.0.0.bias" in captured.out
    assert "unused encoder.l1.bias" in captured.out

    # The preset's backbone computes the reference module's features.
    x_reference, x_keras = helpers._inputs(250)
    with torch.no_grad():
        features = module.encoder(x_reference)[0]
    backbone = from_preset(output, "backbone")
    helpers._close(backbone(x_keras, training=False), features)
    preprocessor = from_preset(output, "preprocessor")
    assert preprocessor.sampling_rate == 100 and preprocessor.window_length == 250
    with open(output / "metadata.json", encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["method"] == "simclr" and metadata["size"] == "paper"
    details = metadata["reference_conversion"]
    assert details["source"]["checkpoint"] == "simclr_all.ckpt"
    assert details["input"]["reference_lead_order"][:3] == ["I", "II", "V1"]

    # An existing preset is only replaced with --overwrite (refused before
    # the checkpoint is read).
    args = ["convert", "--from", "reference", checkpoint, "--output", output]
    code, captured = _run(args, capsys)
    assert code == 2
    _one_line_error(captured, "already holds a preset; pass --overwrite")


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nothing.ckpt"
    code, captured = _run(
        ["convert", "--from", "reference", missing, "--output", tmp_path / "p"],
        capsys,
    )
    assert code == 2
    _one_line_error(captured, f"CKPT {missing}: no such file")
    assert not (tmp_path / "p").exists()


def test_unknown_method_and_source_are_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"a.weight": torch.zeros(1)}}, checkpoint)
    base = [checkpoint, "--output", tmp_path / "p"]
    code, captured = _run(
        ["convert", "--from", "reference", *base, "--method", "moco"], capsys
    )
    assert code == 2
    _one_line_error(captured, "--method moco: unknown method")
    code, captured = _run(["convert", "--from", "keras-hub", *base], capsys)
    assert code == 2
    _one_line_error(captured, "--from keras-hub: unknown source")


@pytest.mark.parametrize(
    "content, text",
    [
        ({"state_dict": {"classifier.weight": torch.zeros(5, 3)}}, "not a checkpoint"),
        ({"model": [1, 2, 3]}, "no 'state_dict'"),
    ],
)
def test_non_reference_checkpoint_is_one_line(tmp_path, capsys, content, text):
    checkpoint = tmp_path / "other.ckpt"
    torch.save(content, checkpoint)
    code, captured = _run(
        ["convert", "--from", "reference", checkpoint, "--output", tmp_path / "p"],
        capsys,
    )
    assert code == 2
    _one_line_error(captured, text)
    assert not (tmp_path / "p").exists()


def test_method_other_than_the_checkpoints_is_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "cpc.ckpt"
    state = {"model_cpc.proj.weight": torch.zeros(512, 512)}
    torch.save({"state_dict": state}, checkpoint)
    code, captured = _run(
        [
            *("convert", "--from", "reference", checkpoint),
            *("--output", tmp_path / "p", "--method", "byol"),
        ],
        capsys,
    )
    assert code == 2
    _one_line_error(captured, "holds the reference's cpc module")


def test_output_folder_with_other_files_is_left_alone(tmp_path, capsys):
    checkpoint = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"a.weight": torch.zeros(1)}}, checkpoint)
    output = tmp_path / "busy"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    code, captured = _run(
        ["convert", "--from", "reference", checkpoint, "--output", output], capsys
    )
    assert code == 2
    _one_line_error(captured, "is not empty and holds no preset")
    assert os.listdir(output) == ["notes.txt"]
    np.testing.assert_equal((output / "notes.txt").read_text(), "mine")
