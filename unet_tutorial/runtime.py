"""Tooling: the chapters' runtime: profiles, precision, training-time estimates, run folders on Drive.

Not a part of the U-Net; what lets one notebook run anywhere. One notebook serves three
machines: ``smoke`` (CI: seconds per chapter), ``cpu`` (a laptop: minutes per chapter,
small models) and ``gpu`` (a Colab T4 or better: the paper's sizes, in mixed precision).
Every number a chapter trains with lives in :data:`PROFILES`, so no chapter hard-codes
its own. Until a T4 run is measured, how long the ``gpu`` profile trains is estimated
from FLOP counts and one stated throughput assumption, :data:`T4_SPEED`.

Used in chapter 1 (Semantic segmentation), where the profile is first explained, and at
the top of every chapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import importlib
import math
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "Profile",
    "PROFILES",
    "select_profile",
    "device_name",
    "precision_policy",
    "precision",
    "in_float32",
    "SpeedAssumption",
    "T4_SPEED",
    "TrainingEstimate",
    "estimated_training_time",
    "forward_flops",
    "summary",
    "seed_everything",
    "in_colab",
    "quiet_tensorflow_logs",
    "DRIVE_MOUNTPOINT",
    "mount_drive",
    "checkpoint_dir",
    "Stopwatch",
]


@dataclasses.dataclass(frozen=True)
class Profile:
    """The numbers one kind of machine trains and predicts with.

    Attributes
    ----------
    name, description : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``, and what it is for.
    base_filters : int
        Filters of the U-Net's first level (64 in the paper).
    depth : int
        Down-sampling steps of the full U-Net.
    tile_size : int
        Input tile of the valid U-Net (572 in the paper); its output is smaller.
    crop_size : int
        Training crop of 'same'-padding models (input size = output size).
    batch_size, epochs : int
        Training batch size and epochs per run.
    steps_per_epoch : int
        Batches per epoch (random crops, so an epoch is a number of steps, not a pass).
    predict_batch_size : int
        Tiles per batch when predicting.
    tta : bool
        Whether chapters use test-time augmentation when they predict.
    max_images : int or None
        How many training slices the chapters use (None: all of them).
    mixed_precision : bool
        Whether models are trained in mixed precision where the GPU supports it
        (:func:`precision_policy`); the loss and the weight maps stay in float32.
    """

    name: str
    description: str
    base_filters: int
    depth: int
    tile_size: int
    crop_size: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    predict_batch_size: int
    tta: bool
    max_images: int | None
    mixed_precision: bool = False


PROFILES = {
    "smoke": Profile(
        "smoke",
        "CI: a few steps on tiny models, to prove the notebook runs",
        base_filters=4,
        depth=4,
        tile_size=220,
        crop_size=64,
        batch_size=1,
        epochs=1,
        steps_per_epoch=2,
        predict_batch_size=2,
        tta=False,
        max_images=4,
    ),
    "cpu": Profile(
        "cpu",
        "a laptop CPU: 16-filter networks, minutes per chapter",
        base_filters=16,
        depth=4,
        tile_size=316,
        crop_size=256,
        batch_size=2,
        epochs=12,
        steps_per_epoch=40,
        predict_batch_size=2,
        tta=True,
        max_images=None,
    ),
    # Sized so that every training chapter trains for at most about 12 minutes on a Colab T4
    # (estimated: see T4_SPEED and tools/course_timings.py). Few long epochs: every epoch ends
    # with a checkpoint of the 31-million-weight network (about 370 MB with Adam's state) on Drive.
    "gpu": Profile(
        "gpu",
        "a Colab T4 or better: the paper's 64-filter network on 572x572 tiles, mixed precision",
        base_filters=64,
        depth=4,
        tile_size=572,
        crop_size=512,
        batch_size=1,
        epochs=20,
        steps_per_epoch=300,
        predict_batch_size=4,
        tta=True,
        max_images=None,
        mixed_precision=True,
    ),
}


# A line TensorFlow's C++ code writes to stderr: "I0000 00:00:1796.. 12399 port.cc:153] ...".
# The second line of its CPU-feature message and absl's start-up warning go too.
_TF_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl::"
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)
_quiet = threading.Lock()
_quieted = []


def quiet_tensorflow_logs():
    """Drop TensorFlow's C++ log lines from this process's stderr; let everything else through.

    TensorFlow 2.20 and later write start-up and info lines ("oneDNN custom operations
    are on", "failed call to cuInit", ...) straight to the process's stderr, ignoring
    ``TF_CPP_MIN_LOG_LEVEL``, and a notebook shows them under the cell that imported it.
    This puts a filter thread between file descriptor 2 and where it went before; other
    output, Python's warnings and tracebacks included, passes unchanged. Call it once,
    before Keras is imported; later calls do nothing.

    Used in chapter 1 (Semantic segmentation) and at the top of every chapter.
    """
    with _quiet:
        if _quieted:
            return
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        _quieted.append(original)

    def forward():
        buffer = b""
        while chunk := os.read(read_end, 65536):
            *lines, buffer = (buffer + chunk).split(b"\n")  # whole lines only; keep the rest
            kept = [line + b"\n" for line in lines if not _TF_LOG_LINE.match(line)]
            if kept:
                os.write(original, b"".join(kept))

    threading.Thread(target=forward, name="quiet_tensorflow_logs", daemon=True).start()


def _in_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def in_colab():
    """True inside Google Colab.

    Used in chapter 5 (Training the U-Net), which keeps checkpoints on Drive in Colab.
    """
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def select_profile(name=None):
    """Choose the runtime profile.

    The first that applies: ``name``; ``$UNET_TUTORIAL_PROFILE``; ``smoke`` under CI
    (``$CI`` set); ``gpu`` when Keras' backend sees a GPU; else ``cpu``.

    Used in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    name : str, optional
        One of ``PROFILES``.

    Returns
    -------
    Profile

    Examples
    --------
    >>> profile = select_profile("cpu")
    >>> profile.base_filters, profile.tile_size, profile.epochs, profile.steps_per_epoch
    (16, 316, 12, 40)
    """
    chosen = name or os.environ.get("UNET_TUTORIAL_PROFILE", "").strip().lower() or None
    if chosen is None:
        chosen = "smoke" if _in_ci() else ("gpu" if _gpu_name() else "cpu")
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}: choose one of {sorted(PROFILES)} "
            "(argument or UNET_TUTORIAL_PROFILE)."
        )
    return PROFILES[chosen]


def _gpu_name():
    """Name of the first GPU the Keras backend computes on, or None without one."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        if backend == "jax":
            import jax

            return next((device.device_kind for device in jax.devices() if device.platform == "gpu"), None)
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU
        return None
    return None


def device_name():
    """A short description of the device Keras computes on, e.g. ``"GPU: Tesla T4"``.

    Used in chapter 1 (Semantic segmentation); every chapter's last cell prints it.
    """
    gpu = _gpu_name()
    if gpu:
        return f"GPU: {gpu}"
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return f"CPU: {cpu}, {os.cpu_count()} cores"


def _gpu_compute_capability():
    """``(major, minor)`` CUDA compute capability of the first GPU Keras computes on, or None."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
            capability = details.get("compute_capability")
        elif backend == "jax":
            import jax

            gpu = next((device for device in jax.devices() if device.platform == "gpu"), None)
            capability = getattr(gpu, "compute_capability", None)
        elif backend == "torch":
            import torch

            capability = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
        else:
            capability = None
        if isinstance(capability, str):  # JAX: "8.0"
            capability = capability.split(".")
        return None if capability is None else tuple(int(part) for part in capability[:2])
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU
        return None


def precision_policy(profile=None, compute_capability=None):
    """The Keras dtype policy a profile trains in on this machine.

    ``"mixed_float16"`` on a GPU of compute capability 7.x (a T4, a V100: tensor cores for
    float16), ``"mixed_bfloat16"`` on 8.0 and newer (A100, L4, H100), ``"float32"`` on a
    CPU, an older GPU, or with a profile that does not ask for mixed precision. A mixed
    policy computes the layers in 16 bits and keeps the weights in float32; the package's
    models end with a float32 activation, so the loss and the weight maps stay in float32.

    Used in chapter 3 (A mini U-Net) and the later training chapters, through
    :func:`precision`. Chapter 7 (Overlap-tile on Colab GPUs) explains mixed precision.

    Parameters
    ----------
    profile : Profile or str, optional
        Defaults to :func:`select_profile`.
    compute_capability : tuple of int, optional
        ``(major, minor)``; defaults to that of the GPU Keras computes on (None without one).

    Returns
    -------
    str

    Examples
    --------
    >>> precision_policy("gpu", (7, 5)), precision_policy("gpu", (8, 0)), precision_policy("cpu", (7, 5))
    ('mixed_float16', 'mixed_bfloat16', 'float32')
    """
    if not isinstance(profile, Profile):
        profile = select_profile(profile)
    if not profile.mixed_precision:
        return "float32"
    capability = compute_capability or _gpu_compute_capability()
    if capability is None or tuple(capability) < (7, 0):
        return "float32"
    return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"


@contextlib.contextmanager
def precision(profile=None, compute_capability=None):
    """Build models inside ``with precision(profile):`` to train them in the profile's precision.

    Sets Keras' global dtype policy to :func:`precision_policy` and restores the previous
    one on leaving, so that only the models built inside compute in 16 bits; the rest of
    the chapter (hand checks, small demonstrations) stays in float32. ``compile`` wraps the
    optimizer of a ``mixed_float16`` model in a ``LossScaleOptimizer``, which skips the
    rare step whose scaled gradients overflow (``optimizer.iterations`` does not count it).

    Used in chapter 3 (A mini U-Net) and the later training chapters.

    Yields
    ------
    str
        The policy's name.

    Examples
    --------
    >>> import keras
    >>> with precision("gpu", compute_capability=(7, 5)) as policy:
    ...     layer = keras.layers.Dense(1)
    >>> policy, layer.compute_dtype, layer.variable_dtype, keras.config.dtype_policy().name
    ('mixed_float16', 'float16', 'float32', 'float32')
    """
    import keras

    policy = precision_policy(profile, compute_capability)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(before)


def in_float32(model):
    """``model`` itself if it computes in float32, else a float32 copy with the same weights.

    A model trained in mixed precision predicts in 16 bits, whose rounding depends on how
    the work is cut up: the same pixel predicted in a tile of another size or in a batch of
    another size can differ by about 1e-3. The chapters' checks that two ways of predicting
    agree to 1e-5 therefore run on a float32 copy, which also predicts a little more
    precisely. Nested models (a pretrained encoder) are copied too.

    Used in chapter 3 (A mini U-Net) and the later training chapters, after training.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    keras.Model

    Examples
    --------
    >>> import keras
    >>> with precision("gpu", compute_capability=(7, 5)):
    ...     inputs = keras.Input((4, 4, 1))
    ...     mixed = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    >>> copy = in_float32(mixed)
    >>> mixed.layers[-1].compute_dtype, copy.layers[-1].compute_dtype, in_float32(copy) is copy
    ('float16', 'float32', True)
    """
    import keras

    if all(layer.compute_dtype == "float32" for layer in _all_layers(model)):
        return model

    def float32_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=float32_layer, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model):
    """The layers of a model and of the models nested in it."""
    import keras

    for layer in model.layers:
        yield from _all_layers(layer) if isinstance(layer, keras.Model) else (layer,)


# ----------------------------------------------------------------------------- training time
#: Forward-pass FLOPs of the paper's network on one 572 x 572 tile (``models.unet((572, 572, 1))``:
#: 64 filters, depth 4, valid padding), counted by :func:`forward_flops`; a test recounts it.
PAPER_UNET_FORWARD_FLOPS = 300_837_579_264


@dataclasses.dataclass(frozen=True)
class SpeedAssumption:
    """How fast a GPU is assumed to train: a measured reference GPU, scaled by a fraction.

    The reference is a published training throughput of the paper's network (572 x 572
    tiles, batch 1). Other networks and sizes are scaled by their FLOPs: a training step
    counts three forward passes (the forward pass and the two halves of the backward pass).

    Attributes
    ----------
    gpu : str
        The GPU the estimates are for.
    reference_gpu : str
        The GPU that was measured.
    reference_images_per_s : dict
        ``{"float32": ..., "mixed": ...}``: the paper's network, 572 x 572 tiles, batch 1.
    fraction : float
        ``gpu``'s speed as a fraction of ``reference_gpu``'s: the assumption.
    source : str
        Where ``reference_images_per_s`` comes from.
    """

    gpu: str
    reference_gpu: str
    reference_images_per_s: dict
    fraction: float
    source: str

    def images_per_s(self, mixed):
        """The paper's network, 572 x 572 tiles, batch 1, on ``gpu`` (assumed)."""
        return self.reference_images_per_s["mixed" if mixed else "float32"] * self.fraction

    def flops_per_s(self, mixed):
        """Training FLOPs per second of ``gpu`` (assumed), from the paper's network's throughput."""
        return self.images_per_s(mixed) * 3 * PAPER_UNET_FORWARD_FLOPS

    def describe(self, mixed):
        """The assumption in one sentence, for printing next to an estimate."""
        kind = "with mixed precision" if mixed else "in float32"
        reference = self.reference_images_per_s["mixed" if mixed else "float32"]
        share = fractions.Fraction(self.fraction).limit_denominator(10)
        return (
            f"a {self.gpu} at {share} of the speed of a {self.reference_gpu}, which trains the paper's U-Net "
            f"at {reference} images/s {kind}, as reported in {self.source}"
        )


