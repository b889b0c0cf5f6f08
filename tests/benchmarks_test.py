"""Smoke test of the PTB-XL benchmark scripts: they run end to end (tiny settings).

The numbers in benchmarks/README.md come from these scripts; an API change
that breaks one would otherwise go unnoticed until the next measurement. The
check is that a run finishes and reports what it measured, not the values.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ecg.testing.test_case import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--size", "tiny", "--seeds", "1", "--pretrain-epochs", "1"]
TINY += ["--eval-epochs", "1"]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_reproduce_ptbxl_runs_and_reports(ptbxl_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "reproduce_ptbxl.py")]
    command += [*TINY, "--methods", "simclr", "--data", str(ptbxl_dir)]
    command += ["--label-sets", "superdiagnostic", "rhythm"]
    command += ["--protocols", "frozen", "finetune", "--output", str(out)]
    # Fold 1 alone (~190 records) trains; the test fold stays the subset's.
    command += ["--train-folds", "1"]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    table = (out / "results.md").read_text()
    runs = json.loads((out / "results.json").read_text())
    scores = np.load(out / "scores.npz")
    # One pretraining serves both label sets and every protocol.
    assert os.listdir(out / "pretrained") == ["simclr_seed0"]
    pretrained = [r for r in runs if r["model"] == "simclr pretrained"]
    assert len(pretrained) == 4
    assert len({r["pretrain_seconds"] for r in pretrained}) == 1
    number, interval = r"0\.\d{4}", r"\[0\.\d{4}, [01]\.\d{4}\]"
    sections = table.split("#### Label set ")[1:]
    assert [s.split("`")[1] for s in sections] == ["superdiagnostic", "rhythm"]
    for label_set, section in zip(("superdiagnostic", "rhythm"), sections):
        main, differences = section.split("| difference (seed means)", 1)
        rows = [line for line in main.splitlines() if line.startswith("| ")]
        # Header + random init (frozen) + scratch + simclr frozen / finetune.
        assert len(rows) == 5, section
        assert "| random init (xresnet1d) | frozen |" in main
        found = re.search(
            rf"\| simclr pretrained \| finetune \| {number} \| ({number}) \| "
            rf"({interval}) \| ({number}) \| ({interval}) \|",
            main,
        )
        assert found, section
        # One seed: the seed-mean interval is that run's, as results.json has.
        finetuned = [
            r
            for r in runs
            if r["label_set"] == label_set
            and r["model"] == "simclr pretrained"
            and r["protocol"] == "finetune"
        ]
        assert len(finetuned) == 1
        low, high = finetuned[0]["test_macro_auc_ci"]
        assert found.group(1) == f"{finetuned[0]['test_macro_auc']:.4f}"
        assert found.group(2) == f"[{low:.4f}, {high:.4f}]"
        assert low <= finetuned[0]["test_macro_auc"] <= high
        test_scores = scores[f"{runs.index(finetuned[0])}_test_scores"]
        # Records without a statement of the label set are not scored.
        assert 0 < test_scores.shape[0] <= 245
        assert "simclr pretrained, finetune - scratch | " in differences
        assert "simclr pretrained, frozen - random init | " in differences
    assert (
        "Command: `KERAS_BACKEND=tensorflow python benchmarks/reproduce_ptbxl.py"
        in table
    )
    assert "--train-folds 1 " in table and "--test-folds 9" in table


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_train_throughput_reports_speed_and_memory_per_spec(tmp_path):
    out = tmp_path / "rows.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "train_throughput.py")]
    command += ["--methods", "simclr:s4", "jepa", "--size", "tiny"]
    command += ["--batch-size", "4", "--steps", "2", "--warmup-steps", "1"]
    command += ["--json", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "one process each" in process.stdout
    rows = json.loads(out.read_text())
    assert [(r["method"], r["encoder"]) for r in rows] == [
        ("simclr", "s4"),
        ("jepa", "transformer"),
    ]
    for row in rows:
        assert row["steps_per_s"] > 0 and row["samples_per_s"] == pytest.approx(
            4 * row["steps_per_s"]
        )
        # Its own process: the peak includes the imports, and training adds.
        assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 50


def test_method_specs_name_their_encoder():
    common = _benchmark_module("ptbxl_protocol")

    assert common.parse_spec("cpc") == ("cpc", "lstm")
    assert common.parse_spec("cpc:s4") == ("cpc", "s4")
    assert common.parse_spec("jepa") == ("jepa", "transformer")
    assert [common.spec_label(s) for s in ("cpc", "cpc:s4", "simclr:s4")] == [
        "cpc",
        "s4-cpc",
        "s4-simclr",
    ]
    # Baselines per architecture: S4 SimCLR and S4 BYOL share one, S4-CPC
    # has its own (CPC's encoder in front of the S4 context).
    assert common.architecture("byol:s4") == common.architecture("simclr:s4")
    assert common.architecture("cpc:s4") == ("cpc encoder + s4 context", "cpc:s4")
    assert common.architecture("swav") == ("xresnet1d", "simclr")
    with pytest.raises(ValueError, match="does not fit method 'cpc'"):
        common.parse_spec("cpc:xresnet1d")
    args = argparse.Namespace(cpc_batch_size=32, batch_size=128)
    assert common.pretrain_batch_size(args, "cpc:s4") == 32


# --- reference_speed.py, torch_reference.py, gpu_readiness.py --------------
# The plain-PyTorch reference models are checked against keras-ecg's paper
# architecture by parameter count (an independent check of every layer's
# shape) and against hand-written formulas; the two scripts run end to end at
# tiny settings under the active backend.

BENCHMARKS = os.path.join(ROOT, "benchmarks")


def _benchmark_module(name):
    import importlib

    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    return importlib.import_module(name)


def _keras_count(weights):
    import numpy as np

    return sum(int(np.prod(w.shape)) for w in weights)


def test_torch_reference_xresnet1d50_has_keras_paper_encoder_shapes():
    ref = _benchmark_module("torch_reference")
    from keras_ecg.models.method_factory import build_encoder

    encoder = build_encoder("paper")
    torch_encoder = ref.XResNet1d(stem_bias=False)
    trainable = _keras_count(encoder.trainable_weights)
    assert ref.count_parameters(torch_encoder) == trainable
    # Keras counts BN moving statistics; torch keeps them as buffers.
    assert ref.count_parameters(torch_encoder, running_stats=True) == (
        encoder.count_params()
    )
    # The reference's SimCLR stem conv carries a bias: 32 more parameters.
    with_bias = ref.XResNet1d(stem_bias=True)
    assert ref.count_parameters(with_bias) == trainable + 32
    assert torch_encoder.output_dim == encoder.output_dim == 512


def test_torch_reference_cpc_has_keras_paper_cpc_shapes():
    ref = _benchmark_module("torch_reference")
    from keras_ecg.models.method_factory import build_method

    model = build_method("cpc", size="paper")
    model.build((None, 50, 12))
    torch_model = ref.CPCReference()
    assert ref.count_parameters(torch_model.encoder, running_stats=True) == (
        model.encoder.count_params()
    )
    # torch's LSTM has a second bias vector (bias_hh) per layer, Keras one.
    second_bias = ref.lstm_second_bias_count(torch_model.rnn)
    assert second_bias == 2 * 4 * 512
    assert ref.count_parameters(torch_model.rnn) - second_bias == (
        model.context.count_params()
    )
    # One bias-free 512 -> 512 map per predicted step.
    assert ref.count_parameters(torch_model.proj) * len(model.steps) == (
        model.predictor.count_params()
    )


def test_torch_reference_projection_head_shapes():
    ref = _benchmark_module("torch_reference")
    from keras_ecg.models.method_factory import build_method

    head = build_method("simclr", size="paper").projection_head
    head.build((None, 512))
    torch_head = ref.ProjectionHead(
        512, head.hidden_dims[0], head.output_dim, batch_norm=head.use_batch_norm
    )
    assert ref.count_parameters(torch_head) == _keras_count(head.trainable_weights)
    # The reference's own head: 512 -> 512 -> ReLU -> 16, biases, no BN.
    reference_head = ref.ProjectionHead(512, **ref.PAPER_HEAD)
    assert ref.count_parameters(reference_head) == 512 * 512 + 512 + 512 * 16 + 16


def test_torch_reference_nt_xent_matches_numpy():
    import numpy as np
    import torch

    ref = _benchmark_module("torch_reference")
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 3, 5))
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / 0.5
    expected = []
    for i in range(6):
        positive = (i + 3) % 6
        others = [sim[i, j] for j in range(6) if j != i]
        expected.append(np.log(np.sum(np.exp(others))) - sim[i, positive])
    loss = ref.nt_xent(torch.tensor(z1), torch.tensor(z2), temperature=0.5)
    np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-6)


def test_torch_reference_cpc_loss_matches_numpy_loop():
    import numpy as np
    import torch

    ref = _benchmark_module("torch_reference")
    torch.manual_seed(0)
    model = ref.CPCReference(
        filters=(6, 6),
        kernel_sizes=1,
        strides=1,
        units=5,
        num_layers=1,
        prediction_step=2,
        num_negatives=3,
    )
    x = torch.randn(2, 12, 9)
    losses = {}
    for scoring in ("gather", "matrix"):
        model.scoring = scoring
        torch.manual_seed(7)
        losses[scoring] = model(x).detach().item()
    # The reference's per-position loop, with the same negative draws.
    with torch.no_grad():
        z = model.encoder(x).transpose(1, 2).numpy()
        context, _ = model.rnn(torch.from_numpy(z))
        p = model.proj(context).numpy()
    torch.manual_seed(7)
    idx = torch.randint(0, 8, (2, 7, 3)).numpy()
    terms = []
    for b in range(2):
        for t in range(7):
            positive = t + 2
            negatives = [i + (i >= positive) for i in idx[b, t]]
            assert positive not in negatives
            scores = [p[b, t] @ z[b, positive]] + [p[b, t] @ z[b, n] for n in negatives]
            terms.append(np.log(np.sum(np.exp(scores))) - scores[0])
    np.testing.assert_allclose(losses["gather"], np.mean(terms), rtol=1e-5)
    np.testing.assert_allclose(losses["matrix"], np.mean(terms), rtol=1e-5)


def _byol_online_and_target(model):
    """keras-ecg BYOL's online (with predictor) and target network weights."""
    online = model.online_weights + model.prediction_head.weights
    return online, model.target_weights


