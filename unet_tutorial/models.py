"""U-Net models: the mini U-Net, the paper's valid network, the 'same' variant, and a
U-Net with a pretrained encoder.

Taught in chapter 3 (A mini U-Net), chapter 4 (The paper's network) and chapter 8 (Your own
data and pretrained encoders). Everything is written with Keras 3 layers, so the models
run on the TensorFlow, JAX and PyTorch backends.

Sizes: with ``padding="valid"`` every 3x3 convolution eats one pixel on each side, so a
level loses 4 pixels on the way down and 4 on the way up, and each 2x2 max-pooling needs
an even size. The border lost per side, the *context*, does not depend on the input size
(92 pixels at depth 4), which is what makes overlap-tile work (chapter 7). Valid sizes
step by ``2**depth`` (12 mod 16 from 188 on at depth 4); 'same' sizes are multiples of
``2**depth``. The book's U-Nets carry their depth and padding in their layer names
(``enc1_conv1``, one ``enc{k}_pool`` per level), which survive saving and loading; tiling
reads them with :func:`_depth_and_padding`.
"""

from __future__ import annotations

import itertools

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


def _output(size, depth, padding):
    """Output side of a U-Net for an input side, level by level; None when the size does not fit."""
    if padding == "same":
        return size if size > 0 and size % 2**depth == 0 else None
    for _ in range(depth):
        size -= 4  # two 3x3 convolutions
        if size <= 0 or size % 2:
            return None  # nothing left, or nothing that 2x2 max-pooling can halve
        size //= 2
    size -= 4  # the bottleneck
    for _ in range(depth):
        size = 2 * size - 4  # 2x2 up-convolution, two 3x3 convolutions
    return size if size > 0 else None


def output_size(input_size, depth=4, padding="valid"):
    """Output side of a U-Net of ``depth`` levels for an input side (a ValueError if it does not fit).

    Taught in chapter 4 (The paper's network).

    Examples
    --------
    >>> output_size(572), output_size(124, depth=3), output_size(512, padding="same")
    (388, 36, 512)
    """
    check_input_size(input_size, depth, padding)
    return _output(input_size, depth, padding)


def nearest_valid_sizes(input_size, depth=4, padding="valid"):
    """The valid input sizes nearest to ``input_size`` from below and from above (itself twice if it fits).

    Taught in chapter 4 (The paper's network).

    Examples
    --------
    >>> nearest_valid_sizes(570), nearest_valid_sizes(40)
    ((556, 572), (None, 188))
    """
    below = next((s for s in range(input_size, 0, -1) if _output(s, depth, padding)), None)
    return below, next(s for s in itertools.count(input_size) if _output(s, depth, padding))


def check_input_size(input_size, depth=4, padding="valid"):
    """Raise a ValueError naming the nearest valid sizes when ``input_size`` (None: any) does not fit.

    Taught in chapter 3 (A mini U-Net).
    """
    if padding not in ("valid", "same"):
        raise ValueError(f'padding must be "valid" or "same", got {padding!r}')
    if input_size is None or _output(input_size, depth, padding):
        return
    below, above = nearest_valid_sizes(input_size, depth, padding)
    rule = f"{above % 2**depth} mod {2**depth}, with a positive output"  # valid sizes step by the grid
    rule = f"a multiple of {2**depth}" if padding == "same" else rule
    nearest = f"{below} or {above}" if below else f"{above} (the smallest)"
    raise ValueError(
        f"Input size {input_size} does not fit a {padding!r} U-Net of depth {depth}: sizes must be {rule}. "
        f"Nearest valid sizes: {nearest}. Crop or mirror-pad the image, or let "
        "unet_tutorial.tiling.predict_tiled cut valid tiles for you."
    )


def valid_input_size(min_output, depth=4):
    """The smallest input side of a valid U-Net whose output side is at least ``min_output``.

    Taught in chapter 4 (The paper's network).

    Examples
    --------
    >>> valid_input_size(388), valid_input_size(500)
    (572, 684)
    """
    return next(s for s in itertools.count(1) if (_output(s, depth, "valid") or 0) >= max(min_output, 1))


