"""Tests of unet_tutorial.runtime: profile choice, summary line, seeding, Colab helpers."""

import dataclasses
import re

import numpy as np
import pytest

from unet_tutorial import models, runtime


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("UNET_TUTORIAL_PROFILE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    return monkeypatch


def test_profile_order_argument_env_ci_gpu_cpu(clean_env):
    clean_env.setattr(runtime, "_gpu_name", lambda: None)
    assert runtime.select_profile().name == "cpu"
    clean_env.setattr(runtime, "_gpu_name", lambda: "Tesla T4")
    assert runtime.select_profile().name == "gpu"
    assert runtime.device_name() == "GPU: Tesla T4"
    clean_env.setenv("CI", "true")
    assert runtime.select_profile().name == "smoke"
    clean_env.setenv("UNET_TUTORIAL_PROFILE", "cpu")
    assert runtime.select_profile().name == "cpu"
    assert runtime.select_profile("gpu").name == "gpu"


def test_unknown_profile_lists_the_choices(clean_env):
    with pytest.raises(ValueError, match=r"\['cpu', 'gpu', 'smoke'\]"):
        runtime.select_profile("fast")
    clean_env.setenv("UNET_TUTORIAL_PROFILE", "Laptop")
    with pytest.raises(ValueError, match="UNET_TUTORIAL_PROFILE"):
        runtime.select_profile()


@pytest.mark.parametrize("name", sorted(runtime.PROFILES))
def test_profiles_hold_numbers_that_fit_the_networks(name):
    profile = runtime.PROFILES[name]
    assert profile.name == name
    # the tile must be a valid input of the valid U-Net, the crop of the 'same' one
    assert models.output_size(profile.tile_size, profile.depth) > 0
    assert models.output_size(profile.crop_size, profile.depth, padding="same") == profile.crop_size
    numbers = (profile.base_filters, profile.batch_size, profile.epochs, profile.steps_per_epoch)
    assert all(v > 0 for v in numbers)
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.epochs = 3  # one place holds the numbers: chapters read, never write


def test_profiles_grow_from_smoke_to_gpu():
    smoke, cpu, gpu = (runtime.PROFILES[n] for n in ("smoke", "cpu", "gpu"))
    assert gpu.base_filters == 64 and gpu.tile_size == 572  # the paper's network
    assert cpu.base_filters == 16
    for field in ("base_filters", "tile_size", "epochs", "steps_per_epoch"):
        assert getattr(smoke, field) < getattr(cpu, field) <= getattr(gpu, field)


def test_summary_line_names_profile_backend_device_versions(clean_env):
    import keras

    line = runtime.summary("smoke")
    assert "\n" not in line
    assert line.startswith("profile=smoke | backend=" + keras.backend.backend())
    assert re.search(r"device=(CPU|GPU): ", line)
    assert f"keras {keras.__version__}" in line and f"numpy {np.__version__}" in line
    assert "unet_tutorial 0.1.0" in line


def test_device_name_reports_cpu_cores_without_gpu(clean_env):
    import os

    clean_env.setattr(runtime, "_gpu_name", lambda: None)
    assert runtime.device_name().startswith("CPU: ")
    assert runtime.device_name().endswith(f"{os.cpu_count()} cores")


def test_seed_everything_reproduces_numpy_and_keras():
    import keras

    rng = runtime.seed_everything(3)
    a = rng.random(3), np.asarray(keras.random.uniform((3,)))
    rng = runtime.seed_everything(3)
    b = rng.random(3), np.asarray(keras.random.uniform((3,)))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative"):
        runtime.seed_everything(-1)


def test_colab_detection_and_drive_outside_colab(clean_env):
    assert not runtime.in_colab()
    with pytest.raises(RuntimeError, match="only be mounted inside Google Colab"):
        runtime.mount_drive()
    clean_env.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert runtime.in_colab()


def test_summary_says_where_it_runs(clean_env):
    assert " | local | " in runtime.summary("smoke")
    clean_env.setenv("CI", "true")
    assert " | CI | " in runtime.summary("smoke")
    clean_env.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert " | Colab | " in runtime.summary("smoke")


def test_checkpoint_dir_root_env_default_order(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    assert runtime.checkpoint_dir("a") == __import__("pathlib").Path("checkpoints") / "a"
    clean_env.setenv("UNET_TUTORIAL_CHECKPOINTS", str(tmp_path / "auto"))
    assert runtime.checkpoint_dir("a") == tmp_path / "auto" / "a"
    assert runtime.checkpoint_dir("a", root=tmp_path / "mine") == tmp_path / "mine" / "a"


def test_checkpoint_dir_creates_and_keeps_existing_files(tmp_path, clean_env):
    folder = runtime.checkpoint_dir("run-1", root=tmp_path)
    assert folder == tmp_path / "run-1" and folder.is_dir()
    (folder / "last.keras").write_text("weights")
    assert runtime.checkpoint_dir("run-1", root=tmp_path) == folder
    assert (folder / "last.keras").read_text() == "weights"
    for bad in ("", "../up", "a/b", ".."):
        with pytest.raises(ValueError, match="run name"):
            runtime.checkpoint_dir(bad, root=tmp_path)
    with pytest.raises(RuntimeError, match="not mounted"):
        runtime.checkpoint_dir("run", use_drive=True)


def test_stopwatch_formats_minutes(monkeypatch):
    clock = runtime.Stopwatch()
    monkeypatch.setattr(clock, "elapsed", lambda: 192.4)
    assert str(clock) == "3 min 12 s"
    monkeypatch.setattr(clock, "elapsed", lambda: 4.25)
    assert str(clock) == "4.2 s"


def test_quiet_tensorflow_logs_drops_tensorflow_lines_and_keeps_the_rest():
    import subprocess
    import sys

    script = (
        "import os, time\n"
        "from unet_tutorial import runtime\n"
        "runtime.quiet_tensorflow_logs()\n"
        "runtime.quiet_tensorflow_logs()  # a second call does nothing\n"
        "os.write(2, b'I0000 00:00:1796014818.245340   12399 port.cc:153] '\n"
        "         b'oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called '\n"
        "         b'are written to STDERR\\n')\n"
        "os.write(2, b'To enable the following instructions: AVX2 FMA, in other operations, '\n"
        "         b'rebuild TensorFlow with x.\\n')\n"
        "os.write(2, b'E0000 00:00:1796014824.1 12399 cuda_platform.cc:52] failed call to cuInit\\n')\n"
        "os.write(2, b'an ordinary error message\\n')\n"
        "import warnings; warnings.warn('a Python warning')\n"
        "time.sleep(0.5)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "an ordinary error message" in result.stderr and "a Python warning" in result.stderr
    for dropped in ("oneDNN", "absl::InitializeLog", "To enable the following", "cuInit"):
        assert dropped not in result.stderr