def test_torch_reference_byol_has_keras_paper_byol_shapes():
    ref = _benchmark_module("torch_reference")
    from keras_ecg.models.method_factory import build_method

    model = build_method("byol", size="paper")
    model.build((None, 250, 12))
    torch_model = ref.BYOLReference(ref.XResNet1d(stem_bias=False))
    # Trainable: the online encoder, projector and predictor only.
    trainable = _keras_count(model.trainable_weights)
    assert ref.count_parameters(torch_model) == trainable
    # The projector / predictor: 512 -> 512 (no bias) -> BN -> ReLU -> 16.
    head = ref.count_parameters(torch_model.projector)
    assert head == 512 * 512 + 2 * 512 + 512 * 16 + 16
    assert ref.count_parameters(torch_model.predictor) == head - 496 * 512
    # Online + target, with BN statistics, against keras-ecg's variables of
    # both networks (not its three scalar schedule / sync variables).
    online, target = _byol_online_and_target(model)
    everything = sum(p.numel() for p in torch_model.parameters()) + sum(
        b.numel()
        for name, b in torch_model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    assert everything == _keras_count(online) + _keras_count(target)
    # The target: encoder + projector, all parameters frozen.
    frozen = sum(p.numel() for p in torch_model.parameters() if not p.requires_grad)
    assert frozen == _keras_count([w for w in target if "moving" not in w.path])
    # The reference's encoder (ResNetSimCLR's stem conv with a bias): 32 more
    # per network.
    with_bias = ref.BYOLReference(ref.XResNet1d(stem_bias=True))
    assert ref.count_parameters(with_bias) == trainable + 32


def test_torch_reference_swav_has_keras_paper_swav_shapes():
    ref = _benchmark_module("torch_reference")
    from keras_ecg.models.method_factory import build_method

    model = build_method("swav", size="paper")
    model.build((None, 250, 12))
    torch_model = ref.SwAVReference(ref.XResNet1d(stem_bias=False))
    assert tuple(torch_model.prototypes.shape) == (3000, 128)
    assert ref.count_parameters(torch_model.projector) == (
        512 * 2048 + 2048 + 2 * 2048 + 2048 * 128 + 128
    )
    trainable = _keras_count(model.trainable_weights)
    assert ref.count_parameters(torch_model) == trainable
    # Plus BN statistics: every keras-ecg variable but the step counter.
    assert ref.count_parameters(torch_model, running_stats=True) == (
        _keras_count(
            w for w in model.weights if w.path != model.train_step_counter.path
        )
    )
    with_bias = ref.SwAVReference(ref.XResNet1d(stem_bias=True))
    assert ref.count_parameters(with_bias) == trainable + 32


def test_torch_reference_byol_loss_and_target_update_match_numpy():
    import numpy as np
    import torch

    ref = _benchmark_module("torch_reference")
    rng = np.random.default_rng(0)
    p1, p2, z1, z2 = rng.normal(size=(4, 3, 5))

    def regression(p, z):
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        return np.mean([2 - 2 * p[i] @ z[i] for i in range(3)])

    expected = regression(p1, z2) + regression(p2, z1)
    tensors = [torch.tensor(a) for a in (p1, p2, z1, z2)]
    loss = ref.byol_loss(*tensors)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    from keras_ecg.losses.byol_loss import byol_loss

    keras_loss = byol_loss(*(a.astype("float32") for a in (p1, p2, z1, z2)))
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(keras_loss)), expected, rtol=1e-5
    )

    # The EMA on keras-ecg's cosine schedule, over parameters, not buffers.
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    projector = ref.ProjectionHead(6, 8, 3, batch_norm=True, hidden_bias=False)
    predictor = ref.ProjectionHead(3, 8, 3, batch_norm=True, hidden_bias=False)
    model = ref.BYOLReference(encoder, projector, predictor, tau=0.9, total_steps=4)
    model.step = 1
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
        model.target_encoder[1].running_mean.fill_(0.25)
    online = [p.detach().numpy().copy() for p in model._online_parameters()]
    target = [p.detach().numpy().copy() for p in model._target_parameters()]
    model.update_target()
    tau = 1 - (1 - 0.9) * (np.cos(np.pi * 1 / 4) + 1) / 2
    for o, t, new in zip(online, target, model._target_parameters(), strict=True):
        np.testing.assert_allclose(
            new.detach().numpy(), tau * t + (1 - tau) * o, rtol=1e-6, atol=1e-7
        )
    assert model.step == 2
    assert float(model.target_encoder[1].running_mean[0]) == 0.25
    assert not any(p.requires_grad for p in model._target_parameters())


