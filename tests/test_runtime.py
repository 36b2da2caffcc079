"""Tests of unet_tutorial.runtime: profile choice, summary line, seeding, Colab helpers."""

import dataclasses
import re

import numpy as np
import pytest

from unet_tutorial import gpu, models, runtime


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


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize(
    ("capability", "policy"),
    [
        ((7, 5), "mixed_float16"),
        ((7, 0), "mixed_float16"),
        ((8, 0), "mixed_bfloat16"),
        ((9, 0), "mixed_bfloat16"),
        ((6, 1), "float32"),
    ],
)
def test_gpu_profile_trains_in_mixed_precision_where_the_gpu_has_tensor_cores(capability, policy):
    assert gpu.precision_policy("gpu", capability) == policy
    for name in ("cpu", "smoke"):
        assert gpu.precision_policy(name, capability) == "float32"


def test_no_gpu_means_float32(monkeypatch):
    monkeypatch.setattr(gpu, "_gpu_compute_capability", lambda: None)
    assert gpu.precision_policy("gpu") == "float32"


def test_precision_applies_inside_only_and_keeps_loss_and_weights_float32():
    import keras

    from unet_tutorial import losses

    before = keras.config.dtype_policy().name
    with gpu.precision("gpu", compute_capability=(7, 5)) as policy:
        model = models.mini_unet(input_shape=(None, None, 1), base_filters=2, seed=0)
    assert policy == "mixed_float16" and keras.config.dtype_policy().name == before
    assert model.get_layer("enc1_conv1").compute_dtype == "float16"
    assert all(weight.dtype == "float32" for weight in model.weights)
    model.compile(optimizer="adam", loss=losses.PixelCrossEntropy(normalization="weights"))
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"  # float16 needs loss scaling
    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    y, w = (x[..., 0] > 0.5).astype("float32"), np.full((1, 16, 16), 2.0, "float32")
    prediction = model(x)
    assert keras.backend.standardize_dtype(prediction.dtype) == "float32"  # the final activation
    loss = losses.PixelCrossEntropy(normalization="weights")(y, prediction, sample_weight=w)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    with (
        pytest.raises(RuntimeError, match="a failing cell"),
        gpu.precision("gpu", compute_capability=(8, 6)),
    ):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        raise RuntimeError("a failing cell")
    assert keras.config.dtype_policy().name == before  # restored after an error too


@pytest.mark.parametrize("build", ["mini_unet", "pretrained_unet"])
def test_in_float32_copies_a_mixed_precision_model_with_its_weights(build):
    make = {
        "mini_unet": lambda: models.mini_unet(input_shape=(None, None, 1), base_filters=2, seed=0),
        "pretrained_unet": lambda: models.pretrained_unet((64, 64, 3), n_classes=3, weights=None, seed=0),
    }[build]
    with gpu.precision("gpu", compute_capability=(7, 5)):
        mixed = make()
    copy = gpu.in_float32(mixed)
    layers = list(gpu._all_layers(copy))
    assert len(layers) == len(list(gpu._all_layers(mixed)))
    assert {layer.compute_dtype for layer in layers} == {"float32"}
    assert "float16" in {layer.compute_dtype for layer in gpu._all_layers(mixed)}
    assert (len(copy.trainable_weights), len(copy.non_trainable_weights)) == (
        len(mixed.trainable_weights),
        len(mixed.non_trainable_weights),
    )  # a frozen encoder stays frozen
    for ours, theirs in zip(copy.weights, mixed.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    x = np.random.default_rng(0).random((1, 64, 64, mixed.inputs[0].shape[-1]), dtype=np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.02)
    assert gpu.in_float32(copy) is copy


# ----------------------------------------------------------------------------- training time
def test_forward_flops_counts_each_kind_of_layer_by_hand():
    import keras

    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3)(inputs)  # 6 x 6 x 4
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 6 x 6 x 4
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(x)  # 12 x 12 x 3
    x = keras.layers.Dense(5)(keras.layers.MaxPooling2D(2)(x))  # 6 x 6 x 5; pooling costs nothing
    by_hand = 2 * (6 * 6 * 9 * 2 * 4 + 6 * 6 * 9 * 4 + 6 * 6 * 4 * 4 * 3 + 6 * 6 * 3 * 5)
    assert gpu.forward_flops(keras.Model(inputs, x)) == by_hand


def test_the_paper_network_flops_and_the_reference_throughput():
    unet = models.unet(input_shape=(None, None, 1), base_filters=64, depth=4)
    assert gpu.forward_flops(unet, 572) == gpu.PAPER_UNET_FORWARD_FLOPS
    with pytest.raises(ValueError, match="input_size"):
        gpu.forward_flops(unet)
    # the reference network at the reference size reproduces the assumed throughput exactly
    gpu_profile = runtime.PROFILES["gpu"]
    estimate = gpu.estimated_training_time(unet, gpu_profile, steps=1009)
    assert estimate.input_size == 572 and estimate.mixed
    assert estimate.seconds == pytest.approx(1009 / (40.36 / 4))
    float32 = gpu.estimated_training_time(
        unet, dataclasses.replace(gpu_profile, mixed_precision=False), steps=1009
    )
    assert float32.seconds == pytest.approx(1009 / (14.65 / 4))
    batch_2 = gpu.estimated_training_time(unet, dataclasses.replace(gpu_profile, batch_size=2), steps=1009)
    assert batch_2.seconds == pytest.approx(2 * estimate.seconds)
    line = str(estimate)
    assert line.startswith(
        "Training: 1,009 steps of 1 x 572x572 px, 0.90 TFLOP each, mixed precision: ≈ 2 min"
    )
    assert "(estimated: a Tesla T4 at 1/4 of the speed of a V100" in line and "40.36 images/s" in line
    # 40.36 / 4 tiles a second: 100 steps take 9.9 s, 5 steps half a second
    assert gpu.estimated_training_time(unet, gpu_profile, steps=100).approx() == "≈ 10 s"
    assert gpu.estimated_training_time(unet, gpu_profile, steps=5).approx() == "< 1 s"