#: The one place that says how fast a Colab T4 trains, until a T4 run is measured.
#: Source: NVIDIA DeepLearningExamples, TensorFlow2/Segmentation/UNet_Medical, README,
#: "Training performance: NVIDIA DGX-1 (8x V100 16GB)", 1 GPU, batch size 1: the paper's
#: U-Net (572 x 572 tiles) trains at 14.65 images/s in FP32 and 40.36 images/s with AMP.
#: Assumption (not measured): a T4 has about a quarter to a third of a V100's training
#: throughput; the estimates take the slower end, a quarter.
T4_SPEED = SpeedAssumption(
    gpu="Tesla T4",
    reference_gpu="V100",
    reference_images_per_s={"float32": 14.65, "mixed": 40.36},
    fraction=0.25,
    source="NVIDIA DeepLearningExamples, TensorFlow2/Segmentation/UNet_Medical",
)


@dataclasses.dataclass(frozen=True)
class TrainingEstimate:
    """An estimated training time; ``str()`` gives the line the chapters print.

    Attributes
    ----------
    steps, batch_size, input_size : int
    flops_per_step : float
        Training FLOPs of one batch.
    mixed : bool
        Whether the profile trains in mixed precision.
    speed : SpeedAssumption
    """

    steps: int
    batch_size: int
    input_size: int
    flops_per_step: float
    mixed: bool
    speed: SpeedAssumption

    @property
    def seconds(self):
        return self.steps * self.flops_per_step / self.speed.flops_per_s(self.mixed)

    @property
    def minutes(self):
        return self.seconds / 60

    def approx(self):
        """``"≈ 11 min"``; a decimal below one minute (``"≈ 0.3 min"``)."""
        return f"≈ {self.minutes:.0f} min" if self.minutes >= 1 else f"≈ {self.minutes:.1f} min"

    def __str__(self):
        size, precision = self.input_size, "mixed precision" if self.mixed else "float32"
        return (
            f"Training: {self.steps:,} steps of {self.batch_size} x {size}x{size} px, "
            f"{self.flops_per_step / 1e12:.2f} TFLOP each, {precision}: {self.approx()} on a "
            f"{self.speed.gpu} (estimated: {self.speed.describe(self.mixed)})."
        )


