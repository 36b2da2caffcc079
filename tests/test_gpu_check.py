"""tools/gpu_check.py on a CPU: a tiny run, its results file, and its FLOP count against a hand count.

The check itself is meant for a GPU (``make gpu-check``); here it runs a valid U-Net of
depth 3 with 4 base filters on 108-pixel tiles, two timed steps per setting and five
seconds of training, so that every part of it runs and writes its figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_check.py"
SIZE, DEPTH, FILTERS, BATCHES, STEPS = 108, 3, 4, (1, 2), 2


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_count(size, depth, base_filters, in_channels=1, n_classes=1):
    """Forward FLOPs of the valid U-Net, from its architecture alone (no Keras)."""

    def conv(out_side, kernel, c_in, c_out):  # 2 FLOPs per multiply-add
        return 2 * out_side**2 * kernel**2 * c_in * c_out

    total, side, channels = 0, size, in_channels
    for level in range(depth + 1):  # contracting path, then the bottleneck (no pooling after it)
        filters = base_filters * 2**level
        total += conv(side - 2, 3, channels, filters) + conv(side - 4, 3, filters, filters)
        side, channels = side - 4, filters
        if level < depth:
            side //= 2
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        side *= 2  # a 2x2, stride-2 up-convolution: each output pixel gets one tap per channel pair
        total += 2 * side**2 * channels * filters
        total += conv(side - 2, 3, 2 * filters, filters) + conv(side - 4, 3, filters, filters)
        side, channels = side - 4, filters
    return total + conv(side, 1, channels, n_classes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--size",
        str(SIZE),
        "--depth",
        str(DEPTH),
        "--base-filters",
        str(FILTERS),
        "--batches",
        *map(str, BATCHES),
        "--policies",
        "float32",
        "--xla",
        "off",
        "--steps",
        str(STEPS),
        "--warmup",
        "1",
        "--train-seconds",
        "5",
        "--workers",
        "1",
        "--no-tta",
        "--out",
        str(out),
    ]
    if not os.environ.get("UNET_TUTORIAL_DATA"):
        command.append("--synthetic")
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_flop_count_of_the_paper_network():
    # 572 -> 388, depth 4, 64 filters: about 301 GFLOP forward per image.
    from unet_tutorial import models

    forward, layers = load_gpu_check().conv_flops(models.unet())
    assert forward == hand_count(572, 4, 64) == 300_837_579_264
    assert len(layers) == 23  # the paper's 23: 18 3x3 convolutions, 4 up-convolutions, the 1x1 classifier


def test_peak_table_matches_device_names():
    gpu_check = load_gpu_check()
    expected = {
        "Tesla T4": ("Tesla T4", 8.1, None, 65.0),
        "Tesla V100-SXM2-16GB": ("V100 SXM2", 15.7, None, 125.0),
        "Tesla V100-PCIE-32GB": ("V100 PCIe", 14.0, None, 112.0),
        "NVIDIA A100-SXM4-40GB": ("A100", 19.5, 156.0, 312.0),
        "NVIDIA H100 80GB HBM3": ("H100 SXM", 67.0, 494.5, 989.5),
        "NVIDIA H100 PCIe": ("H100 PCIe", 51.0, 378.0, 756.5),
        "NVIDIA H200": ("H200 SXM", 67.0, 494.5, 989.5),
        "NVIDIA H200 NVL": ("H200 NVL", 60.0, 417.5, 835.5),
        "NVIDIA L4": ("L4", 30.3, 60.0, 121.0),
    }
    for name, (label, fp32, tf32, fp16) in expected.items():
        assert gpu_check.peak_tflops(name) == {
            "gpu": label,
            "fp32": fp32,
            "tf32": tf32,
            "fp16_bf16_tensor": fp16,
        }
    assert gpu_check.peak_tflops("NVIDIA L40S") is None
    assert gpu_check.peak_tflops(None) is None


def test_results_file_structure(tiny_run):
    results, _ = tiny_run
    for key in (
        "schema",
        "created",
        "machine",
        "versions",
        "settings",
        "peak_tflops",
        "model",
        "memory_estimates",
        "benchmarks",
        "training",
        "scores",
        "problems",
        "total_s",
    ):
        assert key in results, key
    assert results["problems"] == []
    assert results["machine"]["backend"] in ("tensorflow", "jax", "torch")
    assert results["versions"]["keras"] and results["versions"]["unet_tutorial"]
    assert results["settings"]["size"] == SIZE and results["settings"]["batches"] == list(BATCHES)


def test_flop_count_agrees_with_hand_count(tiny_run):
    results, _ = tiny_run
    model = results["model"]
    assert model["input"] == SIZE and model["output"] == 20
    assert model["forward_flops_per_image"] == hand_count(SIZE, DEPTH, FILTERS)
    assert model["train_flops_per_image"] == 3 * model["forward_flops_per_image"]
    assert model["flops_check"]["agrees"] is True
    kinds = [layer["kind"] for layer in model["conv_layers"]]
    assert kinds.count("Conv2DTranspose") == DEPTH and kinds.count("Conv2D") == 4 * DEPTH + 2 + 1


def test_benchmark_rows_are_sane(tiny_run):
    results, _ = tiny_run
    rows = results["benchmarks"]
    assert [(row["policy"], row["xla"], row["batch"]) for row in rows] == [
        ("float32", False, b) for b in BATCHES
    ]
    for row in rows:
        assert row["status"] == "ok", row
        assert len(row["times_s"]) == STEPS and all(t > 0 for t in row["times_s"])
        assert min(row["times_s"]) <= row["median_s"] <= max(row["times_s"])
        assert row["first_step_s"] > 0 and row["finite_loss"]
        assert row["train_flops_per_step"] == row["batch"] * results["model"]["train_flops_per_image"]
        assert row["tflops"] == pytest.approx(row["train_flops_per_step"] / row["median_s"] / 1e12)
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["median_s"])
        assert row["peak_memory_bytes"] is None  # a CPU: n/a
        assert row["peak_fraction"] is None and row["memory_ratio"] is None
        estimate = results["memory_estimates"][f"float32/{row['batch']}"]
        assert row["estimate_bytes"] == estimate["total_bytes"] > 0
    small, large = (results["memory_estimates"][f"float32/{b}"] for b in BATCHES)
    assert large["activation_bytes"] == 2 * small["activation_bytes"]
    assert large["parameter_bytes"] == small["parameter_bytes"]


def test_training_and_scores(tiny_run):
    results, _ = tiny_run
    train, scores = results["training"], results["scores"]
    assert train["profile"] == "gpu" and train["tile"] == SIZE and train["output"] == 20
    assert train["steps"] >= 1 and train["wall_s"] >= 5
    assert train["last_loss"] is not None and train["last_loss"] > 0
    assert scores["slices"] == [25, 26, 27, 28, 29]
    assert 0 <= scores["v_rand"] <= 1 and 0 <= scores["v_info"] <= 1
    assert scores["threshold"] in scores["thresholds"]
    assert len(scores["v_rand_curve"]) == len(scores["thresholds"])


def test_printed_table(tiny_run):
    _, stdout = tiny_run
    assert "s/step" in stdout and "TFLOP/s" in stdout and "held-out slices 25-29" in stdout
    assert "results written to" in stdout