def test_estimate_picks_the_input_size_of_the_network():
    gpu_profile = runtime.PROFILES["gpu"]
    same = models.mini_unet(input_shape=(None, None, 1), base_filters=2)
    assert gpu.estimated_training_time(same, gpu_profile, steps=10).input_size == gpu_profile.crop_size
    fixed = models.mini_unet(input_shape=(64, 64, 1), base_filters=2)
    assert gpu.estimated_training_time(fixed, gpu_profile, steps=10).input_size == 64
    with pytest.raises(ValueError, match="takes inputs of"):
        gpu.forward_flops(fixed, 128)
    with pytest.raises(ValueError, match="positive number of training steps"):
        gpu.estimated_training_time(fixed, gpu_profile, steps=0)


def test_gpu_profile_trains_each_chapter_within_a_lesson_on_a_t4():
    """At most about 12 minutes of training per chapter on a T4, by the stated assumption."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "course_timings.py"
    spec = importlib.util.spec_from_file_location("course_timings", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    minutes = {stem: tool.estimate(stem).minutes for stem in tool.TRAINING}
    assert set(minutes) == {
        "03_mini_unet",
        "05_unet_training",
        "06_weight_maps",
        "07_overlap_tile",
        "08_own_data",
    }
    assert all(value <= 12 for value in minutes.values()), minutes
    assert max(minutes.values()) > 8, minutes  # and the longest uses most of it


# ----------------------------------------------------------------------------- Google Drive
@pytest.fixture
def colab(clean_env, tmp_path):
    """A stand-in google.colab whose drive.mount creates MyDrive (``colab.refuse`` makes it fail)."""
    import sys
    import types

    clean_env.delenv("UNET_TUTORIAL_CHECKPOINTS", raising=False)
    clean_env.chdir(tmp_path)
    clean_env.setattr(runtime, "DRIVE_MOUNTPOINT", tmp_path / "drive")
    clean_env.setattr(runtime, "_drive_refused", [])
    stand_in = types.SimpleNamespace(mounts=[], refuse=None)

    def mount(mountpoint, **_):
        stand_in.mounts.append(mountpoint)
        if stand_in.refuse:
            raise stand_in.refuse
        (runtime.Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)

    module = types.ModuleType("google.colab")
    module.drive = types.SimpleNamespace(mount=mount)
    clean_env.setitem(sys.modules, "google.colab", module)
    assert runtime.in_colab()
    return stand_in


def test_colab_run_folders_go_to_drive_when_mounting_is_allowed(colab, tmp_path, capsys):
    folder = runtime.checkpoint_dir("run-1")
    assert folder == tmp_path / "drive" / "MyDrive" / "unet_tutorial" / "run-1" and folder.is_dir()
    assert runtime.checkpoint_dir("run-2").parent == folder.parent
    assert colab.mounts == [str(tmp_path / "drive")]  # asked once, then mounted
    assert runtime.mount_drive() == tmp_path / "drive" / "MyDrive"
    assert "WARNING" not in capsys.readouterr().out
    assert runtime.checkpoint_dir("run-3", use_drive=False) == runtime.Path("checkpoints") / "run-3"


def test_colab_run_folders_fall_back_to_the_disk_with_a_warning_when_drive_is_refused(
    colab, tmp_path, capsys
):
    colab.refuse = ValueError("mount failed")  # what Colab raises when the dialog is declined
    folder = runtime.checkpoint_dir("run-1")
    assert folder == runtime.Path("checkpoints") / "run-1" and (tmp_path / folder).is_dir()
    out = capsys.readouterr().out
    assert "Google Drive is not mounted (ValueError: mount failed)" in out
    assert "WARNING" in out and "A lost or ended Colab session loses it" in out
    assert str(tmp_path / "checkpoints" / "run-1") in out
    assert runtime.checkpoint_dir("run-2") == runtime.Path("checkpoints") / "run-2"
    assert len(colab.mounts) == 1  # refused once: no dialog for every run folder
    assert "WARNING" in capsys.readouterr().out  # but every run folder says where it is
    with pytest.raises(RuntimeError, match="not mounted"):
        runtime.checkpoint_dir("run-3", use_drive=True)
    colab.refuse = TimeoutError("timed out waiting for authorization")
    assert runtime.mount_drive() is None and len(colab.mounts) == 2  # mount_drive asks again
    assert "TimeoutError: timed out" in capsys.readouterr().out
    colab.refuse = None  # allowed on the second try
    assert runtime.mount_drive() == tmp_path / "drive" / "MyDrive"
    assert runtime.checkpoint_dir("run-4").parent == tmp_path / "drive" / "MyDrive" / "unet_tutorial"


def test_notebook_runners_folder_wins_over_drive_in_colab(colab, clean_env, tmp_path):
    clean_env.setenv("UNET_TUTORIAL_CHECKPOINTS", str(tmp_path / "auto"))
    assert runtime.checkpoint_dir("run") == tmp_path / "auto" / "run"
    assert colab.mounts == []  # no permission dialog in automated runs
