"""Tooling: the chapters' runtime: profiles, the summary line, seeding, run folders on Drive.

Not a part of the U-Net; what lets one notebook run anywhere. One notebook serves three
machines: ``smoke`` (CI: seconds per chapter), ``cpu`` (a laptop: minutes per chapter,
small models) and ``gpu`` (a Colab T4 or better: the paper's sizes). Every number a
chapter trains with lives in :data:`PROFILES`, so no chapter hard-codes its own.

Used in chapter 1 (Semantic segmentation), where the profile is first explained, and at
the top of every chapter.
"""

from __future__ import annotations

import dataclasses
import importlib
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
    "summary",
    "seed_everything",
    "in_colab",
    "quiet_tensorflow_logs",
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
    "gpu": Profile(
        "gpu",
        "a Colab T4 or better: the paper's 64-filter network on 572x572 tiles",
        base_filters=64,
        depth=4,
        tile_size=572,
        crop_size=512,
        batch_size=1,
        epochs=40,
        steps_per_epoch=200,
        predict_batch_size=4,
        tta=True,
        max_images=None,
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


def mount_drive(mountpoint="/content/drive"):
    """Mount Google Drive in Colab so checkpoints survive the end of the session.

    Used in chapter 5 (Training the U-Net).

    Returns
    -------
    pathlib.Path
        ``<mountpoint>/MyDrive``.
    """
    if not in_colab():
        raise RuntimeError(
            "Google Drive can only be mounted inside Google Colab. Locally, pass a folder to "
            "checkpoint_dir(root=...) or let it use ./checkpoints."
        )
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(mountpoint)
    return Path(mountpoint) / "MyDrive"


def checkpoint_dir(name, root=None, use_drive=None):
    """A folder for one run's checkpoints, history and predictions; created if missing.

    The first that applies: ``<root>/<name>``; ``$UNET_TUTORIAL_CHECKPOINTS/<name>`` (the
    notebook runners set it to a fresh folder, so automated runs never resume an old run);
    ``MyDrive/unet_tutorial/<name>`` in Colab with Drive mounted (or ``use_drive=True``),
    so a disconnected session can resume; else ``./checkpoints/<name>``. Existing files
    are left alone.

    Used in chapter 5 (Training the U-Net).

    Parameters
    ----------
    name : str
        The run's name, e.g. ``"full_unet"``: letters, digits, ``-``, ``_`` and ``.``.
    root : str or Path, optional
    use_drive : bool, optional
        Defaults to True when Drive is mounted in Colab.

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
    drive_root = Path("/content/drive/MyDrive")
    if root is None and os.environ.get("UNET_TUTORIAL_CHECKPOINTS") and not use_drive:
        root = os.environ["UNET_TUTORIAL_CHECKPOINTS"]
    if use_drive is None:
        use_drive = root is None and in_colab() and drive_root.is_dir()
    if use_drive and not drive_root.is_dir():
        raise RuntimeError("Google Drive is not mounted: call runtime.mount_drive() first.")
    base = drive_root / "unet_tutorial" if use_drive else Path(root if root is not None else "checkpoints")
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