def _numpy_sinkhorn(scores, epsilon, iterations):
    q = np.exp(scores / epsilon).T  # (K, B)
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


def test_torch_reference_sinkhorn_and_swav_loss_match_numpy():
    import torch

    ref = _benchmark_module("torch_reference")
    rng = np.random.default_rng(1)
    s1, s2 = np.tanh(rng.normal(size=(2, 6, 4)))  # cosine-like scores
    codes = ref.sinkhorn_knopp(torch.tensor(s1), epsilon=0.5, num_iterations=3)
    expected_codes = _numpy_sinkhorn(s1, 0.5, 3)
    np.testing.assert_allclose(codes.numpy(), expected_codes, rtol=1e-5)
    np.testing.assert_allclose(codes.numpy().sum(1), 1.0, rtol=1e-5)

    def log_softmax(x):
        return x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))

    q1, q2 = (_numpy_sinkhorn(s, 0.5, 3) for s in (s1, s2))
    cross_1 = -np.mean(np.sum(q1 * log_softmax(s2 / 0.2), axis=1))
    cross_2 = -np.mean(np.sum(q2 * log_softmax(s1 / 0.2), axis=1))
    scores = [torch.tensor(s, requires_grad=True) for s in (s1, s2)]
    loss = ref.swav_loss(scores, temperature=0.2, epsilon=0.5, iterations=3)
    np.testing.assert_allclose(float(loss.detach()), (cross_1 + cross_2) / 2, rtol=1e-5)
    # keras-ecg's log-domain Sinkhorn gives the same codes.
    from keras_ecg.losses.swav_loss import sinkhorn_knopp

    keras_codes = sinkhorn_knopp(s1.astype("float32"), 0.5, 3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras_codes), expected_codes, rtol=1e-4
    )
    # The codes are targets: the gradient reaches the scores only through
    # the softmax, sum_k grad = 0 per sample.
    loss.backward()
    np.testing.assert_allclose(scores[0].grad.numpy().sum(1), 0.0, atol=1e-6)


