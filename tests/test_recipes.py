"""Smoke tests of benchmarks/recipes.py: budget callback, CSV rows, reuse, summary table.

The runs use the smoke preset (a few steps of 4-filter U-Nets on two 96-pixel slices):
ISBI 2012 crops when $UNET_TUTORIAL_DATA is set, synthetic slices otherwise.
"""

import csv
import importlib.util
import math
import os
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_tutorial import challenge, data, models, synthetic, tiling

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recipes.py"
SIDE = 96  # crop of every slice: keeps overlap-tile prediction to a few tiles


def load_script():
    spec = importlib.util.spec_from_file_location("recipes_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipes = load_script()


def data_options():
    if os.environ.get("UNET_TUTORIAL_DATA"):
        return ["--data", "isbi2012", "--no-download"]
    return ["--data", "synthetic"]


def expected_val_masks():
    """The validation masks the smoke run must score against, built here independently."""
    if os.environ.get("UNET_TUTORIAL_DATA"):
        stack = data.load_isbi2012(download=False)
        return stack.train_masks[25:26, :SIDE, :SIDE]
    _, masks = synthetic.synthetic_membranes(3, SIDE, seed=1234)  # 2 training slices, then 1 validation slice
    return masks[2:]


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """popular and paper trained for 2 steps each; their rows in results.csv."""
    folder = tmp_path_factory.mktemp("recipes")
    results, out = folder / "results.csv", folder / "runs"
    common = [
        "--smoke",
        "--image-size",
        str(SIDE),
        "--verbose",
        "0",
        "--results",
        str(results),
        "--out",
        str(out),
        "--seed",
        "3",
        *data_options(),
    ]
    code = recipes.main(["run", "--variant", "popular", "paper", *common])
    assert code == 0
    return {"results": results, "out": out, "common": common, "rows": read_csv(results)}


# --------------------------------------------------------------------------- budget


class FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def tiny_model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_budget_stops_once_the_time_is_spent():
    budget = recipes.wall_clock_budget(1.0, clock=FakeClock([100.0, 100.4, 100.9, 101.0]))
    budget.set_model(tiny_model())
    budget.model.stop_training = False
    budget.on_train_begin()
    for expected_stop in (False, False, True):
        budget.on_train_batch_end(0)
        assert budget.model.stop_training is expected_stop
    assert budget.steps == 3 and budget.seconds == pytest.approx(1.0)


def test_budget_max_steps_and_bad_values():
    budget = recipes.wall_clock_budget(1e6, max_steps=2, clock=FakeClock([0.0, 1.0, 2.0]))
    budget.set_model(tiny_model())
    budget.model.stop_training = False
    budget.on_train_begin()
    budget.on_train_batch_end(0)
    assert not budget.model.stop_training
    budget.on_train_batch_end(1)
    assert budget.model.stop_training and budget.steps == 2
    with pytest.raises(ValueError, match="positive number of seconds"):
        recipes.wall_clock_budget(0)
    with pytest.raises(ValueError, match="max_steps"):
        recipes.wall_clock_budget(1, max_steps=0)


def test_budget_ends_fit_in_the_middle_of_an_epoch():
    model = tiny_model()
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    budget = recipes.wall_clock_budget(1e-9)  # spent after the first batch
    x = np.zeros((20, 2), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=3, callbacks=[budget], verbose=0)
    assert budget.steps == 1


def test_run_is_the_default_command_and_smoke_fills_only_unset_options():
    args = recipes.run_arguments(["--all", "--seeds", "0", "1"])
    assert args.command == "run" and args.all and args.seeds == [0, 1] and args.max_steps is None
    assert recipes._parse(["--all"]).command == "run"
    smoke = recipes.run_arguments(["--variant", "paper", "--smoke", "--image-size", "64"])
    assert (smoke.profile, smoke.image_size, smoke.max_steps, smoke.eager) == ("smoke", 64, 2, True)
    with pytest.raises(SystemExit):  # a variant (or --all) is required
        recipes._parse(["run", "--seed", "1"])


def test_no_arguments_only_prints_help(capsys):
    assert recipes.main([]) == 0  # `make benchmarks` runs every script without arguments
    assert "Nothing run" in capsys.readouterr().out


def test_popular_size_halves_and_fits_the_network():
    assert recipes.popular_size(512, 4) == 256
    assert recipes.popular_size(96, 4) == 48
    assert recipes.popular_size(100, 4) == 48  # 50 rounded down to a multiple of 16


# --------------------------------------------------------------------------- runs


def test_rows_have_every_field_with_sane_values(smoke):
    rows = smoke["rows"]
    assert [row["variant"] for row in rows] == ["popular", "paper"]
    for row in rows:
        assert list(row) == list(recipes.COLUMNS)
        assert row["seed"] == "3" and row["profile"] == "smoke"
        assert row["backend"] == keras.backend.backend() and row["device"]
        assert row["n_train"] == "2" and row["n_val"] == "1"
        assert float(row["budget_s"]) == pytest.approx(0.05 * 60)
        assert 1 <= int(row["steps"]) <= 2  # --max-steps 2 of the smoke preset
        assert float(row["train_seconds"]) >= 0 and float(row["predict_seconds"]) >= 0
        for key in ("v_rand", "v_info", "pixel_error"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert math.isnan(float(row["iou_membrane"])) or 0.0 <= float(row["iou_membrane"]) <= 1.0
        assert row["model_from"] == "trained" and Path(row["run_dir"], "model.keras").exists()
    popular, paper = rows
    assert (popular["tta"], paper["tta"]) == ("False", "True")
    assert (popular["input_size"], paper["input_size"]) == ("48", "220")  # half of 96; smoke tile
    same = models.unet((48, 48, 1), padding="same", depth=4, base_filters=4, upsampling="upsample_conv")
    valid = models.unet((None, None, 1), padding="valid", depth=4, base_filters=4)
    assert int(popular["params"]) == same.count_params()
    assert int(paper["params"]) == valid.count_params()


def test_scores_match_the_saved_predictions(smoke):
    masks = expected_val_masks()
    np.testing.assert_array_equal(
        recipes.load_split(recipes.run_arguments(["--variant", "paper", *smoke["common"]]))[3], masks
    )
    for row in smoke["rows"]:
        prob = np.load(Path(row["run_dir"]) / "val_prob.npy")
        assert prob.shape == masks.shape and prob.min() >= 0 and prob.max() <= 1
        with np.load(recipes.prob_path(smoke["results"], row["variant"], row["seed"])) as stored:
            kept = stored["prob"]
            first = 25 if os.environ.get("UNET_TUTORIAL_DATA") else 2
            assert kept.dtype == np.float16 and int(stored["first_slice"]) == first
        np.testing.assert_allclose(kept, prob, atol=1e-3)  # float16 keeps 3 decimals
        prob = kept.astype(np.float32)  # the row is scored from what is kept
        scores = challenge.isbi_scores(prob, masks)
        assert float(row["v_rand"]) == pytest.approx(scores["v_rand"])
        assert float(row["v_info"]) == pytest.approx(scores["v_info"])
        membrane_pred, membrane_true = prob <= 0.5, masks == 0
        assert float(row["pixel_error"]) == pytest.approx(np.mean(membrane_pred != membrane_true))
        union = np.sum(membrane_pred | membrane_true)
        if union:
            expected = np.sum(membrane_pred & membrane_true) / union
            assert float(row["iou_membrane"]) == pytest.approx(expected)


def test_no_tta_reuses_the_paper_model_and_appends(smoke):
    before = smoke["results"].read_text()
    code = recipes.main(["run", "--variant", "paper-no-tta", *smoke["common"]])
    assert code == 0
    after = smoke["results"].read_text()
    assert after.startswith(before)  # earlier rows untouched
    rows = read_csv(smoke["results"])
    assert len(rows) == 3
    paper, no_tta = rows[1], rows[2]
    assert no_tta["variant"] == "paper-no-tta" and no_tta["tta"] == "False"
    assert no_tta["model_from"] == f"reused {paper['run_dir']}"
    assert (no_tta["steps"], no_tta["train_seconds"]) == (paper["steps"], paper["train_seconds"])
    # the row's prediction is the paper model's plain overlap-tile map
    model = keras.saving.load_model(Path(paper["run_dir"]) / "model.keras", compile=False)
    model.compile(run_eagerly=True)  # no graph building: faster for a few tiles
    saved = np.load(Path(no_tta["run_dir"]) / "val_prob.npy")[0]
    val_images = recipes.load_split(recipes.run_arguments(["--variant", "paper", *smoke["common"]]))[2]
    expected = tiling.predict_tiled(model, val_images[0], tile_size=220, tta=False)
    np.testing.assert_allclose(saved, expected, atol=1e-5)


def test_rows_record_cores_threads_share_load_and_scorer(smoke):
    for row in smoke["rows"]:
        assert row["cpus"].split() and all(c.isdigit() for c in row["cpus"].split())
        assert row["threads"] == ""  # not limited in the test run
        assert 0.0 < float(row["cpu_share"]) <= 1.5
        assert float(row["load"]) >= 0.0
        assert row["scorer"] == challenge.SCORER
    popular, paper = smoke["rows"]
    assert (popular["border_on"], paper["border_on"]) == ("", "background")


def test_weights_everywhere_variant_differs_only_in_the_border_term():
    from unet_tutorial import runtime

    profile = runtime.select_profile("smoke")
    paper = recipes.recipe("paper", profile, 96)
    everywhere = recipes.recipe("paper-weights-everywhere", profile, 96)
    assert (paper["border_on"], everywhere["border_on"]) == ("background", "everywhere")
    assert {k: v for k, v in paper.items() if k != "border_on"} == {
        k: v for k, v in everywhere.items() if k != "border_on"
    }


def test_rescore_restores_every_row_from_the_stored_maps(smoke, tmp_path):
    copy = tmp_path / smoke["results"].name
    copy.write_text(smoke["results"].read_text())
    stored = smoke["results"].with_suffix("")
    (tmp_path / stored.name).mkdir()
    for file in stored.glob("*_val_prob.npz"):
        (tmp_path / stored.name / file.name).write_bytes(file.read_bytes())
    rows = read_csv(copy)
    spoiled = [dict(row, v_rand="0.1", v_info="0.2", scorer="old") for row in rows]
    with open(copy, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=recipes.COLUMNS)
        writer.writeheader()
        writer.writerows(spoiled)
    data_dir = ["--no-download"] if os.environ.get("UNET_TUTORIAL_DATA") else []
    assert recipes.main(["rescore", "--results", str(copy), *data_dir]) == 0
    again = read_csv(copy)
    for old, new in zip(rows, again):
        assert new == old  # every column back, scores recomputed from the stored maps
    assert not copy.with_suffix(".csv.tmp").exists()


def test_a_run_already_stored_is_skipped_not_overwritten(smoke, capsys):
    before = smoke["results"].read_text()
    assert recipes.main(["run", "--variant", "paper", *smoke["common"]]) == 0
    assert "already in" in capsys.readouterr().out
    assert smoke["results"].read_text() == before


def test_threads_are_refused_after_tensorflow_loaded(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow", object())
    with pytest.raises(RuntimeError, match="before TensorFlow"):
        recipes.limit_threads(1)
    recipes.limit_threads(None)  # nothing asked, nothing refused


def test_a_foreign_results_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other --results"):
        recipes.append_row(path, {"variant": "paper"})
    assert path.read_text() == "a,b\n1,2\n"


def test_new_results_file_gets_a_header(tmp_path):
    path = tmp_path / "sub" / "new.csv"
    recipes.append_row(path, {"variant": "paper", "seed": 1})
    recipes.append_row(path, {"variant": "popular", "seed": 2})
    rows = read_csv(path)
    assert [(r["variant"], r["seed"]) for r in rows] == [("paper", "1"), ("popular", "2")]
    assert path.read_text().count("date,variant") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget-minutes", "0"], "budget-minutes"),
        (["--smoke", "--data", "synthetic", "--image-size", "0"], "image-size"),
    ],
)
def test_bad_run_options_fail_with_a_message(argv, message, capsys, tmp_path):
    assert recipes.main(["run", "--variant", "paper", "--results", str(tmp_path / "r.csv"), *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


# --------------------------------------------------------------------------- summary


def write_results(path, rows):
    for row in rows:
        recipes.append_row(path, row)


def summary_rows(text):
    """{variant: [cells]} of every markdown table row below a header."""
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("variant",):
            table.setdefault(cells[0], []).append(cells[1:])
    return table


def test_summarize_means_and_spreads_by_hand(tmp_path, capsys):
    base = dict(
        profile="cpu",
        data="isbi2012 25+5 512x512",
        budget_s=1800.0,
        backend="tensorflow",
        device="CPU: test",
        params=1000,
        model_from="trained",
    )
    path = tmp_path / "results.csv"
    write_results(
        path,
        [
            dict(
                base,
                variant="paper",
                seed=0,
                v_rand=0.90,
                v_info=0.95,
                pixel_error=0.10,
                iou_membrane=0.50,
                train_seconds=1800,
                steps=100,
            ),
            dict(
                base,
                variant="popular",
                seed=0,
                v_rand=0.85,
                v_info=0.91,
                pixel_error=0.12,
                iou_membrane=0.40,
                train_seconds=1801,
                steps=500,
            ),
            dict(
                base,
                variant="paper",
                seed=1,
                v_rand=0.94,
                v_info=0.97,
                pixel_error=0.08,
                iou_membrane=0.60,
                train_seconds=1802,
                steps=104,
            ),
            dict(
                base,
                variant="paper",
                seed=0,
                budget_s=60.0,
                v_rand=0.5,
                v_info=0.6,
                pixel_error=0.3,
                iou_membrane=0.2,
                train_seconds=60,
                steps=3,
            ),
        ],
    )
    assert recipes.main(["summarize", "--results", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.count("### profile cpu") == 2  # 30-minute and 1-minute budgets apart
    first, second = text.split("### profile cpu")[1:]
    assert "budget 30 min" in first and "budget 1 min" in second
    rows = summary_rows(first)
    assert list(rows) == ["popular", "paper"]  # the script's order, not the file's
    sd_rand = np.std([0.90, 0.94], ddof=1)
    sd_iou = np.std([0.5, 0.6], ddof=1)
    assert rows["paper"][0] == [
        "2",
        "0, 1",
        f"0.9200 ± {sd_rand:.4f}",
        f"0.9600 ± {np.std([0.95, 0.97], ddof=1):.4f}",
        f"0.0900 ± {np.std([0.10, 0.08], ddof=1):.4f}",
        f"0.5500 ± {sd_iou:.4f}",
        f"1801 ± {np.std([1800, 1802], ddof=1):.0f}",
        "102 ± 3",
        "1000 ± 0",
    ]
    assert rows["popular"][0][:4] == ["1", "0", "0.8500", "0.9100"]
    assert summary_rows(second)["paper"][0][2] == "0.5000"


def test_summarize_marks_reused_models_and_nan(tmp_path, capsys):
    path = tmp_path / "results.csv"
    write_results(
        path,
        [
            dict(
                variant="paper-no-tta",
                seed=0,
                profile="cpu",
                data="d",
                budget_s=60,
                backend="b",
                device="c",
                v_rand=0.7,
                v_info=0.8,
                pixel_error=0.1,
                iou_membrane=float("nan"),
                train_seconds=60,
                steps=3,
                params=10,
                model_from="reused runs/x",
            )
        ],
    )
    assert recipes.main(["summarize", "--results", str(path)]) == 0
    row = summary_rows(capsys.readouterr().out)["paper-no-tta (paper's model)"][0]
    assert row[2] == "0.7000" and row[5] == "n/a"


def test_summarize_without_a_file_says_how_to_make_one(tmp_path, capsys):
    assert recipes.main(["summarize", "--results", str(tmp_path / "missing.csv")]) == 1
    assert "recipes.py run" in capsys.readouterr().err


def test_keep_for_book_copies_history_and_first_slice(tmp_path):
    import numpy as np
    from PIL import Image

    run_dir = tmp_path / "runs" / "paper_seed0_x"
    run_dir.mkdir(parents=True)
    (run_dir / "history.csv").write_text("epoch,loss\n0,0.5\n")
    prob = np.stack([np.linspace(0, 1, 16 * 16).reshape(16, 16), np.zeros((16, 16))]).astype("float32")
    np.save(run_dir / "val_prob.npy", prob)
    row = dict(variant="paper", seed=0, n_train=25, run_dir=str(run_dir), model_from="trained")
    results = tmp_path / "results" / "recipes_cpu.csv"
    recipes.keep_for_book(row, results)
    folder = tmp_path / "results" / "recipes_cpu"
    assert (folder / "paper_seed0_history.csv").read_text() == "epoch,loss\n0,0.5\n"
    saved = np.asarray(Image.open(folder / "paper_seed0_slice25_prob.png"))
    np.testing.assert_array_equal(saved, np.round(prob[0] * 255).astype(np.uint8))
    # a reused model's curve comes from the run that trained it; nothing is replaced
    row_tta = dict(
        row, variant="paper-no-tta", model_from=f"reused {run_dir}", run_dir=str(tmp_path / "other")
    )
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "val_prob.npy", prob[::-1])
    recipes.keep_for_book(row_tta, results)
    assert (folder / "paper-no-tta_seed0_history.csv").exists()
    recipes.keep_for_book(row, results)  # second call: files exist, left alone
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "paper_seed0_slice25_prob.png")), saved)


def test_git_commit_marks_changed_code_but_not_the_results_it_writes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "recipes_cpu.csv").write_text("date\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "start")
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert recipes.git_commit(tmp_path) == head
    (tmp_path / "benchmarks" / "results" / "recipes_cpu.csv").write_text("date\nrow\n")
    assert recipes.git_commit(tmp_path) == head  # the script's own output
    (tmp_path / "code.py").write_text("x = 2\n")
    assert recipes.git_commit(tmp_path) == head + "+"
    assert recipes.git_commit(tmp_path / "nowhere") == ""
