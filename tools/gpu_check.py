"""GPU check: speed and memory of the paper's U-Net, then a short chapter-5 training run.

Made for the first GPU machine the book gets (a Colab T4, an A100, an H200...): in about
eight minutes it measures what chapters 5 and 7 say about speed and memory, and writes
every figure into one JSON file.

1. Training-step benchmarks. The paper's network, ``models.unet((size, size, 1))`` with
   valid padding (572 in, 388 out, 64 base filters, depth 4), compiled with Adam and
   binary cross-entropy, for every batch size, precision policy (``float32``,
   ``mixed_float16``...) and XLA setting (``jit_compile=True``/``False``). Each setting
   runs in a fresh subprocess, so that the GPU's peak memory belongs to it alone and the
   model is rebuilt under its policy. Reported: the median of ``--steps`` timed steps
   after ``--warmup`` untimed ones (the first builds and compiles the step), TFLOP/s and
   the fraction of the GPU's peak (:data:`PEAK_TFLOPS`), and peak memory next to the
   package's estimate, ``activation_memory`` (of ``unet_tutorial.memory``; ``tiling``
   before). A setting that runs out of memory is recorded as such, and larger batches of
   the same kind are skipped.
2. Training: the ``gpu`` profile of chapter 5 (that chapter's network, optimiser, loss,
   augmentation and batches, through ``training.train``) for ``--train-seconds``, then
   the held-out slices 25-29 predicted tile by tile (``tiling.predict_tiled``) and scored
   with ``isbi_scores`` (of ``unet_tutorial.challenge``; ``metrics`` before). The data:
   ISBI 2012 when it is on disk (``$UNET_TUTORIAL_DATA`` or the package's cache; nothing
   is downloaded unless ``--download``), else the synthetic stand-in; the results file
   says which.

FLOPs are counted from the model's convolutions: ``2 * H_out * W_out * k * k * C_in *
C_out`` for a convolution; for a transposed convolution every input pixel feeds a
``k x k`` patch, ``2 * H_in * W_in * k * k * C_in * C_out``. Pooling, activations and
concatenations are left out (well under 1 %). A training step counts as three forward
passes (the forward pass, and the gradients of the inputs and of the weights, each as
large). The count is checked against ``forward_flops`` of ``benchmarks/train_step.py``.

Peak memory is read from the backend: JAX's ``memory_stats()["peak_bytes_in_use"]``,
PyTorch's ``max_memory_allocated()``, TensorFlow's ``get_memory_info``; on a CPU it is
"n/a". The script never imports TensorFlow itself, so it runs where only JAX or PyTorch
is installed (set ``KERAS_BACKEND``). Subprocesses get ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
unless it is set, so that JAX takes GPU memory as needed instead of 75 % up front.

Usage (from the repository root; ``make gpu-check`` runs the first line)::

    KERAS_BACKEND=jax python tools/gpu_check.py              # the full check, at most --budget s
    KERAS_BACKEND=jax python tools/gpu_check.py --policies float32 mixed_bfloat16
    python tools/gpu_check.py --size 92 --depth 3 --base-filters 4 --batches 1 2 \\
        --steps 2 --train-seconds 5 --synthetic --no-tta     # a tiny run on a CPU

The script finds ``unet_tutorial`` in its checkout, so nothing needs installing but the
package's requirements minus TensorFlow. On a GPU machine that has JAX (or PyTorch) but
not Keras, bring wheels of what is missing (keras, namex, optree, pooch, platformdirs on
a typical JAX image), install them with ``pip install --no-deps --target DIR`` and put
DIR on ``PYTHONPATH``. For scores on the real data, bring the ISBI 2012 folder too and
point ``UNET_TUTORIAL_DATA`` at its parent; otherwise the run trains on synthetic data.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
RESULT_MARKER = "GPU_CHECK_RESULT "
SCHEMA = 1

#: Dense peak TFLOP/s (no structured sparsity) of the GPUs the book meets, as
#: (pattern matched against the device name, label, FP32 on CUDA cores, TF32 tensor,
#: FP16/BF16 tensor). None: the GPU has no such units. The first pattern that matches wins,
#: so the variants come before their family. Sources: NVIDIA's data sheets, whose tensor
#: figures "with sparsity" are twice the dense ones given here:
#: Tesla T4 data sheet (FP32 8.1, mixed-precision FP16 65; no BF16 or TF32 on Turing);
#: Tesla V100 data sheet (SXM2 15.7 and 125, PCIe 14 and 112 tensor; no BF16 or TF32);
#: A100 Tensor Core GPU data sheet (FP32 19.5, TF32 156, BF16/FP16 312, SXM and PCIe alike);
#: H100 Tensor Core GPU data sheet (SXM: FP32 67, TF32 989 and BF16/FP16 1979 sparse;
#: PCIe: 51, 756, 1513; NVL: 60, 835, 1671);
#: H200 Tensor Core GPU data sheet (SXM as H100 SXM; NVL: 60, 835, 1671);
#: L4 Tensor Core GPU data sheet (FP32 30.3, TF32 120 and BF16/FP16 242 sparse).
PEAK_TFLOPS = [
    (r"\bT4\b", "Tesla T4", 8.1, None, 65.0),
    (r"V100.*PCI", "V100 PCIe", 14.0, None, 112.0),
    (r"V100", "V100 SXM2", 15.7, None, 125.0),
    (r"A100", "A100", 19.5, 156.0, 312.0),
    (r"H100.*NVL", "H100 NVL", 60.0, 417.5, 835.5),
    (r"H100.*PCI", "H100 PCIe", 51.0, 378.0, 756.5),
    (r"H100", "H100 SXM", 67.0, 494.5, 989.5),
    (r"H200.*NVL", "H200 NVL", 60.0, 417.5, 835.5),
    (r"H200", "H200 SXM", 67.0, 494.5, 989.5),
    (r"\bL4\b", "L4", 30.3, 60.0, 121.0),
]


def peak_tflops(device_name):
    """The row of :data:`PEAK_TFLOPS` for a device name, as a dict, or None."""
    for pattern, label, fp32, tf32, fp16 in PEAK_TFLOPS:
        if device_name and re.search(pattern, device_name, re.IGNORECASE):
            return {"gpu": label, "fp32": fp32, "tf32": tf32, "fp16_bf16_tensor": fp16}
    return None


# ----------------------------------------------------------------------------- counting
def conv_flops(model):
    """Forward-pass FLOPs of one image through the model's convolutions, and the per-layer list.

    Returns
    -------
    (int, list of dict)
        The total and, per convolution, its name, kind, kernel, channels, sizes and FLOPs.
    """
    total, rows = 0, []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose"):
            continue
        _, h_in, w_in, c_in = layer.input.shape
        _, h_out, w_out, c_out = layer.output.shape
        k_h, k_w = layer.kernel_size
        if kind == "Conv2D":
            flops = 2 * h_out * w_out * k_h * k_w * c_in * c_out
        else:  # each input pixel is spread over a k x k patch of the output
            flops = 2 * h_in * w_in * k_h * k_w * c_in * c_out
        total += flops
        rows.append(
            {
                "layer": layer.name,
                "kind": kind,
                "kernel": [k_h, k_w],
                "c_in": c_in,
                "c_out": c_out,
                "input": [h_in, w_in],
                "output": [h_out, w_out],
                "flops": flops,
            }
        )
    return int(total), rows


def train_step_py_flops(model):
    """The same count by ``benchmarks/train_step.py``'s ``forward_flops``, or None if absent."""
    path = ROOT / "benchmarks" / "train_step.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_train_step_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.forward_flops(model))


