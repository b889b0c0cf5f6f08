"""The scaling model's arithmetic against hand-computed cases (no Keras)."""

import json
import os
import sys
from dataclasses import replace

import pytest

BENCHMARKS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "benchmarks",
)
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import scaling_localhost  # noqa: E402
import scaling_model as sm  # noqa: E402

pytestmark = pytest.mark.backend_agnostic


def test_ring_all_reduce_wire_bytes():
    assert sm.ring_all_reduce_wire_bytes(1000, 1) == 0
    assert sm.ring_all_reduce_wire_bytes(1000, 2) == 1000  # N=2: the buffer
    assert sm.ring_all_reduce_wire_bytes(1000, 4) == 1500  # 2 * 3/4
    assert sm.ring_all_gather_wire_bytes(1000, 1) == 0
    assert sm.ring_all_gather_wire_bytes(1000, 4) == 750


def test_ring_time_alpha_and_beta():
    # 2(N-1) ring steps of alpha, 2(N-1)/N of the buffer at the bus bandwidth.
    assert sm.ring_time("all_reduce", 1e6, 1, 1e-3, 1e9) == 0
    assert sm.ring_time("all_reduce", 1e6, 2, 1e-3, 1e9) == pytest.approx(2e-3 + 1e-3)
    assert sm.ring_time("all_gather", 4e6, 4, 1e-3, 1e9) == pytest.approx(3e-3 + 3e-3)


def test_gradient_bytes_are_four_per_trainable_parameter():
    for method, config in sm.PAPER.items():
        counts = sm.bytes_per_step(config, 8)
        assert counts["gradients"] == 4 * config.trainable_params, method
        assert sm.bytes_per_step(config, 1) == {
            "gradients": 0,
            "gathers": 0,
            "buffer": 0,
            "wire": 0,
        }


def test_simclr_gathers_hand_computed():
    config = sm.PAPER["simclr"]
    ops = sm.step_collectives(config, 2, batch=64, torch=False)
    gathered = 4 * 2 * 64 * 16  # float32, 2 processes x 64 rows x 16
    assert ops == [
        ("all_reduce", 4 * 1_157_264),
        ("all_gather", gathered),
        ("all_reduce", gathered),  # its backward, per view
        ("all_gather", gathered),
        ("all_reduce", gathered),
    ]
    # BYOL gathers nothing; the torch step adds its two small exchanges.
    assert sm.step_collectives(sm.PAPER["byol"], 2, torch=False) == [
        ("all_reduce", 4 * 1_175_200)
    ]
    assert len(sm.step_collectives(sm.PAPER["byol"], 2)) == 3


def test_synchronized_batch_norm_adds_two_all_reduces_per_layer():
    config = replace(sm.PAPER["cpc"], batch_norm_layers=4, batch_norm_channels=2048)
    plain = sm.step_collectives(config, 2, torch=False)
    synced = sm.step_collectives(config, 2, torch=False, synchronized_batch_norm=True)
    extra = synced[len(plain) :]
    assert len(extra) == 8
    assert sum(b for _, b in extra) == 2 * 4 * 3 * 2048


def test_hierarchical_all_reduce_hand_computed():
    hw = sm.Hardware(
        intra_alpha_s=0.0,
        inter_alpha_s=0.0,
        intra_bus_bytes_per_s=100.0,
        inter_bus_bytes_per_s=10.0,
        gpus_per_host=2,
    )
    # One host: a ring over NVLink.
    assert sm.collective_time("all_reduce", 100.0, 2, hw) == pytest.approx(1.0)
    # 2 hosts x 2 GPUs: reduce-scatter + all-gather inside (2 x 1/2 x 100 /
    # 100) and an all-reduce of 50 bytes over 2 hosts (50 / 10).
    assert sm.collective_time("all_reduce", 100.0, 4, hw) == pytest.approx(6.0)


def test_prediction_compute_and_weak_scaling():
    hw = sm.Hardware(mfu=0.5, peak_flops=1e12)
    config = sm.MethodConfig(1000, 1e9, 10, 250, 2)
    one = sm.predict("byol", 1, hw, config)
    assert one.compute_s == pytest.approx(1e10 / 5e11)
    assert one.step_s == one.compute_s and one.efficiency == 1.0
    eight = sm.predict("byol", 8, hw, config)
    assert eight.step_s > one.step_s and 0 < eight.efficiency < 1
    assert eight.samples_per_s == pytest.approx(80 / eight.step_s)
    # Overlap hides the gradient all-reduce behind the backward pass.
    assert eight.step_overlap_s <= eight.step_s
    # 800k records, global batch 80: 10,000 steps.
    assert sm.epoch_seconds(eight) == pytest.approx(10_000 * eight.step_s)


