"""Tooling: the chapters' runtime: profiles, device, quiet logs, run folders on Drive.

Not a part of the U-Net; what lets one notebook run anywhere. One notebook serves three
machines: ``smoke`` (CI: seconds per chapter), ``cpu`` (a laptop: minutes per chapter,
small models) and ``gpu`` (a Colab T4 or better: the paper's sizes, in mixed precision).
Every number a chapter trains with lives in :data:`PROFILES`, so no chapter hard-codes
its own. Until a T4 run is measured, how long the ``gpu`` profile trains is estimated
from FLOP counts and one stated throughput assumption, :data:`unet_tutorial.gpu.T4_SPEED`.

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
        (:func:`unet_tutorial.gpu.precision_policy`); the loss and the weight maps stay in float32.
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
    # (estimated: see gpu.T4_SPEED and tools/course_timings.py). Few long epochs: every epoch ends
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