def dtype_bytes(policy):
    import keras

    return {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[
        keras.mixed_precision.Policy(policy).compute_dtype
    ]


# ----------------------------------------------------------------------------- the machine
def backend_name():
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def peak_memory_bytes():
    """Peak device memory of this process so far, or None on a CPU (or when unknown)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return int(device.memory_stats()["peak_bytes_in_use"])
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.max_memory_allocated())
        elif backend == "tensorflow":  # Keras has imported it already
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except Exception:  # noqa: BLE001 - a figure we cannot read is reported as n/a
        return None
    return None


def _distribution_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions():
    import keras

    import unet_tutorial

    names = ["numpy", "scipy", "scikit-image", "jax", "jaxlib", "torch", "tensorflow"]
    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "unet_tutorial": unet_tutorial.__version__,
    }
    found.update({name: _distribution_version(name) for name in names})
    return {name: version for name, version in found.items() if version is not None}


def nvidia_smi():
    """Name, driver and memory of the first GPU as nvidia-smi reports them, or None."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    parts = [part.strip() for part in line.split(",")]
    return dict(zip(("name", "driver", "memory"), parts)) if len(parts) == 3 else None


def git_commit():
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------- one benchmark (subprocess)
def bench_worker(spec):
    """Time ``spec["steps"]`` training steps of one setting; runs in its own process."""
    import keras
    import numpy as np

    from unet_tutorial import models

    result = {"status": "ok"}
    keras.mixed_precision.set_global_policy(spec["policy"])
    keras.utils.set_random_seed(0)
    model = models.unet(
        (spec["size"], spec["size"], 1),
        depth=spec["depth"],
        base_filters=spec["base_filters"],
        padding="valid",
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", jit_compile=bool(spec["xla"])
    )
    out = model.output_shape[1]
    rng = np.random.default_rng(0)
    x = rng.random((spec["batch"], spec["size"], spec["size"], 1), dtype=np.float32)
    y = (rng.random((spec["batch"], out, out, 1)) > 0.5).astype(np.float32)

    def step():
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)  # returns a host number: the device has finished
        return time.perf_counter() - start, float(np.asarray(loss).ravel()[0])

    result["first_step_s"], _ = step()  # builds (and with XLA compiles) the step
    for _ in range(max(0, spec["warmup"] - 1)):
        step()
    times, losses = zip(*(step() for _ in range(spec["steps"])))
    result.update(
        times_s=list(times),
        median_s=statistics.median(times),
        last_loss=losses[-1],
        finite_loss=all(math.isfinite(value) for value in losses),
        peak_memory_bytes=peak_memory_bytes(),
        output_size=out,
        policy_compute_dtype=keras.mixed_precision.global_policy().compute_dtype,
    )
    return result