def context(depth=4):
    """Pixels a valid U-Net loses on each side, ``(input - output) / 2``, whatever the input size.

    Taught in chapter 4 (The paper's network).

    Examples
    --------
    >>> context(4), context(2)
    (92, 20)
    """
    size = valid_input_size(1, depth)
    return (size - _output(size, depth, "valid")) // 2


def skip_crops(depth=4):
    """Pixels cropped from each side of each skip connection of a valid U-Net, top level first.

    4 at the lowest level, then ``2 * crop + 8`` going up. Taught in chapter 4 (The paper's network).

    Examples
    --------
    >>> skip_crops(4)  # the paper's 568 -> 392 at the top
    [88, 40, 16, 4]
    """
    return [12 * 2**level - 8 for level in reversed(range(depth))]  # crop + 8 doubles: 12, 24, 48, ...


def _depth_and_padding(model):
    """``(depth, padding)`` of a U-Net of this module, from its layer names (None for other models)."""
    names = {layer.name for layer in model.layers}
    if "mobilenet_v2_features" in names:  # the pretrained encoder halves the size 5 times
        return 5, "same"
    depth = next(level for level in itertools.count() if f"enc{level + 1}_pool" not in names)
    return (depth, model.get_layer("enc1_conv1").padding) if "enc1_conv1" in names else None


def _seeds(seed):
    """A fresh seed per layer (``seed * 1000 + 1``, ``+ 2``, ...): same seed, same initial weights."""
    return itertools.repeat(None) if seed is None else itertools.count(seed * 1000 + 1)


def _conv(x, filters, padding, name, seeds, bn=False):
    """3x3 convolution (He-normal initial weights), then batch normalisation if ``bn``, then ReLU."""
    he = keras.initializers.HeNormal(seed=next(seeds))
    x = layers.Conv2D(filters, 3, padding=padding, use_bias=not bn, kernel_initializer=he, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x) if bn else x
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _double_conv(x, filters, padding, prefix, seeds, bn=False):
    x = _conv(x, filters, padding, f"{prefix}_conv1", seeds, bn)
    return _conv(x, filters, padding, f"{prefix}_conv2", seeds, bn)


def _up(x, filters, prefix, seeds, upsampling="transpose", suffix="upconv"):
    """Twice the height and width: a 2x2 up-convolution, or 2x upsampling and a 2x2 convolution."""
    he, name = keras.initializers.HeNormal(seed=next(seeds)), f"{prefix}_{suffix}"
    if upsampling == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer=he, name=name)(x)
    x = layers.UpSampling2D(2, name=f"{prefix}_upsample")(x)
    return layers.Conv2D(filters, 2, padding="same", activation="relu", kernel_initializer=he, name=name)(x)


def _classifier(x, n_classes, seeds):
    """1x1 convolution to class scores, then sigmoid (one class) or softmax, in float32 (mixed precision)."""
    glorot = keras.initializers.GlorotUniform(seed=next(seeds))
    x = layers.Conv2D(n_classes, 1, kernel_initializer=glorot, name="classifier")(x)
    activation = "sigmoid" if n_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"output_{activation}")(x)


