"""Tooling: what a GPU changes: mixed precision, and how long training is estimated to take.

Not a part of the U-Net. :func:`precision` builds a chapter's model in mixed precision where
the GPU supports it (float16 on compute capability 7.x such as a T4, bfloat16 on 8.0 and
newer); :func:`in_float32` makes a float32 copy for predictions that are compared to 1e-5.
Until a T4 run is measured, :func:`estimated_training_time` estimates a chapter's training
time from its FLOPs (:func:`forward_flops`) and one stated throughput assumption,
:data:`T4_SPEED`, with its source.

Used in chapter 3 (A mini U-Net) and the other chapters that train, right before training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import math

from unet_tutorial.runtime import Profile, select_profile

__all__ = [
    "precision_policy",
    "precision",
    "in_float32",
    "SpeedAssumption",
    "T4_SPEED",
    "TrainingEstimate",
    "estimated_training_time",
    "forward_flops",
]


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
        """``"≈ 11 min"``; seconds below one minute (``"≈ 18 s"``), and ``"< 1 s"``."""
        if self.minutes >= 1:
            return f"≈ {self.minutes:.0f} min"
        return f"≈ {self.seconds:.0f} s" if self.seconds >= 1 else "< 1 s"

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