def test_torch_reference_swav_scores_use_normalised_prototypes():
    import torch

    ref = _benchmark_module("torch_reference")
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 6)
    projector = ref.ProjectionHead(6, 8, 5, batch_norm=True)
    model = ref.SwAVReference(
        encoder, projector, num_prototypes=7, temperature=0.3, epsilon=0.4
    )
    with torch.no_grad():
        model.prototypes.mul_(3.0)  # not unit-norm any more
    views = [torch.randn(3, 4), torch.randn(3, 4)]
    loss = model(*views)
    with torch.no_grad():
        # One pass over both views (batch statistics over 6 rows).
        z = projector(encoder(torch.cat(views))).numpy()
        prototypes = model.prototypes.numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    prototypes = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
    s1, s2 = np.split(z @ prototypes.T, 2)

    def log_softmax(x):
        return x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))

    q1, q2 = (_numpy_sinkhorn(s, 0.4, 3) for s in (s1, s2))
    expected = -np.mean(np.sum(q1 * log_softmax(s2 / 0.3), axis=1)) / 2
    expected -= np.mean(np.sum(q2 * log_softmax(s1 / 0.3), axis=1)) / 2
    np.testing.assert_allclose(float(loss.detach()), expected, rtol=1e-5)


@pytest.mark.parametrize("length", [250, 251])
def test_xresnet_flop_count_matches_torch_flop_counter(length):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    ref = _benchmark_module("torch_reference")
    readiness = _benchmark_module("gpu_readiness")
    from keras_ecg.models.method_factory import build_encoder

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ref.XResNet1d(stem_bias=False).eval()(torch.zeros(2, 12, length))
    analytic = readiness.xresnet_forward_flops(build_encoder("paper"), length, 2)
    assert analytic == counter.get_total_flops()


