"""The popular Keras U-Net recipe against the paper's, on the same wall-clock budget.

Every variant trains on ISBI 2012 slices 0-24 and is scored on slices 25-29 (the
book's fixed split, ``data.split_isbi2012``), with the same seed and the same number
of minutes of training, then appends one row to a CSV file:

``popular``
    The recipe of the zhixuhao/unet tutorial: a 'same' U-Net with upsampling +
    2x2 convolution decoder, whole slices resized to half size (512 -> 256),
    ``ImageDataGenerator``-style augmentation (``augment.LEGACY_PARAMS``), binary
    cross-entropy, batch 2. Prediction on the resized slice, resized back to 512.
``paper``
    The paper's recipe: a valid U-Net on mirrored tiles (``profile.tile_size``),
    elastic deformation (``augment.PAPER_PARAMS``), border weight maps (w0 = 10,
    sigma = 5) as ``sample_weight``, overlap-tile prediction with test-time
    augmentation (the 8 flips and rotations).
``paper-weights-everywhere``
    The paper's recipe with the border term of the weight maps on every pixel, cell
    pixels included (the literal reading of the formula), instead of on the
    background between cells only (the paper's Fig. 3d, ``weights.weight_map``'s default).
``paper-no-weights``, ``paper-no-elastic``, ``paper-no-tta``
    The paper's recipe without one of its parts. ``paper-no-tta`` reuses the model
    of a finished ``paper`` run of the same seed, profile, data and budget when the
    run folder holds one (its row says so in ``model_from``); otherwise it trains.

All variants use Adam with learning rate 1e-4, so what differs is the data
pipeline, the network's padding, the loss weights and the prediction; the paper's
SGD with momentum 0.99 is not reproduced. The budget counts training only (graph
building and augmentation included); computing weight maps (``prep_seconds``, cached
in the run folder) and predicting (``predict_seconds``) are timed separately.
Scores: ``challenge.isbi_scores`` on the validation stack (V_Rand and V_Info, one
threshold for the whole stack, as the challenge chose it), pixel error and IoU of the
membrane class at threshold 0.5 over all validation pixels. Each row's validation
probabilities are kept, float16 and compressed, in
``<results stem>/<variant>_seed<k>_val_prob.npz``; the scores are computed from those
stored maps, and ``rescore`` recomputes every row from them after a scorer change,
with no training.

A wall-clock budget is only fair when every run gets the same processor. Run the
comparison on an idle machine, or pin it: ``taskset -c 1 python benchmarks/recipes.py
run ... --threads 1`` gives every run one core and one thread. Each row records what it
got: ``cpus`` (the cores it may use), ``threads``, ``cpu_share`` (its processor time
over wall time per allowed core, 1.0 = it had its cores to itself) and ``load`` (the
machine's mean one-minute load average while it trained).

Typical use (the real runs take about 4 budgets per seed plus prediction)::

    python benchmarks/recipes.py run --all --seeds 0 1 --profile cpu
    python benchmarks/recipes.py summarize --profile cpu
    python benchmarks/recipes.py run --variant paper --seed 0 --budget-minutes 5
    python benchmarks/recipes.py run --smoke --variant popular --data synthetic
    python benchmarks/recipes.py rescore --results benchmarks/results/recipes_cpu.csv

``run`` is the default command (``recipes.py --all`` works too). Rows are appended
to ``benchmarks/results/recipes_<profile>.csv`` (created with a header; existing
rows are never changed); models and validation predictions go to
``runs/recipes_<profile>/<variant>_seed<seed>_<time>/`` (git-ignored).

The comparison is the subject of the book's results page; the numbers a reader
sees there come from this script.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

VARIANTS = (
    "popular",
    "paper",
    "paper-weights-everywhere",
    "paper-no-weights",
    "paper-no-elastic",
    "paper-no-tta",
)
COLUMNS = (
    "date",
    "variant",
    "seed",
    "profile",
    "backend",
    "device",
    "data",
    "n_train",
    "n_val",
    "budget_s",
    "train_seconds",
    "steps",
    "params",
    "v_rand",
    "v_rand_threshold",
    "v_info",
    "pixel_error",
    "iou_membrane",
    "predict_seconds",
    "prep_seconds",
    "base_filters",
    "depth",
    "input_size",
    "batch_size",
    "tta",
    "border_on",
    "model_from",
    "run_dir",
    "keras_version",
    "commit",
    "cpus",
    "threads",
    "cpu_share",
    "load",
    "scorer",
)
SCORE_COLUMNS = ("v_rand", "v_rand_threshold", "v_info", "pixel_error", "iou_membrane", "scorer")
DEFAULT_BUDGET_MINUTES = {"smoke": 0.05, "cpu": 30.0, "gpu": 30.0}
LEARNING_RATE = 1e-4
POPULAR_BATCH_SIZE = 2  # zhixuhao/unet's batch size
W0, SIGMA = 10.0, 5.0  # the paper's weight-map parameters
# --smoke: a few seconds per variant on a laptop (eager, tiny crops, 2 training images).
SMOKE = dict(budget_minutes=0.05, max_steps=2, train_images=2, val_images=1, image_size=128, eager=True)


# --------------------------------------------------------------------------- the budget
def wall_clock_budget(seconds, max_steps=None, clock=time.perf_counter):
    """A Keras callback that stops training after ``seconds`` of wall-clock time.

    The clock starts when training starts and is read after every batch, so a run
    overshoots its budget by at most one step. ``steps`` and ``seconds`` hold what
    was done.

    Parameters
    ----------
    seconds : float
        Training budget, > 0.
    max_steps : int, optional
        Also stop after this many batches (smoke runs).
    clock : callable
        Returns the time in seconds; tests pass a fake one.

    Returns
    -------
    keras.callbacks.Callback
    """
    import keras  # imported here so that `summarize` never loads Keras

    if not seconds > 0:
        raise ValueError(f"the budget must be a positive number of seconds, got {seconds!r}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")

    class _Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.budget, self.max_steps, self.clock = float(seconds), max_steps, clock
            self.steps, self.seconds, self.start = 0, 0.0, None
            self.cpu_seconds, self.loads, self._cpu_start, self._next_load = 0.0, [], 0.0, 0.0

        def on_train_begin(self, logs=None):
            self.start = self.clock()
            self._cpu_start = time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            self.seconds = self.clock() - self.start
            self.cpu_seconds = time.process_time() - self._cpu_start
            if self.seconds >= self._next_load:  # one load sample every 30 s
                self.loads.append(os.getloadavg()[0])
                self._next_load = self.seconds + 30.0
            if self.seconds >= self.budget or (self.max_steps and self.steps >= self.max_steps):
                self.model.stop_training = True

    return _Budget()


# --------------------------------------------------------------------------- data
def load_split(args):
    """(x_train, y_train, x_val, y_val) uint8 stacks after the --train-images etc. limits.

    ISBI 2012 slices 0-24 / 25-29, or synthetic slices split the same way (25 / 5).
    Masks are 1 = cell, 0 = membrane.
    """
    from unet_tutorial import data, synthetic

    if args.data == "isbi2012":
        dataset = data.load_isbi2012(args.data_dir, download=not args.no_download)
        x_train, y_train, x_val, y_val = data.split_isbi2012(dataset, n_val=5)
        args.first_val_slice = len(x_train)  # slice 25, also when --train-images keeps fewer
    else:
        size = args.image_size or 512
        n_train, n_val = args.train_images or 25, args.val_images or 5
        images, masks = synthetic.synthetic_membranes(n_train + n_val, size, seed=1234)
        x_train, y_train, x_val, y_val = images[:n_train], masks[:n_train], images[n_train:], masks[n_train:]
        args.first_val_slice = n_train
    if args.train_images:
        x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
    if args.val_images:
        x_val, y_val = x_val[: args.val_images], y_val[: args.val_images]
    if x_train.shape[1] != x_train.shape[2]:
        raise ValueError(f"the recipes expect square slices, got {x_train.shape[1:]}")
    if args.image_size:
        # top-left crops: smaller, still real, images for quick runs
        side = args.image_size
        if side > x_train.shape[1] or side > x_train.shape[2]:
            raise ValueError(f"--image-size {side} is larger than the images ({x_train.shape[1:]})")
        x_train, y_train, x_val, y_val = (a[:, :side, :side] for a in (x_train, y_train, x_val, y_val))
    return x_train, y_train, x_val, y_val


def data_label(args, x_train, x_val):
    """A short description of the data, part of the key that lets runs be compared."""
    return f"{args.data} {len(x_train)}+{len(x_val)} {x_train.shape[1]}x{x_train.shape[2]}"


def popular_size(image_side, depth):
    """Half the image side, rounded down to what a 'same' U-Net of this depth takes (512 -> 256)."""
    step = 2**depth
    return max(step, (image_side // 2) // step * step)


def resize_stack(stack, side, order=1):
    """Resize every slice of a stack to side x side (bilinear, anti-aliased when shrinking)."""
    import numpy as np
    from skimage.transform import resize

    return np.stack(
        [
            resize(
                s.astype(np.float32),
                (side, side),
                order=order,
                anti_aliasing=side < s.shape[0],
                preserve_range=True,
            )
            for s in stack
        ]
    )


# --------------------------------------------------------------------------- variants
def recipe(variant, profile, image_side):
    """The settings of one variant: model, crops, augmentation, weights, TTA."""
    from unet_tutorial import augment, models

    if variant == "popular":
        side = popular_size(image_side, profile.depth)  # slices are square (load_split checks)
        return dict(
            padding="same",
            upsampling="upsample_conv",
            input_size=side,
            output_size=side,
            resize=side,
            augment=dict(augment.LEGACY_PARAMS),
            weights=False,
            tta=False,
            batch_size=POPULAR_BATCH_SIZE,
            loss="binary_crossentropy",
        )
    tile = profile.tile_size
    return dict(
        padding="valid",
        upsampling="transpose",
        input_size=tile,
        output_size=models.output_size(tile, profile.depth, "valid"),
        resize=None,
        augment=dict(augment.PAPER_PARAMS, elastic=variant != "paper-no-elastic"),
        weights=variant != "paper-no-weights",
        tta=variant != "paper-no-tta",
        border_on="everywhere" if variant == "paper-weights-everywhere" else "background",
        batch_size=profile.batch_size,
        loss="pixel_cross_entropy",
    )


def build_model(settings, profile, seed):
    import keras

    from unet_tutorial import losses, models

    shape = (settings["input_size"],) * 2 + (1,) if settings["resize"] else (None, None, 1)
    model = models.unet(
        shape,
        padding=settings["padding"],
        depth=profile.depth,
        base_filters=profile.base_filters,
        upsampling=settings["upsampling"],
        seed=seed,
    )
    loss = (
        keras.losses.BinaryCrossentropy()
        if settings["loss"] == "binary_crossentropy"
        else losses.PixelCrossEntropy()
    )
    return model, loss


def train_variant(variant, settings, profile, args, seed, split, run_dir):
    """Train one variant for the budget; save model.keras and info.json in run_dir."""
    import keras
    import numpy as np

    from unet_tutorial import runtime, weights
    from unet_tutorial.dataset import SegmentationDataset

    x_train, y_train, _, _ = split
    runtime.seed_everything(seed)
    prep_start = time.perf_counter()
    w_train = None
    if settings["resize"]:
        x_train = np.rint(resize_stack(x_train, settings["resize"])).astype(np.uint8)
        y_train = (resize_stack(y_train, settings["resize"]) > 0.5).astype(np.uint8)
    if settings["weights"]:
        cache = Path(args.out) / "weight_maps"
        w_train = weights.weight_maps(
            y_train, cache_dir=cache, w0=W0, sigma=SIGMA, border_on=settings["border_on"]
        )
    prep_seconds = time.perf_counter() - prep_start

    dataset = SegmentationDataset(
        x_train,
        y_train,
        settings["input_size"],
        settings["output_size"],
        weights=w_train,
        batch_size=settings["batch_size"],
        steps_per_epoch=profile.steps_per_epoch,
        augment=settings["augment"],
        seed=seed,
        workers=args.workers,
    )
    model, loss = build_model(settings, profile, seed)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss, run_eagerly=args.eager)
    budget = wall_clock_budget(args.budget_seconds, args.max_steps)
    # epochs only cap the run; the budget (or --max-steps) ends it
    epochs = math.ceil(args.max_steps / profile.steps_per_epoch) if args.max_steps else 10**6
    history = keras.callbacks.CSVLogger(str(run_dir / "history.csv"))  # learning curves for the book
    model.fit(dataset, epochs=epochs, callbacks=[budget, history], verbose=args.verbose)
    model.save(run_dir / "model.keras")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = dict(
        variant=variant,
        seed=seed,
        profile=profile.name,
        budget_s=args.budget_seconds,
        data=args.data_label,
        train_seconds=round(budget.seconds, 2),
        steps=budget.steps,
        prep_seconds=round(prep_seconds, 2),
        params=int(model.count_params()),
        cpu_share=round(budget.cpu_seconds / max(budget.seconds, 1e-9) / cpus, 3),
        load=round(sum(budget.loads) / len(budget.loads), 2) if budget.loads else "",
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    (run_dir / "info.json").write_text(json.dumps(info, indent=2))
    return model, info


def find_paper_run(args, profile, seed):
    """The newest finished 'paper' run folder of this seed, profile, data and budget, or None."""
    candidates = []
    for folder in Path(args.out).glob(f"paper_seed{seed}_*"):
        try:
            info = json.loads((folder / "info.json").read_text())
        except (OSError, ValueError):
            continue
        same = (
            info.get("variant") == "paper"
            and info.get("profile") == profile.name
            and info.get("data") == args.data_label
            and info.get("budget_s") == args.budget_seconds
        )
        if same and (folder / "model.keras").exists():
            candidates.append((info.get("finished", ""), folder, info))
    return max(candidates, key=lambda c: c[0])[1:] if candidates else None


def predict_variant(model, settings, profile, x_val):
    """Cell probabilities (N, H, W) of the validation slices, at their full size."""
    import numpy as np

    from unet_tutorial import tiling

    if settings["resize"]:
        small = resize_stack(x_val, settings["resize"]) / 255.0
        prob = np.asarray(model.predict(small[..., None].astype(np.float32), verbose=0))[..., 0]
        return np.clip(resize_stack(prob, x_val.shape[1]), 0.0, 1.0).astype(np.float32)
    return np.stack(
        [
            tiling.predict_tiled(
                model,
                image,
                tile_size=settings["input_size"],
                batch_size=profile.predict_batch_size,
                tta=settings["tta"],
            )
            for image in x_val
        ]
    ).astype(np.float32)


def score(prob, masks):
    """V_Rand, V_Info (one threshold for the stack), pixel error and membrane IoU at 0.5."""
    from unet_tutorial import challenge, metrics

    prob = stored_form(prob).astype(np.float32)  # score exactly what is kept for rescoring
    scores = challenge.isbi_scores(prob, masks)
    cells = (prob > 0.5).astype(int)
    return dict(
        v_rand=scores["v_rand"],
        v_rand_threshold=scores["threshold"],
        v_info=scores["v_info"],
        pixel_error=metrics.pixel_error(cells, masks),
        iou_membrane=float(metrics.iou(cells, masks)[0]),
        scorer=challenge.SCORER,
    )


def stored_form(prob):
    """The probabilities as they are kept: float16, within [0, 1]."""
    return np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0).astype(np.float16)


def prob_path(results, variant, seed):
    """Where a row's validation probabilities are kept, next to the results file."""
    return Path(results).with_suffix("") / f"{variant}_seed{seed}_val_prob.npz"