def estimated_training_time(model, profile=None, steps=None, input_size=None, speed=T4_SPEED):
    """How long ``steps`` training steps of ``model`` take on a Colab T4 (estimated).

    Counts the model's FLOPs (:func:`forward_flops`) at the profile's batch size and input
    size, and divides by :data:`T4_SPEED`, at the profile's precision: float32, or mixed
    precision for the ``gpu`` profile. Validation, callbacks and saving are not counted.

    Used in chapter 3 (A mini U-Net) and the later training chapters, which print it before
    training.

    Parameters
    ----------
    model : keras.Model
    profile : Profile or str, optional
        Defaults to :func:`select_profile`.
    steps : int
        Training steps (batches).
    input_size : int, optional
        Side of the training inputs; defaults to the model's own input size, or else the
        profile's ``tile_size`` for a valid U-Net and ``crop_size`` for a 'same' one.
    speed : SpeedAssumption

    Returns
    -------
    TrainingEstimate
    """
    if not isinstance(profile, Profile):
        profile = select_profile(profile)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive number of training steps, got {steps!r}")
    size = input_size or _training_input_size(model, profile)
    flops = 3 * forward_flops(model, size) * profile.batch_size
    return TrainingEstimate(steps, profile.batch_size, size, flops, profile.mixed_precision, speed)


