"""End-to-end tests of the `keras-ecg` command line on tiny synthetic data."""

import json

import keras
import numpy as np

from keras_ecg import cli

TINY = ["--size", "tiny", "--num-records", "120", "--batch-size", "16"]


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_demo_prints_both_encoders_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", *TINY, "--epochs", "1", "--eval-epochs", "1"]
    assert cli.main([*args, "--output", str(out)]) == 0
    results = _read(out / "demo_results.json")
    encoders = [row["encoder"] for row in results["results"]]
    assert encoders == ["simclr pretrained", "random init"]
    for row in results["results"]:
        assert 0.0 <= row["test_macro_auc"] <= 1.0
        assert 0.0 <= row["val_macro_auc"] <= 1.0
    assert len(results["pretrain_loss"]) == 1
    assert np.isfinite(results["pretrain_loss"]).all()
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed
    assert "| simclr pretrained |" in printed and "| random init |" in printed
    assert (out / "pretrained.keras").exists()


def test_pretrain_linear_eval_evaluate_embed_chain(tmp_path):
    pretrain_dir = tmp_path / "pretrain"
    common = [*TINY, "--seed", "3"]
    assert (
        cli.main(
            ["pretrain", "--method", "simclr", "--epochs", "1", *common]
            + ["--output", str(pretrain_dir)]
        )
        == 0
    )
    checkpoint = pretrain_dir / "pretrained.keras"
    assert checkpoint.exists() and (pretrain_dir / "standardizer.json").exists()

    eval_dir = tmp_path / "linear"
    args = ["linear-eval", "--checkpoint", str(checkpoint), "--eval-epochs", "1"]
    assert cli.main([*args, *common, "--output", str(eval_dir)]) == 0
    linear = _read(eval_dir / "linear-eval_results.json")
    assert linear["mode"] == "linear"

    # The saved classifier re-evaluates to the AUC the linear-eval run reported.
    eval_out = tmp_path / "evaluate"
    args = ["evaluate", "--model", linear["model"], "--split", "test"]
    assert cli.main([*args, *common, "--output", str(eval_out)]) == 0
    evaluated = _read(eval_out / "evaluate_results.json")
    np.testing.assert_allclose(
        evaluated["macro_auc"], linear["test_macro_auc"], atol=1e-6
    )

    # The frozen backbone is exactly the pretrained one.
    pretrained = keras.saving.load_model(checkpoint).backbone
    classifier = keras.saving.load_model(linear["model"])
    for a, b in zip(pretrained.weights, classifier.backbone.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )

    embed_dir = tmp_path / "embed"
    args = ["embed", "--checkpoint", str(checkpoint), "--split", "val"]
    assert cli.main([*args, *common, "--output", str(embed_dir)]) == 0
    archive = np.load(embed_dir / "embeddings.npz")
    assert archive["embeddings"].shape[0] == len(archive["record_ids"]) == 12
    assert np.isfinite(archive["embeddings"]).all()