@pytest.mark.backend_agnostic
def test_gpu_readiness_peak_table():
    readiness = _benchmark_module("gpu_readiness")
    assert readiness.peak_tflops("NVIDIA H200")["bf16"] == 989.0
    assert readiness.peak_tflops("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert readiness.peak_tflops("NVIDIA H100 80GB HBM3")["bf16"] == 989.0
    assert readiness.peak_tflops("NVIDIA A100-SXM4-80GB")["fp32"] == 19.5
    assert readiness.peak_tflops("AMD EPYC") is None


def test_reference_speed_tiny_run_reports_ratios(tmp_path):
    backend = keras.backend.backend()
    out = tmp_path / "speed.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "reference_speed.py")]
    # One work through the driver (the BYOL/SwAV workers are checked
    # in-process below, which is faster than another pair of processes).
    command += ["--size", "tiny", "--works", "cpc", "--cpc-batch", "2"]
    command += ["--steps", "1", "--warmup", "0", "--repeats", "2", "--threads", "1"]
    command += ["--keras-path", "train_on_batch", "--cpc-scoring", "matrix"]
    command += ["--cpc-predict-all-steps", "no", "--json", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    text = process.stdout
    assert "machine: " in text and "load average before: (" in text
    assert "1 thread(s) per contender, pinned" in text
    assert "keras-ecg via train_on_batch; PyTorch CPC scoring matrix" in text
    assert "predict_all_steps no" in text
    result = json.loads(out.read_text())
    assert [row["work"] for row in result["rows"]] == ["cpc"] * 2
    rows = {row["contender"]: row for row in result["rows"]}
    assert set(rows) == {"torch eager", f"keras-ecg {backend}"}
    eager, keras_row = rows["torch eager"], rows[f"keras-ecg {backend}"]
    assert eager["ratios_vs_torch_eager"] == [1.0, 1.0]
    assert len(keras_row["ratios_vs_torch_eager"]) == 2
    assert eager["cpu_time_ratios_vs_torch_eager"] == [1.0, 1.0]
    cpu = keras_row["cpu_seconds"]
    assert len(cpu) == 2 and min(cpu) > 0
    expected = [a / b for a, b in zip(eager["cpu_seconds"], cpu, strict=True)]
    assert keras_row["cpu_time_ratios_vs_torch_eager"] == expected
    assert keras_row["median_ratio"] > 0 and keras_row["peak_rss_bytes"] > 0
    # predict_all_steps=no: one 16 -> 16 predictor, as the reference; only
    # torch's second LSTM bias (4 x 16) differs.
    assert keras_row["params"] == eager["params"] - 4 * 16
    assert f"keras-ecg {backend}" in text


@pytest.mark.parametrize("work", ["byol", "swav"])
def test_reference_speed_tiny_byol_swav_workers(work):
    # The workers' setup and step in this process (starting four worker
    # processes would take a minute); the CLI run below covers the driver.
    speed = _benchmark_module("reference_speed")
    spec = {
        "work": work,
        "size": "tiny",
        "batch": 3,
        "steps": 1,
        "threads": None,
        "keras_path": "fit",
        "contender": "torch eager",
    }
    torch_run, torch_params = speed._torch_work(spec)
    keras_run, keras_params = speed._keras_work(dict(spec, contender="keras-ecg"))
    torch_run(1)
    keras_run(1)
    # Same trainable parameters but the reference's stem conv bias (8 filters
    # in the tiny stem); BYOL counts the online network only on both sides.
    assert keras_params == torch_params - 8
    assert "2 views of 64 x 12, batch 3" in speed.describe_work(work, "tiny", 3)
    # The CLI run below times `byol` with --byol-batch; --swav-batch parses
    # the same way.
    flag = f"--{work}-batch"
    assert getattr(speed.parse_args([flag, "5"]), f"{work}_batch") == 5
    assert getattr(speed.parse_args([]), f"{work}_batch") == 64
    with pytest.raises(SystemExit):
        speed.parse_args([flag, "0"])


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="the GPU machines' image has no TensorFlow: the JAX and torch passes "
    "run the GPU script",
)
def test_gpu_readiness_tiny_run_reports_fields(tmp_path):
    backend = keras.backend.backend()
    out = tmp_path / "gpu.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "gpu_readiness.py")]
    # One method keeps it short (every run compiles its step); the FLOP
    # counts are checked above, every method by the GPU runs.
    command += ["--tiny", "--backends", backend, "--methods", "simclr"]
    command += ["--precisions", "float32", "mixed_bfloat16", "--output", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert "2 runs ok, 0 failed" in process.stdout
    assert f"backend {backend}: device " in process.stdout
    result = json.loads(out.read_text())
    assert result["devices"][backend]["device_kind"] == "cpu"
    assert result["devices"][backend]["peaks"] is None
    rows = result["rows"]
    assert [(r["method"], r["precision"]) for r in rows] == [
        ("simclr", "float32"),
        ("simclr", "mixed_bfloat16"),
    ]
    for row in rows:
        assert row["status"] == "ok" and row["backend"] == backend
        assert row["steps"] == 2 and row["loss_is_finite"]
        assert row["steps_per_s"] > 0
        assert row["samples_per_s"] == pytest.approx(
            row["steps_per_s"] * row["batch_size"]
        )
        assert row["peak_memory_bytes"] > 0
        assert row["peak_memory_how"] == "peak RSS (process)"
        assert row["train_flops_per_step"] > 0
        assert row["input_shape"] == [128, 12]  # --tiny: 1.28 s at 100 Hz


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="one backend pass runs the multi-process GPU script's smoke test",
)
def test_gpu_readiness_multi_process_mode_reports_efficiency(tmp_path):
    out = tmp_path / "gpu2.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "gpu_readiness.py")]
    command += ["--tiny", "--backends", "torch", "--methods", "simclr"]
    command += ["--precisions", "float32", "--processes", "2", "--output", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert "multi-GPU mode: 2 processes" in process.stdout
    assert "2 runs ok, 0 failed" in process.stdout
    one, two = json.loads(out.read_text())["rows"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["batch_per_process"] == two["batch_per_process"] == 4
    assert two["samples_per_s"] == pytest.approx(2 * 4 / two["step_s"])
    assert two["efficiency"] == pytest.approx(
        two["samples_per_s"] / (2 * one["samples_per_s"])
    )
    # The torch job's collectives were logged: the gradient all-reduce.
    assert two["collectives"]["all_reduce"]["bytes"] >= 4 * two["trainable_params"]


def test_cpc_flop_count_hand_computed():
    readiness = _benchmark_module("gpu_readiness")
    from keras_ecg.models.cpc import CPC
    from keras_ecg.models.encoders.cpc_encoder import CPCContext
    from keras_ecg.models.encoders.cpc_encoder import CPCEncoder

    model = CPC(
        CPCEncoder((4, 4)),
        CPCContext(3, 1),
        prediction_steps=2,
        num_negatives=2,
        predict_all_steps=False,
        scoring="gather",
        seed=0,
    )
    model.build((None, 10, 12))
    encoder = 2 * 10 * (12 * 4 + 4 * 4)  # two per-timestep layers
    lstm = 2 * 10 * 4 * 3 * (4 + 3)  # four gates, input + recurrent
    predictor = 2 * 10 * 3 * 4
    scores = 2 * 8 * (2 + 1) * 4  # 8 positions x (positive + 2 negatives)
    expected = encoder + lstm + predictor + scores
    assert readiness.cpc_forward_flops(model, 10, batch=3) == 3 * expected
    assert readiness.training_flops("cpc", model, 3, 10) == 3 * 3 * expected


def test_jepa_flop_count_hand_computed():
    readiness = _benchmark_module("gpu_readiness")
    from keras_ecg.layers.jepa_predictor import JEPAPredictor
    from keras_ecg.models.encoders.ecg_transformer import ECGTransformer
    from keras_ecg.models.jepa import JEPA

    model = JEPA(
        ECGTransformer(patch_size=2, hidden_dim=4, num_layers=1, num_heads=2),
        JEPAPredictor(hidden_dim=2, num_layers=1, num_heads=1),
        min_block_size=1,
        seed=0,
    )
    model.build((None, 8, 12))
    # 4 tokens: 1 context slot (ceil(0.25 * 4)), 3 target slots.
    embed = 2 * 4 * (2 * 12) * 4  # every token, 24 inputs -> width 4

    def block(tokens, width):  # qkv + output + MLP (ratio 4), attention
        return 2 * tokens * ((3 + 1 + 8) * width * width + 2 * tokens * width)

    context = embed + block(1 + 1, 4)  # + the register
    target = embed + block(4 + 1, 4)
    predictor = 2 * 1 * 4 * 2 + block(1 + 3, 2) + 2 * 3 * 2 * 4
    expected = 3 * (3 * (context + predictor) + target)  # batch 3
    assert readiness.training_flops("jepa", model, 3, 8) == expected


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_cache_build_runs_and_reports(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "cache_build.py")]
    command += ["--sizes", "40", "--old-sizes", "--batches", "1"]
    command += ["--batch-size", "8", "--workers", "2", "--workdir", str(tmp_path)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    out = process.stdout
    assert "2 decoding worker process(es)" in out
    assert "10 s x 12 leads at 500 Hz" in out
    rows = [line for line in out.splitlines() if line.startswith("| new | 40 |")]
    assert len(rows) == 2, out  # once after the run, once in the final table
    assert len(list((tmp_path / "records").glob("*.hea"))) == 40
    assert not list(tmp_path.glob("cache_*"))  # the caches are removed after


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_pretrain_scale_runs_and_reports_paired_gains(ptbxl_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(BENCHMARKS, "pretrain_scale_ptbxl.py")]
    command += ["--size", "tiny", "--seeds", "1", "--eval-epochs", "1"]
    command += ["--methods", "jepa", "--points", "1:1", "0.5:2"]
    command += ["--train-folds", "1", "--data", str(ptbxl_dir), "--output", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = json.loads((out / "results.json").read_text())
    # Baselines (random init, scratch), then two points x two protocols.
    assert len(rows) == 6
    base = {r["protocol"]: r["test_macro_auc"] for r in rows if "architecture" in r}
    assert set(base) == {"linear", "scratch"}
    lines = [line for line in table.splitlines() if line.startswith("| jepa |")]
    assert len(lines) == 2, table
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        fraction = 0.5 if "(0.5)" in cells[1] else 1.0
        pretrained = [r for r in rows if r.get("fraction") == fraction and "spec" in r]
        auc = {r["protocol"]: r["test_macro_auc"] for r in pretrained}
        # Steps: full batches of min(128, records) records per epoch.
        records = pretrained[0]["records"]
        assert int(cells[3]) == pretrained[0]["epochs"] * (records // min(128, records))
        assert float(cells[4]) == pytest.approx(auc["linear"], abs=1e-4)
        assert float(cells[5]) == pytest.approx(
            auc["linear"] - base["linear"], abs=2e-4
        )
        assert float(cells[7]) == pytest.approx(
            auc["finetune"] - base["scratch"], abs=2e-4
        )
    assert "--points 1:1 0.5:2" in table and "--train-folds 1" in table
    # Nested data fractions: half of fold 1's records.
    assert rows[-1]["records"] == round(0.5 * rows[2]["records"])
    # Paired differences: each point against its baseline (2 x 2), the later
    # point against the first (x 2 protocols).
    differences = [line for line in table.splitlines() if " - " in line]
    assert len(differences) == 6, table
    assert "| jepa 0.5:2 - jepa 1:1, finetune |" in table
    # --from-results rebuilds the same table from results.json + scores.npz.
    again = subprocess.run(
        [*command, "--from-results", str(out), "--output", str(tmp_path / "again")],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rebuilt = (tmp_path / "again" / "results.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("|")]
    assert [line for line in rebuilt.splitlines() if line.startswith("|")] == body


@pytest.mark.backend_agnostic
def test_pretrain_scale_points_parse_and_refuse_bad_input():
    scale = _benchmark_module("pretrain_scale_ptbxl")
    assert scale.parse_point("0.25:80") == (0.25, 80, None)
    assert scale.parse_point("1:150@jepa,cpc") == (1.0, 150, ("jepa", "cpc"))
    for bad in ("1", "0:20", "1.5:20", "1:0", "a:b"):
        with pytest.raises(ValueError, match="fraction:epochs"):
            scale.parse_point(bad)
    assert scale.paired_gains(
        [{"seed": 0, "test_macro_auc": 0.8}, {"seed": 1, "test_macro_auc": 0.7}],
        [{"seed": 0, "test_macro_auc": 0.75}],
    ) == pytest.approx([0.05])
    assert scale.signed([0.01, 0.03]) == "+0.0200 ± 0.0141"


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_scratch_variants_trains_each_variant_and_reports(ptbxl_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, os.path.join(BENCHMARKS, "scratch_variants_ptbxl.py")]
    command += ["--size", "tiny", "--seeds", "1", "--eval-epochs", "1"]
    command += ["--encoder", "s4", "--variants", "{}", '{"dropout": 0.0}']
    command += ["--train-folds", "1", "--data", str(ptbxl_dir), "--output", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in rows] == [{}, {"dropout": 0.0}]
    table = (out / "results.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| s4 (")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| s4 (the configuration)",
        "| s4 (dropout=0.0)",
    ]
    for line, row in zip(lines, rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[3]) == pytest.approx(row["test_macro_auc"], abs=1e-4)
    # tiny S4 has dropout 0.1: the same weights count, the variant is what ran.
    assert rows[0]["parameters"] == rows[1]["parameters"]
    assert '--variants {} {"dropout": 0.0}' in table


@pytest.mark.backend_agnostic
def test_scratch_variants_refuse_what_is_not_a_json_object():
    variants = _benchmark_module("scratch_variants_ptbxl")
    assert variants.parse_variant('{"d_model": 128}') == {"d_model": 128}
    for bad in ("dropout=0.2", "[1, 2]"):
        with pytest.raises(ValueError, match="variant"):
            variants.parse_variant(bad)


@pytest.mark.backend_agnostic
def test_bootstrap_coverage_reports_every_interval_method(tmp_path):
    out = tmp_path / "coverage.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "bootstrap_coverage.py")]
    command += ["--replications", "2", "--resamples", "30", "--json", str(out)]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Measured " in process.stdout and "usable cores" in process.stdout
    summary = json.loads(out.read_text())["summary"]
    methods = {(row["interval"], row["resampling"]) for row in summary}
    assert {("percentile", "all"), ("basic", "all"), ("bca", "all")} <= methods
    for row in summary:
        for metric in ("macro_auroc", "macro_auprc"):
            cell = row[metric]
            # Two replications: a coverage is 0, 1/2 or 1, and a miss is
            # either below or above the truth.
            assert cell["coverage"] in (0.0, 0.5, 1.0)
            assert cell["coverage"] + cell["interval_below_truth"] + cell[
                "interval_above_truth"
            ] == pytest.approx(1.0)
            assert cell["width"] > 0


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmark scripts run in the tensorflow pass only",
)
def test_ram_load_memory_runs_and_reports():
    command = [sys.executable, os.path.join(BENCHMARKS, "ram_load_memory.py")]
    command += ["--records", "4", "--seconds", "1", "--workers", "1"]
    process = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.splitlines()
    assert lines[0].startswith("4 records x 1 s x 12 leads at 500 Hz")
    assert lines[1].startswith("in RAM, workers=1: anonymous memory")
    assert lines[2].startswith("cache, workers=1: anonymous memory")
