"""Tests of ``python -m unet_tutorial``, run in-process on tiny synthetic data (smoke profile)."""

import argparse
import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_tutorial import cli, data, metrics, synthetic, tiling, training

TINY = ["--data", "synthetic", "--synthetic-size", "64", "--n-val", "1", "--profile", "smoke"]
FAST = ["--epochs", "1", "--steps", "1", "--verbose", "0", "--eager"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A mini U-Net trained for one step; tests read it, never change it."""
    run_dir = tmp_path_factory.mktemp("run")
    assert cli.main(["train", *TINY, "--model", "mini", *FAST, "--out", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 3-page TIFF stack and a folder of 2 PNGs, all 70 x 90 pixels."""
    folder = tmp_path_factory.mktemp("inputs")
    images, _ = synthetic.synthetic_membranes(5, 90, seed=3)
    images = images[:, :70]
    tifffile.imwrite(folder / "stack.tif", images[:3], photometric="minisblack")
    (folder / "pngs").mkdir()
    for i in (3, 4):
        Image.fromarray(images[i]).save(folder / "pngs" / f"slice{i}.png")
    return folder, images


def state(run_dir):
    return json.loads((run_dir / training.STATE).read_text())


# --------------------------------------------------------------------------- help


def subcommands():
    parser = cli._build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_help_describes_every_option(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in subcommands()[command]._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        for option in action.option_strings:
            assert option in text
    defaults = {
        "train": ["(default: 0.0001)", "(default: valid)", "(default: 1)"],
        "predict": ["(default: 0.5)"],
        "evaluate": ["(default: isbi2012)", "(default: 5)"],
    }
    for shown in defaults[command]:
        assert shown in text


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "unet_tutorial", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert all(word in result.stdout for word in ("train", "predict", "evaluate"))


# --------------------------------------------------------------------------- train


def test_train_resumes_in_the_same_folder(capsys, tmp_path):
    args = ["train", *TINY, "--model", "mini", "--steps", "1", "--verbose", "0", "--eager", "--out", tmp_path]
    assert run(capsys, *args, "--epochs", "1")[0] == 0
    assert state(tmp_path)["epoch"] == 1
    code, out, _ = run(capsys, *args, "--epochs", "2")
    assert code == 0 and "Resuming" in out
    assert state(tmp_path)["epoch"] == 2 and state(tmp_path)["monitor"] == "val_v_rand"
    assert training.read_history(tmp_path)["epoch"] == [1, 2]
    code, out, _ = run(capsys, *args, "--epochs", "2")
    assert code == 0 and "nothing to train" in out
    assert training.read_history(tmp_path)["epoch"] == [1, 2]


def test_train_valid_unet_with_weight_maps_elastic_and_preview(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "train",
        *TINY,
        "--model",
        "valid",
        *FAST,
        "--weight-maps",
        "--elastic",
        "--preview",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert "crops 220 -> 36" in out  # the smoke profile's valid tile and its output
    assert state(tmp_path)["model"] == "unet_valid_d4_f4"
    assert list((tmp_path / "weight_maps").glob("*.npy"))
    with Image.open(tmp_path / "preview.png") as preview:
        assert preview.format == "PNG"


def test_train_asks_for_the_mode_of_an_unknown_monitor(capsys, tmp_path):
    code, _, err = run(
        capsys, "train", *TINY, "--model", "mini", *FAST, "--monitor", "val_f1", "--out", tmp_path
    )
    assert code == 1 and 'Pass mode="max" or mode="min"' in err
    code, _, err = run(
        capsys,
        "train",
        *TINY,
        "--model",
        "mini",
        *FAST,
        "--monitor",
        "val_dice_cell",
        "--out",
        tmp_path / "dice",
    )
    assert code == 0, err
    assert state(tmp_path / "dice")["mode"] == "max"


def test_train_refuses_another_architecture_in_a_run_folder(capsys, tmp_path, trained):
    run_dir = tmp_path / "copy"
    shutil.copytree(trained, run_dir)
    before = (run_dir / training.LAST).read_bytes()
    code, _, err = run(
        capsys,
        "train",
        *TINY,
        "--model",
        "mini",
        "--base-filters",
        "8",
        *FAST,
        "--epochs",
        "2",
        "--out",
        run_dir,
    )
    assert code == 1 and "base_filters: file has 4, model has 8" in err
    assert (run_dir / training.LAST).read_bytes() == before


def test_train_on_image_and_mask_folders(capsys, tmp_path):
    images, masks = synthetic.synthetic_membranes(6, 64, seed=1)
    for sub, arrays, scale in (("images", images, 1), ("masks", masks, 255)):
        (tmp_path / sub).mkdir()
        for i, array in enumerate(arrays):
            Image.fromarray((array * scale).astype(np.uint8)).save(tmp_path / sub / f"{i}.png")
    code, out, err = run(
        capsys,
        "train",
        "--data",
        tmp_path / "images",
        "--masks",
        tmp_path / "masks",
        "--profile",
        "smoke",
        "--model",
        "mini",
        *FAST,
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    assert "1 validation images" in out  # 6 images: the last one is held out
    code, _, err = run(
        capsys,
        "train",
        "--data",
        tmp_path / "images",
        "--profile",
        "smoke",
        *FAST,
        "--out",
        tmp_path / "run2",
    )
    assert code == 1 and "--masks" in err


# --------------------------------------------------------------------------- predict


def expected_probs(model_path, images):
    model = keras.models.load_model(model_path, compile=False)
    return [tiling.predict_tiled(model, data.to_float(image), batch_size=2) for image in images]


def test_predict_stack_and_png_folder(capsys, tmp_path, trained, inputs):
    folder, images = inputs
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "predict",
        folder / "stack.tif",
        folder / "pngs",
        "--weights",
        trained / training.BEST,
        "--out",
        out,
        "--isbi-tif",
        out / "isbi.tif",
        "--profile",
        "smoke",
    )
    assert code == 0, err
    names = ["stack_000", "stack_001", "stack_002", "slice3", "slice4"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}_{kind}.png" for n in names for kind in ("prob", "mask")] + ["isbi.tif"]
    )
    expected = expected_probs(trained / training.BEST, images)
    for name, prob in zip(names, expected):
        with Image.open(out / f"{name}_prob.png") as saved:
            assert np.abs(np.asarray(saved).astype(int) - np.round(prob * 255)).max() <= 1
        with Image.open(out / f"{name}_mask.png") as saved:
            mask = np.asarray(saved)
        assert set(np.unique(mask)) <= {0, 255}
        confident = np.abs(prob - 0.5) > 1e-4
        np.testing.assert_array_equal(mask[confident], np.where(prob[confident] > 0.5, 255, 0))
    stack = tifffile.imread(out / "isbi.tif")
    assert stack.dtype == np.float32 and stack.shape == (5, 70, 90)
    np.testing.assert_allclose(stack, np.stack(expected), atol=1e-5)


def test_predict_never_overwrites(capsys, tmp_path, trained, inputs):
    folder, _ = inputs
    args = [
        "predict",
        folder / "pngs",
        "--weights",
        trained / training.BEST,
        "--out",
        tmp_path,
        "--profile",
        "smoke",
    ]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "slice4_mask.png").write_bytes(b"edited by hand")
    code, _, err = run(capsys, *args)
    assert code == 1 and "Will not overwrite" in err and "slice3_prob.png" in err
    assert (tmp_path / "slice4_mask.png").read_bytes() == b"edited by hand"
    assert run(capsys, *args, "--overwrite")[0] == 0
    with Image.open(tmp_path / "slice4_mask.png") as mask:
        assert mask.format == "PNG"


def test_predict_with_weights_file_and_architecture_checks(capsys, tmp_path, trained, inputs):
    folder, _ = inputs
    model = keras.models.load_model(trained / training.BEST, compile=False)
    weights = tmp_path / "mini.weights.h5"
    model.save_weights(weights)
    base = ["predict", folder / "pngs", "--profile", "smoke"]

    code, _, err = run(
        capsys, *base, "--weights", weights, "--model", "mini", "--base-filters", "4", "--out", tmp_path / "a"
    )
    assert code == 0, err
    assert run(capsys, *base, "--weights", trained / training.BEST, "--out", tmp_path / "b")[0] == 0
    for name in ("slice3_prob.png", "slice4_prob.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    code, _, err = run(
        capsys, *base, "--weights", weights, "--model", "mini", "--base-filters", "8", "--out", tmp_path / "c"
    )
    assert code == 1 and "do not fit" in err
    code, _, err = run(capsys, *base, "--weights", weights, "--out", tmp_path / "d")
    assert code == 1 and "weights only" in err
    code, _, err = run(
        capsys, *base, "--weights", trained / training.BEST, "--model", "valid", "--out", tmp_path / "e"
    )
    assert code == 1 and "padding: file has 'same', expected has 'valid'" in err
    code, _, err = run(capsys, *base, "--weights", tmp_path / "missing.keras", "--out", tmp_path / "f")
    assert code == 1 and "No such file" in err and "Traceback" not in err
    code, _, err = run(
        capsys, *base, "--weights", tmp_path / "missing.keras", "--out", tmp_path / "f", "--traceback"
    )
    assert code == 1 and "Traceback" in err
    assert not any((tmp_path / sub).exists() for sub in "cdef")


# --------------------------------------------------------------------------- evaluate


def test_evaluate_prints_the_validation_scores(capsys, trained):
    code, out, err = run(capsys, "evaluate", *TINY, "--weights", trained / training.BEST)
    assert code == 0, err
    model = keras.models.load_model(trained / training.BEST, compile=False)
    _, masks = synthetic.synthetic_membranes(5, 64, seed=0)
    images, _ = synthetic.synthetic_membranes(5, 64, seed=0)
    expected = metrics.format_table(metrics.evaluate_segmentation(model, images[4:], masks[4:]))
    assert expected in out
    assert "v_rand" in out and "stack" in out


def test_train_and_evaluate_on_real_isbi_data(capsys, tmp_path):
    import os

    if not os.environ.get("UNET_TUTORIAL_DATA"):
        pytest.skip("set UNET_TUTORIAL_DATA to the folder holding isbi2012/ to run on the real stacks")
    real = ["--data", "isbi2012", "--no-download", "--n-val", "1", "--profile", "smoke"]
    code, out, err = run(capsys, "train", *real, "--model", "mini", *FAST, "--out", tmp_path)
    assert code == 0, err
    assert "4 training and 1 validation images (isbi2012)" in out
    code, out, err = run(capsys, "evaluate", *real, "--weights", tmp_path / training.BEST)
    assert code == 0, err
    v_rand = float(out.strip().splitlines()[-1].split()[-2])  # the mean row's v_rand column
    assert v_rand == pytest.approx(state(tmp_path)["best"], abs=1e-4)  # same slice, same model
