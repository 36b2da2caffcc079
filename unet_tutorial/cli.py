"""Tooling: the command line, ``python -m unet_tutorial train | predict | evaluate``.

The three jobs of the ``main.py`` that many Keras U-Net repositories ship, done the
book's way: training with checkpoints that resume after an interruption (run the
same ``train`` command again), overlap-tile prediction of images of any size, and
the ISBI scores of the validation slices. ``python -m unet_tutorial <command> --help``
lists every option with its default.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

__all__ = ["main"]

_EPILOG = "Defaults marked 'profile' come from --profile (see unet_tutorial.runtime.PROFILES)."


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every meaningful default; None (decided elsewhere, said in the help) and off-flags are not."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


# --------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------


def _add_data_options(parser):
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default="isbi2012",
        help="'isbi2012' (the challenge stacks, found via --data-dir, $UNET_TUTORIAL_DATA or the "
        "download cache), 'synthetic' (generated EM-like slices, no download), or a FOLDER of "
        "images (then --masks is needed)",
    )
    group.add_argument(
        "--masks",
        default=None,
        help="folder of binary masks (0/1 or 0/255) paired with --data FOLDER by file name",
    )
    group.add_argument(
        "--data-dir", default=None, help="folder holding isbi2012/ or the three ISBI .tif files"
    )
    group.add_argument(
        "--no-download", action="store_true", help="never download ISBI 2012; fail if it is not on disk"
    )
    group.add_argument(
        "--n-val",
        type=int,
        default=5,
        help="last N images held out for validation (fewer if the data is small)",
    )
    group.add_argument("--synthetic-size", type=int, default=512, help="side of synthetic slices in pixels")
    group.add_argument(
        "--seed", type=int, default=0, help="seed for weights, crops, augmentation and synthetic data"
    )


def _add_common_options(parser):
    parser.add_argument(
        "--profile",
        choices=("smoke", "cpu", "gpu"),
        default=None,
        help="runtime profile; default: $UNET_TUTORIAL_PROFILE, 'smoke' under CI, "
        "'gpu' if Keras sees a GPU, else 'cpu'",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")


def _add_train_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        formatter_class=_Formatter,
        epilog=_EPILOG,
        help="train a U-Net with checkpoints; rerun the same command to resume",
        description="Train a U-Net on random, augmented crops. The run folder (--out) receives "
        "last.keras, best.keras, history.csv and state.json; running the same command again "
        "resumes an interrupted run with its epoch count and optimizer state.",
    )
    _add_common_options(parser)
    _add_data_options(parser)
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        choices=("valid", "same", "mini"),
        default="valid",
        help="'valid': the paper's U-Net (output smaller than input); 'same': padded "
        "convolutions; 'mini': the two-level U-Net of chapter 3",
    )
    group.add_argument("--base-filters", type=int, default=None, help="filters of the first level (profile)")
    group.add_argument(
        "--depth", type=int, default=None, help="down-sampling steps of valid/same U-Nets (profile)"
    )
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=None, help="total epochs of the run (profile)")
    group.add_argument("--steps", type=int, default=None, help="batches per epoch (profile)")
    group.add_argument("--batch-size", type=int, default=None, help="crops per batch (profile)")
    group.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="input crop side: profile tile_size for 'valid', crop_size for 'same'/'mini'",
    )
    group.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    group.add_argument(
        "--weight-maps",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="weight the loss by the paper's border weight maps (chapter 6; cached in the run folder)",
    )
    group.add_argument(
        "--elastic",
        action="store_true",
        help="add the paper's elastic deformations to the flips, rotations and grey-value changes",
    )
    group.add_argument(
        "--score-every",
        type=int,
        default=1,
        help="compute V_Rand on the whole validation images every N epochs (0: never)",
    )
    group.add_argument(
        "--monitor",
        default=None,
        help="log key that picks best.keras; default val_v_rand when scoring, else val_loss",
    )
    group.add_argument(
        "--mode",
        choices=("min", "max"),
        default=None,
        help="whether a smaller or larger --monitor is better; needed only for names the "
        "package does not log itself",
    )
    group.add_argument(
        "--preview",
        action="store_true",
        help="write preview.png (input | truth | prediction) into the run folder each epoch",
    )
    group.add_argument(
        "--eager",
        action="store_true",
        help="run Keras eagerly, without graph compilation: slower steps but no start-up "
        "cost; "
        "for debugging and tiny smoke runs",
    )
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out",
        default=None,
        help="run folder; default checkpoints/cli_<model>_f<filters> (on Google Drive in "
        "Colab "
        "when it is mounted)",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run files in --out and start afresh instead of resuming",
    )
    group.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras progress display: 0 silent, 1 progress bar, 2 one line per epoch",
    )
    parser.set_defaults(handler=_train)


def _add_model_file_options(parser):
    parser.add_argument(
        "--weights",
        required=True,
        help="trained model: a .keras file (e.g. RUN/best.keras), or .weights.h5 with "
        "--model "
        "and --base-filters",
    )
    parser.add_argument(
        "--model",
        choices=("valid", "same", "mini"),
        default=None,
        help="architecture the file must hold (checked); needed for .weights.h5",
    )
    parser.add_argument("--base-filters", type=int, default=None, help="filters the file must have (checked)")
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        help="depth the file must have (checked); builds the network for .weights.h5 (profile)",
    )
    parser.add_argument("--tta", action="store_true", help="average the 8 flips and rotations (8x slower)")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="input tile side for overlap-tile prediction (default: the model's; see tiling.plan_tiles)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="tiles per model call (profile)")


def _add_predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        formatter_class=_Formatter,
        epilog=_EPILOG,
        help="segment images with a trained model (overlap-tile, any size)",
        description="Predict cell probabilities for images of any size by overlap-tile and save, for each "
        "image NAME, NAME_prob.png (0..255) and NAME_mask.png (0 or 255) in --out. Existing "
        "files are never replaced unless --overwrite is given.",
    )
    _add_common_options(parser)
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image folders, image files (PNG, TIFF, JPEG, BMP) or multi-page TIFF stacks",
    )
    _add_model_file_options(parser)
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--threshold", type=float, default=0.5, help="cell threshold for the masks")
    parser.add_argument(
        "--isbi-tif",
        default=None,
        help="also write all predictions as one float32 TIFF stack in the ISBI 2012 "
        "submission "
        "layout (1 = cell, 0 = membrane)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(handler=_predict)


def _add_evaluate_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        formatter_class=_Formatter,
        epilog=_EPILOG,
        help="score a trained model on the validation split",
        description="Predict the validation images (the last --n-val of the data, as in training) and print "
        "pixel error, IoU, Dice, V_Rand and V_Info per image and their mean.",
    )
    _add_common_options(parser)
    _add_data_options(parser)
    _add_model_file_options(parser)
    parser.set_defaults(handler=_evaluate)


def _build_parser():
    """The ``argparse`` parser of ``python -m unet_tutorial``."""
    parser = argparse.ArgumentParser(
        prog="python -m unet_tutorial",
        formatter_class=_Formatter,
        description="Train, apply and evaluate the U-Nets of the U-Net tutorial book.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,evaluate}")
    _add_train_parser(subparsers)
    _add_predict_parser(subparsers)
    _add_evaluate_parser(subparsers)
    return parser


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def _positive(value, name):
    if value is not None and value < 1:
        raise ValueError(f"--{name} must be a positive integer, got {value}")
    return value


def _split_last(images, masks, n_val):
    n = len(images)
    if n < 2:
        raise ValueError(f"need at least 2 images (one to train on, one to validate), found {n}")
    n_val = max(1, min(n_val, n // 4 or 1))
    return images[: n - n_val], masks[: n - n_val], images[n - n_val :], masks[n - n_val :]


def _load_split(args, profile):
    """(x_train, y_train, x_val, y_val) as lists of arrays, and a note for synthetic data."""
    from unet_tutorial import data, folders, synthetic

    _positive(args.n_val, "n-val")
    if args.data == "isbi2012":
        dataset = data.load_isbi2012(args.data_dir, download=not args.no_download)
        x_train, y_train, x_val, y_val = data.split_isbi2012(dataset, n_val=args.n_val)
    elif args.data == "synthetic":
        n_train = profile.max_images or max(1, 30 - args.n_val)
        size = _positive(args.synthetic_size, "synthetic-size")
        images, masks = synthetic.synthetic_membranes(n_train + args.n_val, size, args.seed)
        x_train, y_train, x_val, y_val = images[:n_train], masks[:n_train], images[n_train:], masks[n_train:]
    else:
        if args.masks is None:
            raise ValueError(
                f"--data {args.data} is a folder of images: also pass --masks FOLDER with their masks"
            )
        folder = folders.load_folder(args.data, args.masks, as_gray=True)
        x_train, y_train, x_val, y_val = _split_last(list(folder.images), list(folder.masks), args.n_val)
    if profile.max_images:
        x_train, y_train = x_train[: profile.max_images], y_train[: profile.max_images]
    return list(x_train), list(y_train), list(x_val), list(y_val)


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def _build_model(kind, base_filters, depth, seed):
    from unet_tutorial import models

    if kind == "mini":
        return models.mini_unet((None, None, 1), base_filters=base_filters, seed=seed)
    return models.unet((None, None, 1), padding=kind, depth=depth, base_filters=base_filters, seed=seed)


def _crop_sizes(kind, tile_size, depth):
    """(input, output) crop sides for training."""
    from unet_tutorial import models

    if kind == "valid":
        return tile_size, models.output_size(tile_size, depth, "valid")
    models.check_input_size(tile_size, 2 if kind == "mini" else depth, "same")
    return tile_size, tile_size


def _expected_architecture(args):
    expected = {}
    if args.model is not None:
        expected["padding"] = "valid" if args.model == "valid" else "same"
        if args.model == "mini":
            expected["depth"] = 2
    if args.base_filters is not None:
        expected["base_filters"] = args.base_filters
    if args.depth is not None:
        expected["depth"] = args.depth
    return expected


def _load_trained_model(args, profile):
    from unet_tutorial import model_files

    path = Path(args.weights)
    expected = _expected_architecture(args)
    if str(path).endswith(".weights.h5"):
        if args.model is None or args.base_filters is None:
            raise ValueError(
                f"{path} holds weights only: pass --model and --base-filters to build the network"
            )
        model = _build_model(args.model, args.base_filters, args.depth or profile.depth, seed=None)
        return model_files.load_weights_checked(model, path)
    return model_files.load_model_checked(path, expected=expected or None, compile=False)


def _predict_all(model, images, args, profile):
    from unet_tutorial import data, tiling
    from unet_tutorial.callbacks import cell_probability

    batch_size = _positive(args.batch_size, "batch-size") or profile.predict_batch_size
    probs = []
    for i, image in enumerate(images, start=1):
        prob = tiling.predict_tiled(
            model, data.to_float(image), tile_size=args.tile_size, batch_size=batch_size, tta=args.tta
        )
        probs.append(cell_probability(prob))
        if sys.stdout.isatty():
            print(f"\rpredicted {i}/{len(images)}", end="", flush=True)
    print(f"\rpredicted {len(images)} image(s)")
    return probs


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _augment_params(elastic):
    from unet_tutorial import augment

    return dict(augment.PAPER_PARAMS, elastic=bool(elastic))


def _train(args):
    import keras

    from unet_tutorial import callbacks, dataset, losses, metrics, runtime, training

    profile = runtime.select_profile(args.profile)
    print(runtime.summary(profile))
    runtime.seed_everything(args.seed)
    base_filters = _positive(args.base_filters, "base-filters") or profile.base_filters
    depth = 2 if args.model == "mini" else (_positive(args.depth, "depth") or profile.depth)
    epochs = _positive(args.epochs, "epochs") or profile.epochs
    steps = _positive(args.steps, "steps") or profile.steps_per_epoch
    batch_size = _positive(args.batch_size, "batch-size") or profile.batch_size
    default_tile = profile.tile_size if args.model == "valid" else profile.crop_size
    tile = _positive(args.tile_size, "tile-size") or default_tile
    input_size, output_size = _crop_sizes(args.model, tile, depth)
    run_dir = Path(args.out) if args.out else runtime.checkpoint_dir(f"cli_{args.model}_f{base_filters}")

    x_train, y_train, x_val, y_val = _load_split(args, profile)
    print(
        f"data: {len(x_train)} training and {len(x_val)} validation images ({args.data}); "
        f"crops {input_size} -> {output_size}; run folder {run_dir}"
    )
    w_train = w_val = None
    if args.weight_maps:
        w_train = _weight_maps(y_train, run_dir / "weight_maps")
        w_val = _weight_maps(y_val, run_dir / "weight_maps")

    train_data = dataset.SegmentationDataset(
        x_train,
        y_train,
        input_size,
        output_size,
        weights=w_train,
        batch_size=batch_size,
        steps_per_epoch=steps,
        augment=_augment_params(args.elastic),
        seed=args.seed,
    )
    val_data = dataset.SegmentationDataset(
        x_val,
        y_val,
        input_size,
        output_size,
        weights=w_val,
        batch_size=batch_size,
        steps_per_epoch=max(1, len(x_val)),
        augment=None,
        seed=args.seed + 1,
    )
    model = _build_model(args.model, base_filters, depth, args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss=losses.PixelCrossEntropy(),
        metrics=metrics.training_metrics(1),
        run_eagerly=args.eager,
    )

    watchers = []
    val_float = [_float(x) for x in x_val]
    if args.score_every:
        every = _positive(args.score_every, "score-every")
        watchers.append(callbacks.ValidationScores(val_float, y_val, every=every))
    if args.preview:
        watchers.append(callbacks.LivePreview(val_float[0], y_val[0], path=run_dir / "preview.png"))
    monitor = args.monitor or ("val_v_rand" if args.score_every else "val_loss")
    training.train(
        model,
        train_data,
        val_data,
        run_dir=run_dir,
        epochs=epochs,
        callbacks=watchers,
        monitor=monitor,
        mode=args.mode,
        overwrite=args.overwrite,
        verbose=args.verbose,
    )
    state = training.read_state(run_dir) or {}
    print(
        f"done: {state.get('epoch')} epochs in {run_dir}; best {monitor} = {state.get('best')} "
        f"(epoch {state.get('best_epoch')}) in {run_dir / training.BEST}"
    )
    return 0


def _float(image):
    from unet_tutorial import data

    return data.to_float(image)


def _weight_maps(masks, cache):
    """The paper's weight map of every mask, cached on disk (masks may differ in size)."""
    import numpy as np

    from unet_tutorial import weights

    if len({np.shape(m) for m in masks}) == 1:
        return list(weights.weight_maps(np.stack(masks), cache_dir=cache))
    return [weights.weight_maps(np.asarray(m)[None], cache_dir=cache)[0] for m in masks]


