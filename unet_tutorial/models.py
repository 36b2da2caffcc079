"""U-Net models: the mini U-Net, the paper's valid network, the 'same' variant, and a
U-Net with a pretrained encoder.

Taught in chapter 3 (A mini U-Net), chapter 4 (The full U-Net) and chapter 7 (Your own
data and pretrained encoders). Everything is written with Keras 3 layers, so the models
run on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = [
    "output_size",
    "valid_input_size",
    "context",
    "nearest_valid_sizes",
    "check_input_size",
    "mini_unet",
    "unet",
    "pretrained_unet",
    "skip_crops",
]


# --------------------------------------------------------------------------------------
# Tile arithmetic
# --------------------------------------------------------------------------------------


def _check_depth(depth):
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")


def output_size(input_size, depth=4, padding="valid"):
    """Side length of the output of a U-Net for a given input side length.

    With ``padding="valid"`` every 3x3 convolution eats one pixel on each side, so a
    level loses 4 pixels on the way down and 4 on the way up; each 2x2 max-pooling needs
    an even size. 572 gives 388 and 700 gives 516 at depth 4 (the paper's figures).
    With ``padding="same"`` the output has the input's size, which must be a multiple
    of ``2**depth``.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    input_size : int
        Input height or width in pixels.
    depth : int
        Number of down-sampling steps (4 in the paper).
    padding : {"valid", "same"}

    Returns
    -------
    int
        The output side length.

    Raises
    ------
    ValueError
        If the size does not fit the network; the message names the nearest valid sizes.

    Examples
    --------
    >>> output_size(572)
    388
    >>> output_size(124, depth=3)
    36
    >>> output_size(512, padding="same")
    512
    """
    check_input_size(input_size, depth, padding)
    return _valid_output(input_size, depth) if padding == "valid" else int(input_size)


def _valid_output(size, depth):
    """Output size of a valid U-Net, or None when ``size`` does not fit."""
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4
        if size <= 0:
            return None
    return size


def _fits(size, depth, padding):
    if padding == "same":
        return size > 0 and size % (2**depth) == 0
    return _valid_output(size, depth) is not None


def nearest_valid_sizes(input_size, depth=4, padding="valid"):
    """The valid input sizes just below and just above ``input_size``.

    Taught in chapter 4 (The full U-Net).

    Returns
    -------
    tuple of (int or None, int)
        ``(below, above)``; ``below`` is None when no smaller size fits.
        If ``input_size`` itself fits, both are ``input_size``.

    Examples
    --------
    >>> nearest_valid_sizes(570)
    (556, 572)
    >>> nearest_valid_sizes(40)
    (None, 188)
    """
    _check_depth(depth)
    _check_padding(padding)
    size = int(input_size)
    if _fits(size, depth, padding):
        return size, size
    below = next((s for s in range(size - 1, 0, -1) if _fits(s, depth, padding)), None)
    above = max(size + 1, 1)
    while not _fits(above, depth, padding):
        above += 1
    return below, above


def check_input_size(input_size, depth=4, padding="valid"):
    """Raise a ValueError naming the nearest valid sizes when ``input_size`` does not fit.

    Taught in chapter 4 (The full U-Net), and used in chapter 3 (A mini U-Net) for the
    'same' network's sizes: a valid U-Net of depth 4 takes sizes that are
    12 mod 16 (and at least 188), a 'same' U-Net multiples of 16.
    """
    _check_depth(depth)
    _check_padding(padding)
    if input_size is None:
        return
    if not float(input_size).is_integer():
        raise ValueError(f"input size must be a whole number of pixels, got {input_size!r}")
    if _fits(int(input_size), depth, padding):
        return
    below, above = nearest_valid_sizes(input_size, depth, padding)
    rule = (
        f"a multiple of {2 ** depth}"
        if padding == "same"
        else f"{(2 ** (depth + 2) - 4) % 2 ** depth} mod {2 ** depth}, with a positive output"
    )
    nearest = f"{below} or {above}" if below is not None else f"{above} (the smallest)"
    raise ValueError(
        f"Input size {input_size} does not fit a {padding!r} U-Net of depth {depth}: sizes "
        f"must be {rule}. Nearest valid sizes: {nearest}. Crop or mirror-pad the image, "
        f"or let unet_tutorial.tiling.predict_tiled cut valid tiles for you."
    )


def valid_input_size(min_output, depth=4):
    """Smallest valid-padding input size whose output is at least ``min_output``.

    Taught in chapter 4 (The full U-Net) and chapter 6 (Overlap-tile).

    Examples
    --------
    >>> valid_input_size(388)
    572
    >>> valid_input_size(500)
    684
    """
    _check_depth(depth)
    if min_output < 1:
        raise ValueError(f"min_output must be at least 1, got {min_output}")
    size = 1
    while True:
        out = _valid_output(size, depth)
        if out is not None and out >= min_output:
            return size
        size += 1


def context(depth=4):
    """Pixels a valid U-Net eats on each side: ``(input - output) / 2`` (92 at depth 4).

    It does not depend on the input size, which is what makes overlap-tile work.
    Taught in chapter 4 (The full U-Net); chapter 6 (Overlap-tile on Colab GPUs) builds on it.

    Examples
    --------
    >>> context(4), context(2)
    (92, 20)
    """
    _check_depth(depth)
    size = valid_input_size(1, depth)
    return (size - _valid_output(size, depth)) // 2


def skip_crops(depth=4):
    """Pixels cropped from each side of each skip connection of a valid U-Net, top level first.

    The encoder map at a level is larger than the decoder map it joins by a fixed amount
    that does not depend on the input size: 4 at the lowest level, then ``2 * c + 8``
    going up (88, 40, 16, 4 at depth 4, as in the paper's 568 -> 392 crop).

    Taught in chapter 4 (The full U-Net).

    Examples
    --------
    >>> skip_crops(4)
    [88, 40, 16, 4]
    """
    _check_depth(depth)
    crops = [4]
    for _ in range(depth - 1):
        crops.append(2 * crops[-1] + 8)
    return crops[::-1]


def _depth_and_padding(model):
    """``(depth, padding)`` of a U-Net built by this module, read from its layer names; else None.

    The names survive ``model.save`` and ``keras.saving.load_model``: ``enc1_conv1`` carries
    the padding and there is one ``enc{k}_pool`` per level; the pretrained encoder
    (``mobilenet_v2_features``) halves the size 5 times, with 'same' padding.
    :mod:`unet_tutorial.tiling` derives the context and pooling grid from them.
    """
    names = {layer.name for layer in model.layers}
    if "mobilenet_v2_features" in names:
        return 5, "same"
    if "enc1_conv1" not in names:
        return None
    depth = 0
    while f"enc{depth + 1}_pool" in names:
        depth += 1
    return depth, model.get_layer("enc1_conv1").padding


def _check_padding(padding):
    if padding not in ("valid", "same"):
        raise ValueError(f'padding must be "valid" or "same", got {padding!r}')


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


class _Seeds:
    """Hands out a fresh seed per layer so that same-seed builds give identical weights."""

    def __init__(self, seed):
        self.seed = seed
        self.count = 0

    def next(self):
        if self.seed is None:
            return None
        self.count += 1
        return self.seed * 1000 + self.count


def _conv(x, filters, padding, name, seeds, batch_norm=False, kernel_size=3):
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding=padding,
        use_bias=not batch_norm,
        kernel_initializer=keras.initializers.HeNormal(seed=seeds.next()),
        name=name,
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _double_conv(x, filters, padding, prefix, seeds, batch_norm):
    x = _conv(x, filters, padding, f"{prefix}_conv1", seeds, batch_norm)
    return _conv(x, filters, padding, f"{prefix}_conv2", seeds, batch_norm)


def _classifier(x, n_classes, seeds):
    """1x1 convolution to class scores, then sigmoid or softmax kept in float32.

    float32 output keeps the loss stable under mixed precision (chapter 6).
    """
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    x = layers.Conv2D(
        n_classes,
        1,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds.next()),
        name="classifier",
    )(x)
    activation = "sigmoid" if n_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"output_{activation}")(x)


def _check_input_shape(input_shape, depth, padding):
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}; "
            "use None for a height or width that may vary"
        )
    for side in input_shape[:2]:
        check_input_size(side, depth, padding)


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def mini_unet(input_shape=(128, 128, 1), n_classes=1, base_filters=16, dropout=0.1, seed=None):
    """A small U-Net with two down-sampling levels and 'same' padding.

    Each level is two 3x3 convolutions with a dropout between them, as the short
    tutorials build it. Output has the input's height and width.

    Taught in chapter 3 (A mini U-Net), which builds the same network layer by layer.

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)``; height and width multiples of 4, or None.
    n_classes : int
        1 for a sigmoid output (binary), 2 or more for a softmax.
    base_filters : int
        Filters of the first level; doubled at each level down.
    dropout : float
        Dropout rate between the two convolutions of every block.
    seed : int, optional
        Same seed, same initial weights.

    Returns
    -------
    keras.Model
    """
    _check_input_shape(input_shape, 2, "same")
    seeds = _Seeds(seed)

    def block(x, filters, prefix):
        x = _conv(x, filters, "same", f"{prefix}_conv1", seeds)
        x = layers.Dropout(dropout, seed=seeds.next(), name=f"{prefix}_dropout")(x)
        return _conv(x, filters, "same", f"{prefix}_conv2", seeds)

    inputs = keras.Input(input_shape, name="image")
    e1 = block(inputs, base_filters, "enc1")
    e2 = block(layers.MaxPooling2D(2, name="enc1_pool")(e1), base_filters * 2, "enc2")
    b = block(layers.MaxPooling2D(2, name="enc2_pool")(e2), base_filters * 4, "bottleneck")
    u2 = _transpose(b, base_filters * 2, "dec2_up", seeds)
    d2 = block(layers.Concatenate(name="dec2_concat")([u2, e2]), base_filters * 2, "dec2")
    u1 = _transpose(d2, base_filters, "dec1_up", seeds)
    d1 = block(layers.Concatenate(name="dec1_concat")([u1, e1]), base_filters, "dec1")
    return keras.Model(inputs, _classifier(d1, n_classes, seeds), name="mini_unet")


def unet(
    input_shape=(572, 572, 1),
    n_classes=1,
    padding="valid",
    depth=4,
    base_filters=64,
    dropout=0.5,
    upsampling="transpose",
    batch_norm=False,
    seed=None,
    name=None,
):
    """The U-Net of Ronneberger, Fischer and Brox (2015), and its common 'same' variant.

    ``padding="valid"`` is the paper's network: unpadded 3x3 convolutions, 2x2
    max-pooling, 2x2 up-convolutions halving the channels, encoder maps cropped at the
    centre before they are concatenated, dropout at the end of the contracting path and
    He-normal initialisation. 572x572 in, 388x388 out, 31,030,593 parameters for one
    output channel. ``padding="same"`` keeps the output the input's size.
    ``upsampling="upsample_conv"`` replaces each up-convolution by a 2x upsampling and a
    2x2 convolution, the decoder of zhixuhao/unet.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)``; None for a height or width that may vary (the
        model is fully convolutional; chapter 6 predicts whole images with it).
    n_classes : int
        1 ends in a sigmoid (binary segmentation), 2 or more in a softmax.
    padding : {"valid", "same"}
    depth : int
        Number of down-sampling steps.
    base_filters : int
        Filters at the top level (64 in the paper); doubled at each level down.
    dropout : float
        Rate of the dropout at the end of the contracting path (0 to disable).
    upsampling : {"transpose", "upsample_conv"}
    batch_norm : bool
        Add batch normalisation after each convolution (not in the paper).
    seed : int, optional
        Same seed, same initial weights.
    name : str, optional
        Defaults to e.g. ``"unet_valid_d4_f64"``.

    Returns
    -------
    keras.Model

    Raises
    ------
    ValueError
        For an input size that does not fit; the message names the nearest valid sizes.
    """
    _check_padding(padding)
    _check_depth(depth)
    if upsampling not in ("transpose", "upsample_conv"):
        raise ValueError(f'upsampling must be "transpose" or "upsample_conv", got {upsampling!r}')
    _check_input_shape(input_shape, depth, padding)
    seeds = _Seeds(seed)
    crops = skip_crops(depth) if padding == "valid" else [0] * depth

    inputs = keras.Input(input_shape, name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = _double_conv(x, base_filters * 2**level, padding, f"enc{level + 1}", seeds, batch_norm)
        if dropout and level == depth - 1:
            x = layers.Dropout(dropout, seed=seeds.next(), name=f"enc{level + 1}_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)

    x = _double_conv(x, base_filters * 2**depth, padding, "bottleneck", seeds, batch_norm)
    if dropout:
        x = layers.Dropout(dropout, seed=seeds.next(), name="bottleneck_dropout")(x)

    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        prefix = f"dec{level + 1}"
        x = _up(x, filters, upsampling, prefix, seeds)
        skip = skips[level]
        if crops[level]:
            skip = layers.Cropping2D(crops[level], name=f"{prefix}_crop")(skip)
        x = layers.Concatenate(name=f"{prefix}_concat")([skip, x])
        x = _double_conv(x, filters, padding, prefix, seeds, batch_norm)

    outputs = _classifier(x, n_classes, seeds)
    name = name or f"unet_{padding}_d{depth}_f{base_filters}"
    return keras.Model(inputs, outputs, name=name)


def _transpose(x, filters, name, seeds):
    """2x2 up-convolution with stride 2: doubles height and width."""
    init = keras.initializers.HeNormal(seed=seeds.next())
    return layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer=init, name=name)(x)


def _up(x, filters, upsampling, prefix, seeds):
    if upsampling == "transpose":
        return _transpose(x, filters, f"{prefix}_upconv", seeds)
    init = keras.initializers.HeNormal(seed=seeds.next())
    x = layers.UpSampling2D(2, name=f"{prefix}_upsample")(x)
    return layers.Conv2D(
        filters, 2, padding="same", activation="relu", kernel_initializer=init, name=f"{prefix}_upconv"
    )(x)


# --------------------------------------------------------------------------------------
# Pretrained encoder
# --------------------------------------------------------------------------------------

_MOBILENET_V2_SKIPS = (
    "block_1_expand_relu",  # 1/2
    "block_3_expand_relu",  # 1/4
    "block_6_expand_relu",  # 1/8
    "block_13_expand_relu",  # 1/16
)
_MOBILENET_V2_BOTTOM = "block_16_project"  # 1/32


def pretrained_unet(
    input_shape=(224, 224, 3),
    n_classes=1,
    backbone="mobilenet_v2",
    weights="imagenet",
    freeze_encoder=True,
    seed=None,
):
    """A U-Net whose contracting path is a ``keras.applications`` network.

    Images in [0, 1] go in; the model rescales them to the [-1, 1] the encoder expects.
    Grayscale inputs are repeated to three channels. Height and width must be multiples
    of 32.

    Taught in chapter 7 (Your own data and pretrained encoders).

    Parameters
    ----------
    input_shape : tuple
        ``(height, width, channels)`` with 1 or 3 channels.
    n_classes : int
    backbone : {"mobilenet_v2"}
    weights : {"imagenet", None} or str
        ``"imagenet"`` downloads the encoder's weights once into ``~/.keras/models``;
        None starts from random weights and works offline.
    freeze_encoder : bool
        Keep the encoder's weights fixed (train only the decoder at first).
    seed : int, optional
        Same seed, same initial decoder weights. The encoder's weights come from
        ImageNet, or with ``weights=None`` from Keras' global seed
        (:func:`unet_tutorial.runtime.seed_everything`).

    Returns
    -------
    keras.Model

    Raises
    ------
    RuntimeError
        When the ImageNet weights cannot be fetched (offline, say); the message says
        how to work offline.
    """
    if backbone != "mobilenet_v2":
        raise ValueError(f'backbone must be "mobilenet_v2" (the only one wired up), got {backbone!r}')
    height, width, channels = input_shape
    for side in (height, width):
        if side is None or side % 32:
            raise ValueError(
                f"pretrained_unet needs height and width that are multiples of 32, got {input_shape!r}; "
                f"nearest: {32 * max(1, round((side or 32) / 32))}"
            )
    if channels not in (1, 3):
        raise ValueError(f"input must have 1 or 3 channels, got {channels}")

    encoder = _mobilenet_v2((height, width, 3), weights)
    feature_model = keras.Model(
        encoder.input,
        [encoder.get_layer(n).output for n in (*_MOBILENET_V2_SKIPS, _MOBILENET_V2_BOTTOM)],
        name="mobilenet_v2_features",
    )
    # Freeze the layer the U-Net holds, so `layer.trainable = True` on it unfreezes again.
    feature_model.trainable = not freeze_encoder

    seeds = _Seeds(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)
    *skips, x = feature_model(x)
    for i, (skip, filters) in enumerate(zip(reversed(skips), (256, 128, 64, 32))):
        x = _up(x, filters, "transpose", f"dec{4 - i}", seeds)
        x = layers.Concatenate(name=f"dec{4 - i}_concat")([x, skip])
        x = _double_conv(x, filters, "same", f"dec{4 - i}", seeds, batch_norm=True)
    x = _up(x, 16, "transpose", "dec0", seeds)
    x = _double_conv(x, 16, "same", "dec0", seeds, batch_norm=True)
    return keras.Model(inputs, _classifier(x, n_classes, seeds), name=f"unet_{backbone}")


def _mobilenet_v2(input_shape, weights):
    """``keras.applications.MobileNetV2`` without its top; a failed download says how to work offline."""
    try:
        return keras.applications.MobileNetV2(input_shape=input_shape, include_top=False, weights=weights)
    except Exception as error:  # noqa: BLE001 - any fetch failure gets the same advice
        if weights != "imagenet":
            raise
        raise RuntimeError(
            "Could not fetch the ImageNet weights of MobileNetV2 "
            f"({type(error).__name__}: {error}). Connect to the internet once (the file is then "
            "cached in ~/.keras/models), copy that cached file onto this machine, or build the "
            "model with weights=None to train from scratch offline."
        ) from error