def _training_input_size(model, profile):
    """The model's own input side, or the profile's tile (valid U-Net) or crop ('same') size."""
    from unet_tutorial import models

    height, width = tuple(model.inputs[0].shape)[1:3]
    if height is not None and height == width:
        return height
    kind = models._depth_and_padding(model)
    if kind is None:
        raise ValueError(f"Cannot tell the input size of {model.name!r}: pass input_size=<side in pixels>.")
    return profile.tile_size if kind[1] == "valid" else profile.crop_size


def forward_flops(model, input_size=None):
    """FLOPs of one image's forward pass through the model's convolutions and dense layers.

    A convolution costs ``2 * H_out * W_out * k * k * C_in * C_out / groups``, a transposed
    one ``2 * H_in * W_in * k * k * C_in * C_out`` (every input pixel feeds a k x k patch), a
    depthwise one ``2 * H_out * W_out * k * k * C_out``. Pooling, activations, normalisation
    and concatenation are left out (well under 1 % in a U-Net). Nested models are counted
    layer by layer; a layer called twice counts once.

    Not taught in a chapter; :func:`estimated_training_time` uses it.

    Parameters
    ----------
    model : keras.Model
    input_size : int, optional
        Side of a square input, needed when the model's input size is open (None).

    Returns
    -------
    int

    Examples
    --------
    >>> import keras
    >>> inputs = keras.Input((8, 8, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))  # 6 x 6 outputs
    >>> forward_flops(model) == 2 * 6 * 6 * 3 * 3 * 1 * 4
    True
    """
    shape = tuple(model.inputs[0].shape)
    if shape[1:3] != (input_size, input_size) and input_size is not None:
        if shape[1] is not None or shape[2] is not None:
            raise ValueError(f"{model.name!r} takes inputs of {shape[1:3]}, not {input_size} px.")
        model = _with_input_size(model, input_size)
    elif None in shape[1:3]:
        raise ValueError(f"{model.name!r} takes any input size: pass input_size=<side in pixels>.")
    return _layer_flops(model)