def _is_out_of_memory(text):
    return bool(re.search(r"RESOURCE_EXHAUSTED|[Oo]ut of memory|OutOfMemory|\bOOM\b", text or ""))


def worker_main(spec_json):
    spec = json.loads(spec_json)
    try:
        result = bench_worker(spec)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which carries on
        text = f"{type(error).__name__}: {error}"
        result = {
            "status": "oom" if _is_out_of_memory(text) else "error",
            "error": text[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def run_setting(spec, timeout):
    """Run one setting in a fresh Python process; returns its result dict."""
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=str(ROOT),
        )
    except subprocess.TimeoutExpired:
        return {
            "status": "timeout",
            "error": f"no result within {timeout:.0f} s",
            "wall_s": time.perf_counter() - start,
        }
    wall = time.perf_counter() - start
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER) :])
            result["wall_s"] = wall
            return result
    tail = (done.stderr or "")[-2000:]
    return {
        "status": "oom" if _is_out_of_memory(tail) else "crashed",
        "error": f"exit status {done.returncode}: {tail}",
        "wall_s": wall,
    }


# ----------------------------------------------------------------------------- training (this process)
class StopAfter:
    """Keras callback (made lazily, so importing this file needs no Keras) ending fit after some seconds."""

    @staticmethod
    def make(seconds):
        import keras

        class _StopAfter(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self.steps, self.last_loss = seconds, 0, None
                self.start = self.first_step_end = self.last_step_end = None

            def on_train_begin(self, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                now = self.last_step_end = time.perf_counter()
                if self.first_step_end is None:
                    self.first_step_end = now
                if logs and "loss" in logs:
                    self.last_loss = logs["loss"]
                if now - self.start >= self.seconds:
                    self.model.stop_training = True

        return _StopAfter()


def load_data(args):
    """(x_train, y_train, x_val, y_val, description) with slices 25-29 held out."""
    from unet_tutorial import data, synthetic

    if args.synthetic:
        images, masks = synthetic.synthetic_membranes(30, 512, seed=0)
        return images[:25], masks[:25], images[25:], masks[25:], "synthetic (--synthetic)"
    dataset = data.load_isbi2012_or_synthetic(download=args.download)
    x_train, y_train, x_val, y_val = data.split_isbi2012(dataset)
    where = "synthetic (no ISBI 2012 on disk)" if dataset.is_synthetic else f"ISBI 2012 from {dataset.source}"
    return x_train, y_train, x_val, y_val, where


#: Where the package keeps what the check calls, newest layout first: the package is being
#: reorganised, and the check should run on a checkout from before and after.
FUNCTIONS = {
    "SegmentationDataset": ("unet_tutorial.dataset", "unet_tutorial.augment"),
    "activation_memory": ("unet_tutorial.memory", "unet_tutorial.tiling"),
    "isbi_scores": ("unet_tutorial.challenge", "unet_tutorial.metrics"),
    "synthetic_membranes": ("unet_tutorial.synthetic", "unet_tutorial.data"),
}


def package_function(name):
    """(object, "module.name") of the first module of :data:`FUNCTIONS` that has ``name``."""
    import importlib

    for module_name in FUNCTIONS[name]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name), f"{module_name}.{name}"
    raise ImportError(f"none of {FUNCTIONS[name]} has {name}: update FUNCTIONS in {Path(__file__).name}")


def train_and_score(args, profile):
    """Chapter 5's training for ``args.train_seconds``, then the scores of slices 25-29."""
    import keras
    import numpy as np

    from unet_tutorial import augment, data, metrics, models, runtime, tiling, training

    SegmentationDataset, _ = package_function("SegmentationDataset")

    x_train, y_train, x_val, y_val, where = load_data(args)
    out = models.output_size(args.size, args.depth, "valid")
    runtime.seed_everything(0)
    model = models.unet(input_shape=(None, None, 1), base_filters=args.base_filters, depth=args.depth, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="binary_crossentropy",
        metrics=metrics.training_metrics(),
    )
    crops = SegmentationDataset(
        x_train,
        y_train,
        input_size=args.size,
        output_size=out,
        batch_size=profile.batch_size,
        steps_per_epoch=profile.steps_per_epoch,
        augment=augment.PAPER_PARAMS,
        seed=0,
        workers=args.workers,
    )
    stopper = StopAfter.make(args.train_seconds)
    with tempfile.TemporaryDirectory(prefix="gpu_check_run_") as run_dir:
        start = time.perf_counter()
        history = training.train(
            model, crops, None, run_dir=run_dir, epochs=profile.epochs, callbacks=[stopper], verbose=0
        )
        train_wall = time.perf_counter() - start
    # Steps after the first (which compiles), over the time between the first and the last step's end.
    steady_steps = stopper.steps - 1
    steady_seconds = stopper.last_step_end - stopper.first_step_end if steady_steps > 0 else 0
    train = {
        "profile": profile.name,
        "data": where,
        "tile": args.size,
        "output": out,
        "base_filters": args.base_filters,
        "depth": args.depth,
        "batch_size": profile.batch_size,
        "augmentation": "augment.PAPER_PARAMS",
        "optimizer": "Adam(1e-3)",
        "loss": "binary_crossentropy",
        "train_seconds_asked": args.train_seconds,
        "wall_s": train_wall,
        "steps": stopper.steps,
        "epochs_started": len(history.epoch) if history.epoch else 0,
        "first_step_s": None if stopper.first_step_end is None else stopper.first_step_end - stopper.start,
        "steady_steps_per_s": steady_steps / steady_seconds if steady_seconds > 0 else None,
        "last_loss": None if stopper.last_loss is None else float(stopper.last_loss),
        "workers": args.workers,
        "peak_memory_bytes": peak_memory_bytes(),
    }
    tta = profile.tta and not args.no_tta
    start = time.perf_counter()
    val_images = data.to_float(x_val)
    probs = np.stack(
        [
            tiling.predict_tiled(model, image, batch_size=profile.predict_batch_size, tta=tta)
            for image in val_images
        ]
    )
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    isbi_scores, scorer = package_function("isbi_scores")
    scores = isbi_scores(probs, y_val)
    score_s = time.perf_counter() - start
    first = 30 - len(x_val)
    scored = {
        "slices": list(range(first, 30)),
        "tta": tta,
        "scorer": scorer,
        "predict_s": predict_s,
        "score_s": score_s,
        "v_rand": scores["v_rand"],
        "threshold": scores["threshold"],
        "v_info": scores["v_info"],
        "threshold_info": scores["threshold_info"],
        "thresholds": [float(t) for t in scores["thresholds"]],
        "v_rand_curve": [float(v) for v in scores["v_rand_curve"]],
        "v_info_curve": [float(v) for v in scores["v_info_curve"]],
    }
    return train, scored


# ----------------------------------------------------------------------------- the whole check
def settings_in_order(args):
    """XLA on before off (the figures that matter most first), then policy, then batch."""
    order = [xla == "on" for xla in args.xla]
    return [
        {"xla": xla, "policy": policy, "batch": batch}
        for xla in sorted(set(order), key=lambda on: not on)
        for policy in args.policies
        for batch in sorted(args.batches)
    ]


def model_facts(args):
    """FLOPs, parameters and memory estimates of the benchmarked model (built in this process)."""
    import keras

    from unet_tutorial import models

    activation_memory, estimator = package_function("activation_memory")
    keras.mixed_precision.set_global_policy("float32")
    model = models.unet(
        (args.size, args.size, 1), depth=args.depth, base_filters=args.base_filters, padding="valid", seed=0
    )
    forward, per_layer = conv_flops(model)
    other = train_step_py_flops(model)
    estimates = {}
    for policy in args.policies:
        size_bytes = dtype_bytes(policy)
        for batch in args.batches:
            estimates[f"{policy}/{batch}"] = activation_memory(
                model, args.size, batch, dtype_bytes=size_bytes
            )
    facts = {
        "name": model.name,
        "input": args.size,
        "output": model.output_shape[1],
        "depth": args.depth,
        "base_filters": args.base_filters,
        "parameters": int(model.count_params()),
        "forward_flops_per_image": forward,
        "train_flops_per_image": 3 * forward,
        "conv_layers": per_layer,
        "memory_estimator": estimator,
        "flops_check": {
            "benchmarks/train_step.py forward_flops": other,
            "agrees": None if other is None else other == forward,
        },
    }
    del model
    keras.utils.clear_session()
    return facts, estimates


def complete_rows(rows, facts, estimates, peaks):
    for row in rows:
        row["train_flops_per_step"] = facts["train_flops_per_image"] * row["batch"]
        estimate = estimates.get(f"{row['policy']}/{row['batch']}")
        row["estimate_bytes"] = None if estimate is None else estimate["total_bytes"]
        row["estimate_activation_bytes"] = None if estimate is None else estimate["activation_bytes"]
        if row.get("status") != "ok":
            continue
        row["images_per_s"] = row["batch"] / row["median_s"]
        row["tflops"] = row["train_flops_per_step"] / row["median_s"] / 1e12
        mixed = row["policy"] != "float32"
        row["peak_used"] = None
        row["peak_fraction"] = None
        if peaks:
            key = "fp16_bf16_tensor" if mixed else "fp32"
            if peaks.get(key):
                row["peak_used"], row["peak_fraction"] = key, row["tflops"] / peaks[key]
            if not mixed and peaks.get("tf32"):
                row["tf32_peak_fraction"] = row["tflops"] / peaks["tf32"]
        measured = row.get("peak_memory_bytes")
        row["memory_ratio"] = (
            (measured / row["estimate_bytes"]) if measured and row["estimate_bytes"] else None
        )


def _gib(value):
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def format_report(results):
    lines = []
    machine, model = results["machine"], results["model"]
    lines.append(
        f"GPU check: {machine['device']} | backend {machine['backend']} | "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    )
    peaks = results["peak_tflops"]
    if peaks:
        lines.append(
            f"peak TFLOP/s of a {peaks['gpu']}: FP32 {peaks['fp32']}, TF32 {peaks['tf32']}, "
            f"FP16/BF16 tensor {peaks['fp16_bf16_tensor']}"
        )
    else:
        lines.append("peak TFLOP/s: unknown device (no fraction of peak)")
    lines.append(
        f"model {model['name']}: {model['input']} -> {model['output']}, {model['parameters']:,} parameters, "
        f"{model['forward_flops_per_image'] / 1e9:,.2f} GFLOP forward per image, "
        f"x3 = {model['train_flops_per_image'] / 1e9:,.2f} GFLOP per training image "
        f"(train_step.py agrees: {model['flops_check']['agrees']})"
    )
    header = (
        f"{'policy':<15} {'XLA':<4} {'batch':>5} {'status':<8} {'s/step':>8} {'img/s':>8} {'TFLOP/s':>8} "
        f"{'% peak':>7} {'peak mem':>11} {'estimate':>11} {'ratio':>6}"
    )
    lines += [header, "-" * len(header)]
    for row in results["benchmarks"]:
        ok = row.get("status") == "ok"
        fraction = row.get("peak_fraction") if ok else None
        ratio = row.get("memory_ratio") if ok else None
        lines.append(
            f"{row['policy']:<15} {'on' if row['xla'] else 'off':<4} {row['batch']:>5} {row['status']:<8} "
            + (
                f"{row['median_s']:>8.4f} {row['images_per_s']:>8.2f} {row['tflops']:>8.3f} "
                if ok
                else f"{'':>8} {'':>8} {'':>8} "
            )
            + f"{'' if fraction is None else f'{100 * fraction:.1f}':>7} "
            + f"{_gib(row.get('peak_memory_bytes')) if ok else '':>11} {_gib(row.get('estimate_bytes')):>11} "
            + f"{'' if ratio is None else f'{ratio:.2f}':>6}"
        )
        if not ok and row.get("error"):
            lines.append(f"    {row['error'].splitlines()[0][:150] if row['error'] else ''}")
    train, scores = results.get("training"), results.get("scores")
    if train:
        rate = train["steady_steps_per_s"]
        lines.append(
            f"training ({train['profile']} profile, {train['data']}): {train['steps']} steps in "
            f"{train['wall_s']:.0f} s, first step {train['first_step_s'] or float('nan'):.1f} s, then "
            f"{'n/a' if rate is None else f'{rate:.2f}'} steps/s; last loss {train['last_loss']}; "
            f"peak memory {_gib(train['peak_memory_bytes'])}"
        )
    if scores:
        lines.append(
            f"held-out slices {scores['slices'][0]}-{scores['slices'][-1]} (TTA {scores['tta']}): "
            f"V_Rand {scores['v_rand']:.4f} at {scores['threshold']:.1f}, "
            f"V_Info {scores['v_info']:.4f} at {scores['threshold_info']:.1f} "
            f"(predicted in {scores['predict_s']:.1f} s, scored in {scores['score_s']:.1f} s)"
        )
    if results.get("problems"):
        lines += [f"PROBLEM: {problem}" for problem in results["problems"]]
    lines.append(f"total {results['total_s']:.0f} s of a {results['settings']['budget_s']:.0f} s budget")
    return "\n".join(lines)


def write_json(results, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    temporary.replace(path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=None, help="input tile side (default: the profile's, 572)"
    )
    parser.add_argument(
        "--depth", type=int, default=None, help="down-sampling steps (default: the profile's, 4)"
    )
    parser.add_argument(
        "--base-filters", type=int, default=None, help="first-level filters (default: the profile's, 64)"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="batch sizes timed")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["float32", "mixed_float16"],
        help="Keras precision policies (mixed_bfloat16 on Ampere and newer)",
    )
    parser.add_argument(
        "--xla", nargs="+", choices=["on", "off"], default=["on", "off"], help="jit_compile settings timed"
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per setting; the median is reported"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first compiles)")
    parser.add_argument(
        "--train-seconds", type=float, default=180.0, help="training time of the profile's run"
    )
    parser.add_argument(
        "--profile", default="gpu", help="runtime profile trained (batch, steps per epoch, TTA)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=480.0,
        help="seconds for the whole check; benchmark settings that do not fit are skipped",
    )
    parser.add_argument(
        "--reserve",
        type=float,
        default=75.0,
        help="seconds kept for building, predicting and scoring after the benchmarks",
    )
    parser.add_argument(
        "--setting-timeout", type=float, default=150.0, help="most seconds one setting may take"
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="threads preparing augmented batches"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="train on synthetic data even if ISBI 2012 is there"
    )
    parser.add_argument("--download", action="store_true", help="download ISBI 2012 if it is not on disk")
    parser.add_argument("--no-tta", action="store_true", help="predict without test-time augmentation")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the results file (JSON)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None:
        numbers = {"--steps": args.steps, "--workers": args.workers}
        for name, value in numbers.items():
            if value < 1:
                parser.error(f"{name} must be at least 1")
        if args.warmup < 1:
            parser.error("--warmup must be at least 1 (the first step compiles)")
        if any(batch < 1 for batch in args.batches):
            parser.error("--batches must be positive")
        if args.train_seconds <= 0:
            parser.error("--train-seconds must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    start = time.perf_counter()
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from unet_tutorial import models, runtime

    profile = runtime.PROFILES[args.profile]
    args.size = args.size or profile.tile_size
    args.depth = args.depth or profile.depth
    args.base_filters = args.base_filters or profile.base_filters
    models.output_size(args.size, args.depth, "valid")  # a size that does not fit fails here, with advice

    # 1. Benchmarks, each in a fresh process; this process keeps off the GPU meanwhile.
    bench_deadline = start + args.budget - args.train_seconds - args.reserve
    rows, out_of_memory = [], set()
    common = {
        "size": args.size,
        "depth": args.depth,
        "base_filters": args.base_filters,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    for setting in settings_in_order(args):
        row = dict(setting)
        left = bench_deadline - time.perf_counter()
        if (setting["xla"], setting["policy"]) in out_of_memory:
            row.update(status="skipped", error="a smaller batch of this setting ran out of memory")
        elif left < 10:
            row.update(status="skipped", error="time budget (--budget) used up")
        else:
            row.update(run_setting(dict(common, **setting), timeout=min(left, args.setting_timeout)))
            if row["status"] == "oom":
                out_of_memory.add((setting["xla"], setting["policy"]))
        print(
            f"  {setting['policy']:<15} XLA {'on ' if setting['xla'] else 'off'} batch {setting['batch']}: "
            f"{row['status']}" + (f", {row['median_s']:.4f} s/step" if row["status"] == "ok" else ""),
            flush=True,
        )
        rows.append(row)

    # 2. Facts of the model, the machine, then the training run in this process.
    facts, estimates = model_facts(args)
    import keras

    device = runtime.device_name()
    gpu = device.split(": ", 1)[1] if device.startswith("GPU: ") else None
    peaks = peak_tflops(gpu) if gpu else None
    complete_rows(rows, facts, estimates, peaks)
    results = {
        "schema": SCHEMA,
        "tool": "tools/gpu_check.py",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {
            "device": device,
            "gpu": gpu,
            "backend": keras.backend.backend(),
            "nvidia_smi": nvidia_smi(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "versions": versions(),
        "settings": {
            "size": args.size,
            "depth": args.depth,
            "base_filters": args.base_filters,
            "batches": args.batches,
            "policies": args.policies,
            "xla": args.xla,
            "steps": args.steps,
            "warmup": args.warmup,
            "train_seconds": args.train_seconds,
            "profile": args.profile,
            "budget_s": args.budget,
            "synthetic": args.synthetic,
        },
        "peak_tflops": peaks,
        "model": facts,
        "memory_estimates": estimates,
        "benchmarks": rows,
        "problems": [],
    }
    results["training"], results["scores"] = train_and_score(args, runtime.PROFILES[args.profile])
    if backend_name() != "tensorflow" and "tensorflow" in sys.modules:
        results["problems"].append("TensorFlow was imported although the backend is not TensorFlow")
    if facts["flops_check"]["agrees"] is False:
        results["problems"].append("the FLOP count disagrees with benchmarks/train_step.py")
    for row in rows:
        if row["status"] == "ok" and not row["finite_loss"]:
            results["problems"].append(
                f"{row['policy']} XLA {row['xla']} batch {row['batch']}: the loss is not finite"
            )
    results["total_s"] = time.perf_counter() - start
    write_json(results, args.out)
    print(format_report(results))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