def _predict(args):
    from unet_tutorial import folders, predictions, runtime

    profile = runtime.select_profile(args.profile)
    if not 0 <= args.threshold <= 1:
        raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
    images, names = folders.load_images(args.inputs)
    if not args.overwrite:  # fail before a long prediction, not after it
        targets = [p for pair in predictions.prediction_paths(args.out, names) for p in pair]
        targets += [Path(args.isbi_tif)] if args.isbi_tif else []
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise FileExistsError(
                f"Will not overwrite {', '.join(existing[:3])}"
                f"{' and more' if len(existing) > 3 else ''}: choose another --out or pass --overwrite."
            )
    model = _load_trained_model(args, profile)
    probs = _predict_all(model, images, args, profile)
    written = predictions.save_predictions(probs, args.out, args.threshold, names, overwrite=args.overwrite)
    print(f"wrote {len(written)} PNG files to {args.out}")
    if args.isbi_tif:
        path = predictions.save_isbi_submission(probs, args.isbi_tif, overwrite=args.overwrite)
        print(f"wrote the ISBI 2012 stack {path} ({len(probs)} slices, float32, 1 = cell)")
    return 0


def _evaluate(args):
    from unet_tutorial import metrics, runtime

    profile = runtime.select_profile(args.profile)
    _, _, x_val, y_val = _load_split(args, profile)
    model = _load_trained_model(args, profile)
    probs = _predict_all(model, x_val, args, profile)
    print(metrics.format_table(metrics.evaluate_segmentation(probs, None, y_val)))
    return 0


def main(argv=None):
    """Run ``python -m unet_tutorial`` with ``argv`` (default: the command line).

    Returns 0 on success and 1 after an error, whose message is printed without a
    traceback (``--traceback`` shows it).
    """
    args = _build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as error:
        if args.traceback:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 1