def _with_input_size(model, size):
    """A copy of a functional model whose open input size is fixed at ``size`` x ``size``."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            batch_shape = list(layer["config"]["batch_shape"])
            layer["config"]["batch_shape"] = [batch_shape[0], size, size, *batch_shape[3:]]
    return model.__class__.from_config(config)


def _layer_flops(model):
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _layer_flops(layer)
            continue
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "Dense"):
            continue
        inputs, outputs = tuple(layer.input.shape), tuple(layer.output.shape)
        if kind == "Dense":
            total += 2 * math.prod(inputs[1:]) * outputs[-1]
            continue
        k = math.prod(layer.kernel_size)
        if kind == "Conv2D":
            total += 2 * math.prod(outputs[1:3]) * k * inputs[-1] // layer.groups * outputs[-1]
        elif kind == "DepthwiseConv2D":
            total += 2 * math.prod(outputs[1:3]) * k * outputs[-1]
        else:
            total += 2 * math.prod(inputs[1:3]) * k * inputs[-1] * outputs[-1]
    return total


def summary(profile=None):
    """One line naming profile, backend, device and versions, so stored outputs say what made them.

    Used in chapter 1 (Semantic segmentation); every chapter prints it first.

    Parameters
    ----------
    profile : Profile or str, optional
        Defaults to :func:`select_profile`.

    Returns
    -------
    str
    """
    import keras

    from unet_tutorial import __version__

    if not isinstance(profile, Profile):
        profile = select_profile(profile)
    backend = keras.backend.backend()
    versions = [f"python {platform.python_version()}"] + [
        f"{module} {getattr(importlib.import_module(module), '__version__', '?')}"
        for module in ("keras", backend, "numpy")
    ]
    where = "Colab" if in_colab() else ("CI" if _in_ci() else "local")
    return f"profile={profile.name} | backend={backend} | device={device_name()} | {where} | " + ", ".join(
        versions + [f"unet_tutorial {__version__}"]
    )


def seed_everything(seed=0):
    """Seed Python, NumPy and the Keras backend; return a NumPy ``Generator`` for our own code.

    Same seed, same initial weights, same augmented batches (GPU kernels can still add
    small non-determinism).

    Used in chapter 2 (Augmentation) and every training chapter.

    Returns
    -------
    numpy.random.Generator
    """
    import keras
    import numpy as np

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    keras.utils.set_random_seed(int(seed))
    return np.random.default_rng(int(seed))


#: Where Colab mounts Google Drive; runs go to ``<DRIVE_MOUNTPOINT>/MyDrive/unet_tutorial``.
DRIVE_MOUNTPOINT = Path("/content/drive")
#: Why Drive could not be mounted in this session (empty: not refused), so that one refusal
#: is not followed by a permission dialog for every run folder.
_drive_refused = []


def mount_drive(mountpoint=None):
    """Mount Google Drive in Colab so that runs survive the end of the session.

    Colab asks for permission. If it is refused or times out, this prints why and returns
    None: the chapter goes on, and :func:`checkpoint_dir` keeps runs on the session's disk.
    Calling it again asks again.

    Used in chapter 5 (Training the U-Net); :func:`checkpoint_dir` calls it in Colab.

    Parameters
    ----------
    mountpoint : str or Path, optional
        Defaults to :data:`DRIVE_MOUNTPOINT`.

    Returns
    -------
    pathlib.Path or None
        ``<mountpoint>/MyDrive``, or None when Drive could not be mounted.
    """
    if not in_colab():
        raise RuntimeError(
            "Google Drive can only be mounted inside Google Colab. Locally, pass a folder to "
            "checkpoint_dir(root=...) or let it use ./checkpoints."
        )
    mountpoint = Path(mountpoint or DRIVE_MOUNTPOINT)
    my_drive = mountpoint / "MyDrive"
    if my_drive.is_dir():
        return my_drive
    from google.colab import drive  # type: ignore[import-not-found]

    try:
        drive.mount(str(mountpoint))
        if not my_drive.is_dir():
            raise FileNotFoundError(f"no {my_drive} after mounting")
    except Exception as error:  # noqa: BLE001 - refused, timed out, or Drive's own errors
        _drive_refused[:] = [f"{type(error).__name__}: {error}".strip()]
        print(f"Google Drive is not mounted ({_drive_refused[0]}).")
        return None
    _drive_refused.clear()
    return my_drive


def checkpoint_dir(name, root=None, use_drive=None):
    """A folder for one run's checkpoints, history and predictions; created if missing.

    The first that applies: ``<root>/<name>``; ``$UNET_TUTORIAL_CHECKPOINTS/<name>`` (the
    notebook runners set it to a fresh folder, so automated runs never resume an old run);
    in Colab, ``MyDrive/unet_tutorial/<name>`` on Google Drive, mounted here if needed
    (:func:`mount_drive`), so that a lost session can resume; else ``./checkpoints/<name>``.
    If Drive is refused in Colab, the run goes to ``./checkpoints/<name>`` on the session's
    disk with a printed warning that the run ends with the session; Colab does not ask
    again until :func:`mount_drive` is called. Existing files are left alone.

    Used in chapter 5 (Training the U-Net) and every chapter that trains or caches results.

    Parameters
    ----------
    name : str
        The run's name, e.g. ``"full_unet"``: letters, digits, ``-``, ``_`` and ``.``.
    root : str or Path, optional
    use_drive : bool, optional
        True: Drive or an error; False: never Drive. Defaults to Drive in Colab.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> folder = checkpoint_dir("full_unet", root=root)
    >>> folder.relative_to(root), folder.is_dir()
    (PosixPath('full_unet'), True)
    """
    if not name or any(not (c.isalnum() or c in "-_.") for c in name) or name in (".", ".."):
        raise ValueError(f"run name {name!r} must be letters, digits, '-', '_' or '.'")
    if root is None and os.environ.get("UNET_TUTORIAL_CHECKPOINTS") and not use_drive:
        root = os.environ["UNET_TUTORIAL_CHECKPOINTS"]
    if root is None and (use_drive or (use_drive is None and in_colab())):
        base = _drive_base(required=bool(use_drive), name=name)
    else:
        base = Path(root if root is not None else "checkpoints")
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _drive_base(required, name):
    """``MyDrive/unet_tutorial``, mounting Drive once; else ``checkpoints``, with a warning."""
    my_drive = DRIVE_MOUNTPOINT / "MyDrive"
    if not my_drive.is_dir() and in_colab() and not _drive_refused:
        my_drive = mount_drive() or my_drive
    if my_drive.is_dir():
        return my_drive / "unet_tutorial"
    if required:
        raise RuntimeError(
            "Google Drive is not mounted: call runtime.mount_drive() first (in Colab), or pass "
            "use_drive=False to keep the run on this machine's disk."
        )
    reason = f" ({_drive_refused[0]})" if _drive_refused else ""
    print(
        f"WARNING: Google Drive is not mounted{reason}, so the run {name!r} is kept on this "
        f"session's disk, in {Path('checkpoints').resolve() / name}. A lost or ended Colab session "
        "loses it. To keep runs on Drive, run runtime.mount_drive(), allow access, and run this "
        "cell again."
    )
    return Path("checkpoints")


class Stopwatch:
    """Measures a chapter's run time; ``str()`` gives e.g. ``"3 min 12 s"``.

    Used in chapter 1 (Semantic segmentation); every chapter starts one in its first cell.

    Examples
    --------
    >>> clock = Stopwatch()
    >>> clock.start -= 192.4  # as if started 192.4 s ago
    >>> str(clock)
    '3 min 12 s'
    """

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self):
        """Seconds since the stopwatch was created."""
        return time.perf_counter() - self.start

    def __str__(self):
        minutes, seconds = divmod(self.elapsed(), 60)
        return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"