def keep_probabilities(results, row, prob, first_slice):
    """Save the row's validation probabilities (float16, compressed); never replace a file."""
    path = prob_path(results, row["variant"], row["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(
            f"{path} exists already: one stored map per variant and seed; "
            "pass another --results file for a new comparison."
        )
    np.savez_compressed(path, prob=stored_form(prob), first_slice=np.int64(first_slice))


def new_run_dir(out, variant, seed):
    """A fresh folder for one run; an existing one is never reused or replaced."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(2, 100)]:
        folder = Path(out) / f"{variant}_seed{seed}_{stamp}{suffix}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run folder under {out}")


def run_variant(variant, seed, profile, args, split):
    """Train (or reuse), predict, score; return the CSV row."""
    import keras
    import numpy as np

    from unet_tutorial import runtime

    x_train, y_train, x_val, y_val = split
    settings = recipe(variant, profile, x_train.shape[1])
    run_dir = new_run_dir(args.out, variant, seed)
    reused = find_paper_run(args, profile, seed) if variant == "paper-no-tta" else None
    if reused:
        folder, info = reused
        model = keras.saving.load_model(folder / "model.keras", compile=False)
        if args.eager:
            model.compile(run_eagerly=True)  # predict without building a graph (smoke runs)
        model_from = f"reused {folder}"
        print(f"[{variant} seed {seed}] reusing the paper model in {folder}")
    else:
        keras.utils.clear_session()
        print(f"[{variant} seed {seed}] training for {args.budget_seconds:.0f} s into {run_dir}", flush=True)
        model, info = train_variant(variant, settings, profile, args, seed, split, run_dir)
        model_from = "trained"
    start = time.perf_counter()
    prob = predict_variant(model, settings, profile, x_val)
    predict_seconds = time.perf_counter() - start
    np.save(run_dir / "val_prob.npy", prob)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    row = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        variant=variant,
        seed=seed,
        profile=profile.name,
        backend=keras.backend.backend(),
        device=runtime.device_name(),
        data=args.data_label,
        n_train=len(x_train),
        n_val=len(x_val),
        budget_s=args.budget_seconds,
        train_seconds=info["train_seconds"],
        steps=info["steps"],
        params=info["params"],
        **score(prob, y_val),
        predict_seconds=round(predict_seconds, 2),
        prep_seconds=info["prep_seconds"],
        base_filters=profile.base_filters,
        depth=profile.depth,
        input_size=settings["input_size"],
        batch_size=settings["batch_size"],
        tta=settings["tta"],
        border_on=settings.get("border_on", "") if settings["weights"] else "",
        model_from=model_from,
        run_dir=str(run_dir),
        keras_version=keras.__version__,
        commit=git_commit(),
        cpus=" ".join(map(str, cpus)),
        threads=args.threads or "",
        cpu_share=info.get("cpu_share", ""),
        load=info.get("load", ""),
    )
    keep_probabilities(args.results, row, prob, args.first_val_slice)
    (run_dir / "row.json").write_text(json.dumps(row, indent=2))
    return row


def keep_for_book(row, results):
    """Copy what the results page shows next to the CSV: learning curve and one prediction.

    ``<results stem>/<variant>_seed<k>_history.csv`` and ``..._slice<first val>_prob.png``
    / ``_mask.png`` (the cell probability of the first validation slice, 0..255, and its
    mask at 0.5), so the page needs neither the run folders (not committed) nor any
    training. Existing files are not replaced.
    """
    import shutil

    import numpy as np

    from unet_tutorial import predictions

    folder = Path(results).with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(row["run_dir"])
    trained_in = (
        Path(row["model_from"].removeprefix("reused ")) if row["model_from"].startswith("reused") else run_dir
    )
    stem = f"{row['variant']}_seed{row['seed']}"
    history = folder / f"{stem}_history.csv"
    if (trained_in / "history.csv").exists() and not history.exists():
        shutil.copyfile(trained_in / "history.csv", history)
    prob = np.load(run_dir / "val_prob.npy")[0]
    name = f"{stem}_slice{row['n_train']}"
    if not (folder / f"{name}_prob.png").exists():
        predictions.save_predictions(prob[None], folder, names=[name], threshold=0.5)


def git_commit(root=ROOT):
    """Short hash of the checkout's HEAD ('+' if tracked files changed), or '' outside git.

    Changes under benchmarks/results/ do not count: from the second run on, the results
    file this script appends to is itself a changed file.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------- results file
def append_row(path, row):
    """Append one row; create the file with a header first. Existing rows are left alone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as file:
            header = next(csv.reader(file), None)
        if header != list(COLUMNS):
            raise ValueError(
                f"{path} has the columns {header}, not this script's {list(COLUMNS)}; "
                "pass another --results file (this one is left unchanged)."
            )
        new = False
    else:
        new = True
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key, "") for key in COLUMNS})


def read_rows(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file {path}; run `python benchmarks/recipes.py run ...` first")
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _mean_spread(values, digits):
    """'mean ± sample standard deviation' of the finite values; the mean alone for one value."""
    import numpy as np

    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return "n/a"
    mean = f"{finite.mean():.{digits}f}"
    return mean if finite.size == 1 else f"{mean} ± {finite.std(ddof=1):.{digits}f}"


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


SUMMARY_COLUMNS = (
    ("V_Rand", "v_rand", 4),
    ("V_Info", "v_info", 4),
    ("pixel error", "pixel_error", 4),
    ("IoU membrane", "iou_membrane", 4),
    ("training s", "train_seconds", 0),
    ("steps", "steps", 0),
    ("parameters", "params", 0),
)


def summarize(rows):
    """Markdown tables: per (profile, data, budget) one table, per variant mean ± s.d. over runs."""
    if not rows:
        return "No results yet."
    order = {name: i for i, name in enumerate(VARIANTS)}
    groups = {}
    for row in rows:
        key = (row["profile"], row["data"], _number(row["budget_s"]), row["backend"], row["device"])
        groups.setdefault(key, {}).setdefault(row["variant"], []).append(row)
    blocks = []
    for (profile, data_name, budget, backend, device), variants in groups.items():
        lines = [f"### profile {profile}, {data_name}, budget {budget / 60:g} min ({backend}, {device})", ""]
        lines.append("| variant | runs | seeds | " + " | ".join(c[0] for c in SUMMARY_COLUMNS) + " |")
        lines.append("|---" * (3 + len(SUMMARY_COLUMNS)) + "|")
        for variant in sorted(variants, key=lambda v: (order.get(v, len(order)), v)):
            runs = variants[variant]
            seeds = ", ".join(sorted({r["seed"] for r in runs}, key=lambda s: _number(s)))
            cells = [
                _mean_spread([_number(r[col]) for r in runs], digits) for _, col, digits in SUMMARY_COLUMNS
            ]
            reused = any(r["model_from"].startswith("reused") for r in runs)
            name = f"{variant} (paper's model)" if reused else variant
            lines.append(f"| {name} | {len(runs)} | {seeds} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    note = (
        "Mean ± sample standard deviation over runs (seeds); V_Rand and V_Info with one threshold "
        "for the validation stack, pixel error and IoU at threshold 0.5."
    )
    return "\n\n".join(blocks) + "\n\n" + note


# --------------------------------------------------------------------------- command line
def build_parser():
    parser = argparse.ArgumentParser(
        description="Train the popular and the paper's U-Net recipes on one wall-clock budget; "
        "append scores to a CSV (run), or print the table (summarize).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="train, predict and score variants; append rows",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", nargs="+", choices=VARIANTS, help="variants to run, in this order")
    which.add_argument(
        "--all", action="store_true", help="run every variant, in the order " + ", ".join(VARIANTS)
    )
    run.add_argument("--seed", type=int, default=0, help="seed of weights, crops and augmentation")
    run.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds (overrides --seed)")
    run.add_argument(
        "--profile",
        choices=("smoke", "cpu", "gpu"),
        default=None,
        help="runtime profile (default: $UNET_TUTORIAL_PROFILE, gpu if one is seen, else cpu; "
        "smoke with --smoke)",
    )
    run.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help=f"training time per variant (default per profile: {DEFAULT_BUDGET_MINUTES})",
    )
    run.add_argument(
        "--results", default=None, help="CSV to append to (default benchmarks/results/recipes_<profile>.csv)"
    )
    run.add_argument("--out", default=None, help="folder of run folders (default runs/recipes_<profile>)")
    run.add_argument(
        "--data",
        choices=("isbi2012", "synthetic"),
        default="isbi2012",
        help="ISBI 2012 (via --data-dir, $UNET_TUTORIAL_DATA or the download cache) or synthetic slices",
    )
    run.add_argument("--data-dir", default=None, help="folder holding isbi2012/ or the three .tif files")
    run.add_argument("--no-download", action="store_true", help="never download ISBI 2012")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long check: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()),
    )
    run.add_argument("--max-steps", type=int, default=None, help="also stop after this many batches")
    run.add_argument("--train-images", type=int, default=None, help="use only the first N training slices")
    run.add_argument("--val-images", type=int, default=None, help="use only the first N validation slices")
    run.add_argument(
        "--image-size", type=int, default=None, help="crop every slice to its top-left SIZE x SIZE"
    )
    run.add_argument("--eager", action="store_true", help="run Keras eagerly (no graph building; tiny runs)")
    run.add_argument("--workers", type=int, default=1, help="threads preparing batches (keras PyDataset)")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TensorFlow's intra- and inter-op threads (with taskset, for a fair pinned run)",
    )
    run.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2, help="Keras progress display")
    again = commands.add_parser(
        "rescore",
        help="recompute every row's scores from its stored probabilities",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    again.add_argument("--results", required=True, help="CSV whose rows are rescored in place")
    again.add_argument("--data-dir", default=None, help="folder holding isbi2012/ (the validation masks)")
    again.add_argument("--no-download", action="store_true", help="never download ISBI 2012")
    show = commands.add_parser(
        "summarize",
        help="print the results as markdown tables",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    show.add_argument(
        "--profile", choices=("smoke", "cpu", "gpu"), default="cpu", help="picks the default CSV"
    )
    show.add_argument(
        "--results", default=None, help="CSV to read (default benchmarks/results/recipes_<profile>.csv)"
    )
    return parser


def _parse(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "rescore", "summarize", "-h", "--help"):
        argv.insert(0, "run")
    return build_parser().parse_args(argv)


def _check_run_args(args):
    if args.smoke:
        for key, value in SMOKE.items():
            if key == "eager":
                args.eager = True
            elif getattr(args, key) is None:
                setattr(args, key, value)
        args.profile = args.profile or "smoke"
    for name in ("max_steps", "train_images", "val_images", "image_size", "workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be positive, got {args.budget_minutes}")
    if any(seed < 0 for seed in args.seeds or [args.seed]):
        raise ValueError("seeds must be non-negative integers")


def run_arguments(argv):
    """Parsed ``run`` options with the --smoke presets filled in (what load_split takes)."""
    args = _parse(["run", *argv])
    _check_run_args(args)
    return args


def limit_threads(threads):
    """Ask TensorFlow (and OpenMP) for this many threads; must run before TensorFlow loads."""
    if threads:
        if "tensorflow" in sys.modules:
            raise RuntimeError("--threads must be set before TensorFlow is imported")
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)


def run_command(args):
    _check_run_args(args)  # idempotent: presets only fill options left unset
    limit_threads(args.threads)
    from unet_tutorial import runtime

    profile = runtime.select_profile(args.profile)
    minutes = args.budget_minutes or DEFAULT_BUDGET_MINUTES[profile.name]
    args.budget_seconds = round(minutes * 60, 3)
    args.results = Path(args.results or ROOT / "benchmarks" / "results" / f"recipes_{profile.name}.csv")
    args.out = Path(args.out or ROOT / "runs" / f"recipes_{profile.name}")
    print(runtime.summary(profile))
    split = load_split(args)
    args.data_label = data_label(args, split[0], split[2])
    variants = VARIANTS if args.all else list(dict.fromkeys(args.variant))
    for seed in args.seeds or [args.seed]:
        for variant in variants:
            if prob_path(args.results, variant, seed).exists():
                print(f"[{variant} seed {seed}] already in {args.results}: skipped", flush=True)
                continue
            row = run_variant(variant, seed, profile, args, split)
            append_row(args.results, row)
            keep_for_book(row, args.results)
            print(
                f"[{variant} seed {seed}] V_Rand {row['v_rand']:.4f}  V_Info {row['v_info']:.4f}  "
                f"pixel error {row['pixel_error']:.4f}  {row['steps']} steps in {row['train_seconds']} s "
                f"-> {args.results}",
                flush=True,
            )
    return 0


def rescore(args):
    """Recompute the score columns of every row from its stored probabilities, in place.

    Rows without a stored map are left as they are. The file is rewritten through a
    temporary file, so an interrupted rescore leaves the old one whole.
    """
    from unet_tutorial import data, synthetic

    path = Path(args.results)
    rows = read_rows(path)
    with open(path, newline="") as file:
        header = next(csv.reader(file))
    isbi = None
    changed = 0
    for row in rows:
        stored = prob_path(path, row["variant"], row["seed"])
        if not stored.exists():
            print(f"[{row['variant']} seed {row['seed']}] no stored probabilities: kept as it is")
            continue
        with np.load(stored) as archive:
            prob, first = archive["prob"], int(archive["first_slice"])
        side = prob.shape[1]
        if row["data"].startswith("synthetic"):  # the slices load_split made, rebuilt
            _, masks = synthetic.synthetic_membranes(int(row["n_train"]) + int(row["n_val"]), side, seed=1234)
        else:
            isbi = isbi or data.load_isbi2012(args.data_dir, download=not args.no_download)
            masks = isbi.train_masks
        new = score(prob, masks[first : first + len(prob), :side, :side])
        before = _number(row["v_rand"])
        row.update({key: new[key] for key in SCORE_COLUMNS if key in header})
        changed += 1
        print(
            f"[{row['variant']} seed {row['seed']}] V_Rand {before:.4f} -> {new['v_rand']:.4f}  "
            f"V_Info {new['v_info']:.4f}"
        )
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    print(f"rescored {changed} of {len(rows)} rows in {path}")
    return 0


def main(argv=None):
    """Entry point; returns the exit status (1 after a usage or data error, printed without traceback)."""
    if not (sys.argv[1:] if argv is None else argv):
        # `make benchmarks` runs every script bare: explain instead of starting hours of training
        build_parser().print_help()
        print("\nNothing run: pass `run --all` (hours) or `run --smoke --variant paper` (seconds).")
        return 0
    args = _parse(argv)
    try:
        if args.command == "rescore":
            return rescore(args)
        if args.command == "summarize":
            path = args.results or ROOT / "benchmarks" / "results" / f"recipes_{args.profile}.csv"
            print(summarize(read_rows(path)))
            return 0
        return run_command(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
