"""tools/solutions.py: solutions folded in every chapter, unfolded again for CI."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def load_tool():
    spec = importlib.util.spec_from_file_location("solutions", ROOT / "tools" / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


solutions = load_tool()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_three_folded_solutions_and_no_runnable_one(path):
    nb = nbformat.read(path, as_version=4)
    assert solutions.count(nb) >= 3
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        # A solution in a code cell would be visible in Colab and run by "Run all".
        assert not (cell.cell_type == "code" and tags & {"solution", "hide-cell"})


def test_fold_then_expand_gives_back_the_code_in_its_place():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**1.** Add one and two."),
        nbformat.v4.new_code_cell("x = 1 + 2\nprint(x)", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('not a solution')"),
    ]
    assert solutions.fold(nb) == 1
    folded = nb.cells[1]
    assert folded.cell_type == "markdown" and folded.source.startswith("<details>")
    assert "<summary>Solution</summary>" in folded.source
    assert solutions.solution_code(folded) == "x = 1 + 2\nprint(x)"
    full = solutions.expand(nb)
    assert [c.cell_type for c in full.cells] == ["markdown", "code", "code"]
    assert full.cells[1].source == "x = 1 + 2\nprint(x)" and full.cells[1].id == folded.id
    assert nb.cells[1].cell_type == "markdown"  # expand works on a copy


def test_ordinary_markdown_and_other_details_are_not_solutions():
    for text in ("<details>\n<summary>Hint</summary>\n\nThink of sizes.\n</details>", "Solution: none", ""):
        assert solutions.solution_code(nbformat.v4.new_markdown_cell(text)) is None


def test_check_fails_on_too_few_solutions(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1", metadata={"tags": ["solution"]})]
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    assert solutions.main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "0 folded solutions (need 3)" in out and "unfolded solution code cells: [0]" in out