def test_record_bytes():
    assert sm.record_bytes() == 10 * 500 * 12 * 2  # int16
    assert sm.record_bytes(dtype_bytes=4) == 240_000


def test_localhost_prediction_oversubscribes_two_cores():
    # 4 one-thread processes on 2 idle cores: compute twice the 1-process step.
    step, compute, comm = sm.localhost_prediction(0.1, [], 4, 1e-4, 1e9, cores=2)
    assert compute == pytest.approx(0.2) and comm == 0 and step == compute
    step, compute, _ = sm.localhost_prediction(0.1, [], 2, 1e-4, 1e9, cores=2)
    assert compute == pytest.approx(0.1)
    # With 2 other runnable threads, 1 process gets a full core, 2 get 1/2.
    _, compute, _ = sm.localhost_prediction(
        0.1, [], 2, 0, 1e9, cores=2, load_one=1.0, load_n=2.0
    )
    assert compute == pytest.approx(0.2)


def test_check_localhost_uses_measured_collectives(tmp_path):
    result = {
        "alpha_s": 1e-4,
        "beta_bytes_per_s": 1e9,
        "rows": [
            {
                "backend": "torch",
                "method": "byol",
                "processes": 1,
                "step_s": 0.1,
                "batch_per_process": 8,
                "trainable_params": 1000,
            },
            {
                "backend": "torch",
                "method": "byol",
                "processes": 2,
                "step_s": 0.2,
                "batch_per_process": 8,
                "trainable_params": 1000,
                "samples_per_s": 80.0,
                "collectives": {"all_reduce": {"calls": 1, "bytes": 1e6}},
            },
        ],
    }
    (row,) = sm.check_localhost(result, cores=2)
    # 0.1 s compute + 2 ring steps of alpha + 1 MB / 1 GB/s.
    assert row["predicted_step_s"] == pytest.approx(0.1 + 2e-4 + 1e-3)
    assert row["bytes"] == "measured"
    assert row["ratio"] == pytest.approx(0.2 / row["predicted_step_s"])
    assert "| torch | byol | 2 | measured |" in sm.check_table([row])


def test_fit_alpha_beta_recovers_the_parameters():
    alpha, beta = 2e-4, 5e8
    rows = [
        {
            "processes": n,
            "bytes": b,
            "seconds": 2 * (n - 1) * alpha + b * 2 * (n - 1) / n / beta,
        }
        for n in (2, 4)
        for b in (4096, 1 << 20, 16 << 20)
    ]
    fitted = sm.fit_alpha_beta(rows)
    assert fitted[0] == pytest.approx(alpha, rel=1e-6)
    assert fitted[1] == pytest.approx(beta, rel=1e-6)


def test_hlo_collectives_are_counted():
    text = "\n".join(
        [
            "  %all-reduce.1 = f32[128,4]{1,0} all-reduce(f32[128,4]{1,0} %p), "
            "replica_groups={{0,1}}, to_apply=%add",
            "  %ag = f32[8,16]{1,0} all-gather(f32[4,16]{1,0} %x), dimensions={0}",
            "  %ars = (f32[10]{0}, bf16[6]{0}) all-reduce-start(f32[10]{0} %a, "
            "bf16[6]{0} %b), to_apply=%add",
            "  %ard = (f32[10]{0}, bf16[6]{0}) all-reduce-done(%ars)",
            "  %add.2 = f32[4]{0} add(f32[4]{0} %u, f32[4]{0} %v)",
        ]
    )
    assert scaling_localhost.hlo_collectives(text) == {
        "all-gather": {"calls": 1, "bytes": 8 * 16 * 4},
        "all-reduce": {"calls": 2, "bytes": 128 * 4 * 4 + 10 * 4 + 6 * 2},
    }


def test_the_report_prints_every_table(capsys, tmp_path):
    path = tmp_path / "scaling.json"
    path.write_text(json.dumps({"alpha_s": 1e-4, "beta_bytes_per_s": 1e9, "rows": []}))
    assert sm.main(["--check", str(path)]) == 0
    out = capsys.readouterr().out
    for title in (
        "Bytes per step",
        "Communication per step",
        "Predictions",
        "Input pipeline need",
        "Localhost check",
    ):
        assert title in out
    assert out.count("| simclr |") >= 3


def test_hlo_ops_cost_other_collectives_as_gathers():
    ops = sm.hlo_ops(
        {
            "all-reduce": {"calls": 2, "bytes": 800},
            "collective-permute": {"calls": 1, "bytes": 64},
        }
    )
    assert ops == [("all_reduce", 400), ("all_reduce", 400), ("all_gather", 64)]