def mini_unet(input_shape=(128, 128, 1), n_classes=1, base_filters=16, dropout=0.1, seed=None):
    """A small U-Net: two down-sampling levels, 'same' padding, a dropout inside every block.

    Taught in chapter 3 (A mini U-Net), which builds the same network layer by layer.

    Parameters
    ----------
    input_shape : (height, width, channels); height and width multiples of 4, or None
    n_classes : int, 1 for a sigmoid output, more for a softmax
    base_filters : int, the first level's filters, doubled at each level down
    dropout : float
    seed : int, optional; the same seed gives the same initial weights
    """
    for side in input_shape[:2]:
        check_input_size(side, 2, "same")
    seeds = _seeds(seed)

    def block(x, filters, prefix):
        x = _conv(x, filters, "same", f"{prefix}_conv1", seeds)
        x = layers.Dropout(dropout, seed=next(seeds), name=f"{prefix}_dropout")(x)
        return _conv(x, filters, "same", f"{prefix}_conv2", seeds)

    inputs = keras.Input(input_shape, name="image")
    e1 = block(inputs, base_filters, "enc1")
    e2 = block(layers.MaxPooling2D(2, name="enc1_pool")(e1), base_filters * 2, "enc2")
    b = block(layers.MaxPooling2D(2, name="enc2_pool")(e2), base_filters * 4, "bottleneck")
    u2 = _up(b, base_filters * 2, "dec2", seeds, suffix="up")
    d2 = block(layers.Concatenate(name="dec2_concat")([u2, e2]), base_filters * 2, "dec2")
    u1 = _up(d2, base_filters, "dec1", seeds, suffix="up")
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
    seed=None,
):
    """The U-Net of Ronneberger, Fischer and Brox (2015), and its common 'same' variant.

    ``padding="valid"`` is the paper's: unpadded 3x3 convolutions, 2x2 max-pooling and up-convolutions,
    skip connections cropped at the centre, dropout at the end of the contracting path; 572 in, 388 out,
    31,030,593 parameters. ``padding="same"`` keeps the size. Taught in chapter 4 (The paper's network).

    Parameters
    ----------
    input_shape : (height, width, channels); None for a side that may vary
    n_classes : int, 1 for a sigmoid output, more for a softmax
    depth, base_filters : int, the down-sampling steps and the top level's filters (doubled each level down)
    dropout : float, the rate of the dropouts at the end of the contracting path (0: none)
    upsampling : {"transpose", "upsample_conv"}; upsample_conv is zhixuhao/unet's upsampling + 2x2 convolution
    seed : int, optional; the same seed gives the same initial weights
    """
    if upsampling not in ("transpose", "upsample_conv"):
        raise ValueError(f'upsampling must be "transpose" or "upsample_conv", got {upsampling!r}')
    for side in input_shape[:2]:
        check_input_size(side, depth, padding)
    seeds, crops = _seeds(seed), skip_crops(depth) if padding == "valid" else [0] * depth
    x = inputs = keras.Input(input_shape, name="image")
    skips = []
    for level in range(1, depth + 1):
        x = _double_conv(x, base_filters * 2 ** (level - 1), padding, f"enc{level}", seeds)
        if dropout and level == depth:
            x = layers.Dropout(dropout, seed=next(seeds), name=f"enc{level}_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = _double_conv(x, base_filters * 2**depth, padding, "bottleneck", seeds)
    if dropout:
        x = layers.Dropout(dropout, seed=next(seeds), name="bottleneck_dropout")(x)
    for level in range(depth, 0, -1):
        filters, skip, crop = base_filters * 2 ** (level - 1), skips[level - 1], crops[level - 1]
        x = _up(x, filters, f"dec{level}", seeds, upsampling)
        skip = layers.Cropping2D(crop, name=f"dec{level}_crop")(skip) if crop else skip
        x = layers.Concatenate(name=f"dec{level}_concat")([skip, x])
        x = _double_conv(x, filters, padding, f"dec{level}", seeds)
    outputs = _classifier(x, n_classes, seeds)
    return keras.Model(inputs, outputs, name=f"unet_{padding}_d{depth}_f{base_filters}")


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
    """A U-Net whose contracting path is ImageNet-trained MobileNetV2 (``keras.applications``).

    Images in [0, 1] go in; the model rescales them to the encoder's [-1, 1] and repeats grayscale
    to three channels. Height and width must be multiples of 32.

    Taught in chapter 8 (Your own data and pretrained encoders).

    Parameters
    ----------
    input_shape : (height, width, channels) with 1 or 3 channels
    n_classes : int
    backbone : {"mobilenet_v2"}
    weights : "imagenet" (downloaded once into ~/.keras/models) or None (random, offline)
    freeze_encoder : bool, keep the encoder's weights fixed (train only the decoder at first)
    seed : int, optional; the same seed gives the same initial decoder weights (the encoder's come
        from ImageNet, or with ``weights=None`` from Keras' global seed: runtime.seed_everything)
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

    seeds = _seeds(seed)
    x = inputs = keras.Input(input_shape, name="image")
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)
    *skips, x = feature_model(x)
    for i, (skip, filters) in enumerate(zip(reversed(skips), (256, 128, 64, 32))):
        x = _up(x, filters, f"dec{4 - i}", seeds)
        x = layers.Concatenate(name=f"dec{4 - i}_concat")([x, skip])
        x = _double_conv(x, filters, "same", f"dec{4 - i}", seeds, bn=True)
    x = _up(x, 16, "dec0", seeds)
    x = _double_conv(x, 16, "same", "dec0", seeds, bn=True)
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
