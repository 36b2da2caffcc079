"""Runtime profiles, the summary line every chapter prints, seeding and Colab helpers.

One notebook serves three machines: ``smoke`` (CI: seconds per chapter), ``cpu`` (a
laptop: minutes per chapter, small models) and ``gpu`` (a Colab T4 or better: the
paper's sizes). Every number a chapter trains with lives in :data:`PROFILES`, so no
chapter hard-codes its own.

Taught in chapter 1 (Semantic segmentation), where the profile is first explained, and
used at the top of every chapter.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

__all__ = [
    "Profile",
    "PROFILES",
    "select_profile",
    "has_gpu",
    "device_name",
    "summary",
    "seed_everything",
    "in_colab",
    "in_ci",
    "mount_drive",
    "checkpoint_dir",
    "Stopwatch",
]


@dataclasses.dataclass(frozen=True)
class Profile:
    """The numbers one kind of machine trains and predicts with.

    Attributes
    ----------
    name : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``.
    description : str
        What the profile is for.
    base_filters : int
        Filters of the U-Net's first level (64 in the paper).
    depth : int
        Down-sampling steps of the full U-Net.
    tile_size : int
        Input tile of the valid U-Net (572 in the paper); its output is smaller.
    crop_size : int
        Training crop of 'same'-padding models (input size = output size).
    batch_size : int
        Training batch size.
    epochs : int
        Training epochs per run.
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
        name="smoke",
        description="CI: a few steps on tiny models, to prove the notebook runs",
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
        name="cpu",
        description="a laptop CPU: 16-filter networks, minutes per chapter",
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
        name="gpu",
        description="a Colab T4 or better: the paper's 64-filter network on 572x572 tiles",
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


def in_ci():
    """True when the ``CI`` environment variable says we run under continuous integration."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def in_colab():
    """True inside Google Colab.

    Taught in chapter 4 (The full U-Net), which keeps checkpoints on Drive in Colab.
    """
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def select_profile(name=None):
    """Choose the runtime profile.

    The first that applies: ``name``; ``$UNET_TUTORIAL_PROFILE``; ``smoke`` under CI
    (``$CI`` set); ``gpu`` when Keras' backend sees a GPU; else ``cpu``.

    Taught in chapter 1 (Semantic segmentation).

    Parameters
    ----------
    name : str, optional
        One of ``PROFILES``.

    Returns
    -------
    Profile
    """
    chosen = name or os.environ.get("UNET_TUTORIAL_PROFILE", "").strip().lower() or None
    if chosen is None:
        chosen = "smoke" if in_ci() else ("gpu" if has_gpu() else "cpu")
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}: choose one of {sorted(PROFILES)} "
            "(argument or UNET_TUTORIAL_PROFILE)."
        )
    return PROFILES[chosen]


def _backend():
    import keras

    return keras.backend.backend()


def has_gpu():
    """True when the active Keras backend can see a GPU."""
    backend = _backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU
        return False
    return False


def device_name():
    """A short description of the device Keras computes on, e.g. ``"GPU: Tesla T4"``.

    Taught in chapter 1 (Semantic segmentation); every chapter's last cell prints it.
    """
    if has_gpu():
        return f"GPU: {_gpu_name()}"
    return f"CPU: {_cpu_name()}, {os.cpu_count()} cores"


def _gpu_name():
    backend = _backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        if backend == "jax":
            import jax

            return next(d.device_kind for d in jax.devices() if d.platform == "gpu")
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return "unknown GPU"


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module):
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), "__version__", "?")


def summary(profile=None):
    """One line naming profile, backend, device and versions; every chapter prints it first.

    Stored notebook outputs thus say which machine made them.

    Taught in chapter 1 (Semantic segmentation); every chapter prints it first.

    Parameters
    ----------
    profile : Profile or str, optional
        Defaults to :func:`select_profile`.

    Returns
    -------
    str
    """
    if not isinstance(profile, Profile):
        profile = select_profile(profile)
    from unet_tutorial import __version__

    backend = _backend()
    versions = [f"python {platform.python_version()}", f"keras {_version('keras')}"]
    versions.append(f"{backend} {_version(backend)}")
    versions += [f"numpy {_version('numpy')}", f"unet_tutorial {__version__}"]
    where = "Colab" if in_colab() else ("CI" if in_ci() else "local")
    return (
        f"profile={profile.name} | backend={backend} | device={device_name()} | "
        f"{where} | " + ", ".join(versions)
    )


def seed_everything(seed=0):
    """Seed Python, NumPy and the Keras backend; return a NumPy ``Generator`` for our own code.

    Same seed, same initial weights, same augmented batches. (GPU kernels can still add
    small non-determinism.)

    Taught in chapter 2 (Augmentation) and used in every training chapter.

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

    Taught in chapter 4 (The full U-Net).

    Returns
    -------
    pathlib.Path
        ``<mountpoint>/MyDrive``.

    Raises
    ------
    RuntimeError
        Outside Colab, with advice to use a local folder instead.
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

    The first that applies: ``<root>/<name>`` when ``root`` is given;
    ``$UNET_TUTORIAL_CHECKPOINTS/<name>`` when that variable is set (the notebook
    runners and nbval set it to a fresh folder, so automated runs never resume from an
    old run); ``MyDrive/unet_tutorial/<name>`` in Colab with Drive mounted (or
    ``use_drive=True``), so a disconnected session can resume; else
    ``./checkpoints/<name>``. Existing files are left alone.

    Taught in chapter 4 (The full U-Net).

    Parameters
    ----------
    name : str
        The run's name, e.g. ``"full_unet"``; letters, digits, ``-``, ``_`` and ``.``.
    root : str or Path, optional
    use_drive : bool, optional
        Defaults to True when Drive is mounted in Colab.

    Returns
    -------
    pathlib.Path
    """
    if not name or any(not (c.isalnum() or c in "-_.") for c in name) or name in (".", ".."):
        raise ValueError(f"run name {name!r} must be letters, digits, '-', '_' or '.'")
    drive_root = Path("/content/drive/MyDrive")
    if root is None and os.environ.get("UNET_TUTORIAL_CHECKPOINTS") and not use_drive:
        root = os.environ["UNET_TUTORIAL_CHECKPOINTS"]
    if use_drive is None:
        use_drive = root is None and in_colab() and drive_root.is_dir()
    if use_drive:
        if not drive_root.is_dir():
            raise RuntimeError("Google Drive is not mounted: call runtime.mount_drive() first.")
        base = drive_root / "unet_tutorial"
    else:
        base = Path(root) if root is not None else Path("checkpoints")
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Stopwatch:
    """Measures a chapter's run time; ``str()`` gives e.g. ``"3 min 12 s"``.

    Taught in chapter 1 (Semantic segmentation); every chapter starts one in its first cell.

    Examples
    --------
    >>> clock = Stopwatch()
    >>> seconds = clock.elapsed()
    """

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self):
        """Seconds since the stopwatch was created."""
        return time.perf_counter() - self.start

    def __str__(self):
        seconds = self.elapsed()
        minutes, seconds = divmod(seconds, 60)
        return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"
