"""Consistency of the book: _config.yml, _toc.yml, the pages and the chapter notebooks.

The per-notebook checks are parametrised over the notebooks that exist, so they grow
with the book. The tools that write notebooks (tools/notebook_cells.py,
tools/run_notebooks.py) are tested by producing a notebook and running the same checks
on it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))


def load_yaml(name):
    with (ROOT / name).open(encoding="utf-8") as file:
        return yaml.safe_load(file)


CONFIG = load_yaml("_config.yml")
TOC = load_yaml("_toc.yml")


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toc_files(toc=TOC):
    """Every 'file' of the toc (root included), in order, without extension."""
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return found


def source_of(entry):
    """The existing file a toc entry names (.md or .ipynb), or None."""
    for suffix in (".md", ".ipynb"):
        candidate = ROOT / f"{entry}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def repository():
    """(url, owner, repo, branch) from _config.yml."""
    url = CONFIG["repository"]["url"].rstrip("/")
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    assert match, f"repository.url {url!r} is not https://github.com/<owner>/<repo>"
    return url, match.group(1), match.group(2), CONFIG["repository"].get("branch", "main")


# ----------------------------------------------------------------------------- notebook checks
# Each returns a list of problems (empty = fine), so they can be run on the chapters and,
# in the tests of the checks themselves, on deliberately broken notebooks.
def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def is_install_cell(cell, url):
    return cell.cell_type == "code" and f"git+{url}" in cell.source


def check_kernelspec(nb, path):
    name = nb.metadata.get("kernelspec", {}).get("name")
    return [] if name == "python3" else [f"kernelspec.name is {name!r}, not 'python3'"]


def check_colab_badge(nb, path):
    url, owner, repo, branch = repository()
    expected = (
        f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/notebooks/{Path(path).name}"
    )
    links = re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"'>]+", _markdown(nb))
    if expected in links:
        return []
    return [f"no 'Open in Colab' link to {expected} (found {links or 'none'})"]


def check_install_cell(nb, path):
    url = repository()[0]
    cells = [cell for cell in code_cells(nb) if is_install_cell(cell, url)]
    if not cells:
        return [f"no code cell installs git+{url}"]
    source = cells[0].source
    problems = []
    if not re.search(r"pip install", source):
        problems.append("the install cell does not run pip install")
    guard = re.search(r"^if .*(google\.colab|COLAB_RELEASE_TAG|in_colab).*:\s*$", source, re.MULTILINE)
    if not guard:
        problems.append("the install cell is not guarded by an in-Colab check")
    elif source.index(f"git+{url}") < guard.end():
        problems.append("pip install runs before the in-Colab check")
    return problems


def check_no_errors(nb, path):
    return [
        f"cell {index} stored an error: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def check_first_output_names_profile(nb, path):
    url = repository()[0]
    for cell in code_cells(nb):
        if is_install_cell(cell, url) or not cell.get("outputs"):
            continue
        text = "".join(_output_text(output) for output in cell.outputs)
        return [] if "profile=" in text else [f"the first output does not say profile=...: {text[:200]!r}"]
    return ["no code cell has stored outputs: run tools/run_notebooks.py"]


def check_executed_in_order(nb, path):
    counts = [cell.get("execution_count") for cell in code_cells(nb) if cell.source.strip()]
    if None in counts:
        return [f"{counts.count(None)} non-empty code cells were never executed"]
    if counts != sorted(counts) or len(set(counts)) != len(counts):
        return [f"cells were not executed top to bottom: execution counts {counts}"]
    return []


def check_last_output_reports_run_time(nb, path):
    """The course plan's timings come from this line (tools/notebook_cells.py writes the cell)."""
    with_outputs = [cell for cell in code_cells(nb) if cell.get("outputs")]
    if not with_outputs:
        return ["no code cell has stored outputs: run tools/run_notebooks.py"]
    text = "".join(_output_text(output) for output in with_outputs[-1].outputs)
    if re.search(r"ran in .+ with the \w+ profile on ", text):
        return []
    return [f"the last output does not report the run time, profile and device: {text[:200]!r}"]


# What a student must not see in a stored output (Colab shows stored stderr too):
# TensorFlow / absl log lines, and paths of the machine that ran the chapter.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|absl::InitializeLog|oneDNN", re.MULTILINE)
MACHINE_PATH = re.compile(
    r"(?<![\w.])/(?:work|root|home|tmp|usr|opt|var|Users)/|\.venv|site-packages|[A-Z]:\\"
)


def check_outputs_are_clean(nb, path):
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                problems.append(f"cell {index} stored stderr: {output.get('text', '')[:120]!r}")
                continue
            text = _output_text(output)
            for pattern, what in ((TF_LOG_LINE, "a TensorFlow log line"), (MACHINE_PATH, "a machine path")):
                match = pattern.search(text)
                if match:
                    start = max(0, match.start() - 40)
                    problems.append(f"cell {index} stored {what}: {text[start : match.end() + 60]!r}")
    return problems


NOTEBOOK_CHECKS = [
    check_outputs_are_clean,
    check_kernelspec,
    check_colab_badge,
    check_install_cell,
    check_no_errors,
    check_first_output_names_profile,
    check_last_output_reports_run_time,
    check_executed_in_order,
]


def all_problems(nb, path):
    return [problem for check in NOTEBOOK_CHECKS for problem in check(nb, path)]


def _markdown(nb):
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def _output_text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return str(output.get("data", {}).get("text/plain", ""))


# ----------------------------------------------------------------------------- _config.yml
def test_config_names_repository_and_colab():
    url, owner, repo, branch = repository()
    assert (owner, repo) == ("unet-tutorial", "unet-tutorial-book")
    assert branch == "main"
    # the launch buttons prefix page paths with path_to_book: "." would put /./ in the Colab links
    assert CONFIG["repository"].get("path_to_book", "") in ("", None)
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["html"]["use_repository_button"] is True
    assert CONFIG["html"]["use_issues_button"] is True


def test_config_builds_from_stored_outputs_and_only_toc_files():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True
    excluded = set(CONFIG["exclude_patterns"])
    required = {".venv", "_build", "benchmarks", "tests", "checkpoints", "README.md", "**.ipynb_checkpoints"}
    assert required <= excluded, f"missing from exclude_patterns: {required - excluded}"
    assert {"dollarmath", "amsmath", "colon_fence", "deflist"} <= set(
        CONFIG["parse"]["myst_enable_extensions"]
    )


def test_config_bibliography_exists_and_parses():
    files = CONFIG["bibtex_bibfiles"]
    assert files, "bibtex_bibfiles is empty"
    for name in files:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert len(re.findall(r"^@\w+\{", text, re.MULTILINE)) >= 5


# ----------------------------------------------------------------------------- _toc.yml
def test_toc_structure():
    assert TOC["format"] == "jb-book"
    assert TOC["root"] == "book/index"
    captions = [part["caption"] for part in TOC["parts"]]
    assert captions == ["Getting started", "Chapters", "Reference"]
    chapters = [entry["file"] for entry in TOC["parts"][1]["chapters"]]
    assert len(chapters) >= 7 and all(entry.startswith("notebooks/0") for entry in chapters)
    assert chapters == sorted(chapters)
    files = toc_files()
    assert len(files) == len(set(files)), "a page is listed twice in _toc.yml"


@pytest.mark.parametrize("entry", toc_files())
def test_every_toc_entry_exists(entry):
    assert source_of(entry) is not None, (
        f"_toc.yml lists {entry} but neither {entry}.md nor {entry}.ipynb exists"
    )


@pytest.mark.parametrize("path", NOTEBOOKS + BOOK_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_page_is_in_the_toc(path):
    entry = path.relative_to(ROOT).with_suffix("").as_posix()
    assert entry in toc_files(), f"{entry} is not in _toc.yml, so the book would leave it out"


# ----------------------------------------------------------------------------- cross references
def _texts_with_roles():
    for page in BOOK_PAGES:
        yield page.relative_to(ROOT).as_posix(), page.read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        yield path.relative_to(ROOT).as_posix(), _markdown(nbformat.read(path, as_version=4))


def test_every_citation_is_in_the_bibliography():
    bib = "\n".join((ROOT / name).read_text(encoding="utf-8") for name in CONFIG["bibtex_bibfiles"])
    known = set(re.findall(r"^@\w+\{([^,\s]+),", bib, re.MULTILINE))
    cited = {}
    for where, text in _texts_with_roles():
        for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            for key in keys.split(","):
                cited.setdefault(key.strip(), where)
    assert cited, "no page cites anything"
    unknown = {key: where for key, where in cited.items() if key not in known}
    assert not unknown, f"cited but not in the .bib file: {unknown}"


def test_every_glossary_term_used_is_defined():
    glossary = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", glossary, re.DOTALL).group(1)
    defined = {line.strip().lower() for line in block.splitlines() if line and not line[0].isspace()}
    used = {}
    for where, text in _texts_with_roles():
        for term in re.findall(r"\{term\}`([^`<]+?)(?:\s*<([^>]+)>)?`", text):
            name = (term[1] or term[0]).strip().lower()
            used.setdefault(name, where)
    assert used, "no page links to the glossary"
    undefined = {term: where for term, where in used.items() if term not in defined}
    assert not undefined, f"{{term}} links without a glossary entry: {undefined}"


def _taught_in(docstring):
    """Chapter numbers named by a docstring's 'Taught in chapter N ...' sentence."""
    # "Taught in" for what a chapter teaches, "Used in" for tooling the chapters call
    match = re.search(r"(?:Taught|Used) in (chapters? .*?)(?:\.\s|\.$|$)", " ".join(docstring.split()))
    return {int(n) for n in re.findall(r"chapter (\d+)", match.group(1))} if match else set()


def _chapter_sources():
    """{chapter number: all cell sources of that chapter's notebook}."""
    return {
        int(path.name[:2]): "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        for path in NOTEBOOKS
        if path.name[:2].isdigit()
    }


def _package_docstrings():
    """(module, name, docstring) of the public top-level functions and classes, read without importing."""
    for path in sorted((ROOT / "unet_tutorial").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield path.stem, node.name, ast.get_docstring(node) or ""


def test_taught_in_parser():
    assert _taught_in(
        "Sum.\n\n    Taught in chapter 4 (The full U-Net) and chapter 7\n    (Overlap-tile)."
    ) == {4, 7}
    assert _taught_in("Taught in chapter 2 (Augmentation). Chapter 7 uses it too.") == {2}
    assert _taught_in("No chapter here.") == set()
    assert _taught_in("Tooling.\n\n    Used in chapter 1 (Semantic segmentation).") == {1}


def test_docstrings_name_a_chapter_that_uses_the_function():
    """A package function that the chapters call is called in a chapter its docstring names."""
    chapters = _chapter_sources()
    wrong = []
    for module, name, docstring in _package_docstrings():
        used_in = sorted(n for n, text in chapters.items() if re.search(rf"\b{module}\.{name}\b", text))
        named = _taught_in(docstring)
        if used_in and not named & set(used_in):
            wrong.append(f"{module}.{name}: docstring names chapters {sorted(named)}, used in {used_in}")
    assert not wrong, "\n".join(wrong)


def test_course_plan_timings_come_from_stored_runs():
    """The run-time table is what tools/course_timings.py reads off the notebooks' last cells."""
    tool = load_tool("course_timings")
    plan = (ROOT / "book" / "course_plan.md").read_text(encoding="utf-8")
    assert plan == tool.render(plan), "run python tools/course_timings.py"
    rows = [line for line in tool.table().splitlines()[2:]]
    assert len(rows) == len(tool.chapter_files()) >= 7
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for cell in cells[1:]:
            assert cell == tool.NOT_MEASURED or re.fullmatch(
                r"([\d.]+ s|\d+ min \d+ s) \(.+\)|(≈ [\d.]+ (min|s)|< 1 s) \(estimated: .+\)", cell
            ), row


def test_course_timings_parses_the_run_time_line(tmp_path):
    tool = load_tool("course_timings")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# 9. A chapter [![Open In Colab](x)](y)"),
        nbformat.v4.new_code_cell(
            "print(...)",
            outputs=[
                nbformat.v4.new_output(
                    "stream",
                    name="stdout",
                    text="This chapter ran in 3 min 12 s with the cpu profile on CPU: X, 2 cores.\n",
                )
            ],
        ),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)
    assert tool.stored_run(path) == ("9. A chapter", "cpu", "3 min 12 s", "CPU: X, 2 cores")


# ----------------------------------------------------------------------------- the chapters
@pytest.mark.parametrize("check", NOTEBOOK_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_chapter_notebook(path, check):
    nb = nbformat.read(path, as_version=4)
    assert check(nb, path) == []


def test_github_urls_in_notebook_code_are_the_configured_repository():
    """Code that installs or clones the book (install cells, chapter 9's clone) names repository.url."""
    url = repository()[0]
    found = {}
    for path in NOTEBOOKS:
        for cell in code_cells(nbformat.read(path, as_version=4)):
            for link in re.findall(r"https?://(?:www\.)?github\.com/[^\s\"'`)]+", cell.source):
                found.setdefault(link.rstrip("/").removesuffix(".git"), path.name)
    assert found, "no notebook code names the book's repository"
    other = {link: where for link, where in found.items() if link != url}
    assert not other, f"github.com URLs in notebook code other than _config.yml's {url}: {other}"


# ----------------------------------------------------------------------------- the checks and the tools
def _header_notebook(name="03_mini_unet.ipynb", extra_cells=()):
    cells_tool = load_tool("notebook_cells")
    nb = nbformat.v4.new_notebook()
    header = cells_tool.header_cells(ROOT / "notebooks" / name, cells_tool.load_config())
    nb.cells = header + list(extra_cells) + cells_tool.footer_cells()
    nb.metadata["kernelspec"] = dict(cells_tool.KERNELSPEC)
    return nb


def test_header_cells_use_the_configured_repository():
    nb = _header_notebook()
    for check in (check_kernelspec, check_colab_badge, check_install_cell):
        assert check(nb, "notebooks/03_mini_unet.ipynb") == [], check.__name__
    assert nb.cells[0].source.startswith("# 3. A mini U-Net\n")
    compile(nb.cells[2].source, "profile cell", "exec")
    compile(nb.cells[-1].source, "run-time cell", "exec")


def test_checks_catch_broken_notebooks():
    nb = _header_notebook()
    path = "notebooks/03_mini_unet.ipynb"
    assert check_colab_badge(nb, "notebooks/04_unet_network.ipynb"), "badge of another chapter accepted"
    unguarded = _header_notebook()
    unguarded.cells[1].source = f'%pip install "git+{repository()[0]}"'
    assert check_install_cell(unguarded, path)
    nb.metadata["kernelspec"]["name"] = "conda-env-unet"
    assert check_kernelspec(nb, path)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    assert check_first_output_names_profile(nb, path)
    nb.cells[2].outputs.append(
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    )
    assert check_no_errors(nb, path) == ["cell 2 stored an error: ValueError: bad"]
    assert check_last_output_reports_run_time(nb, path)  # the last output is the error
    nb.cells[1].execution_count, nb.cells[2].execution_count = 2, 1
    assert check_executed_in_order(nb, path)


@pytest.mark.parametrize(
    "output, found",
    [
        (nbformat.v4.new_output("stream", name="stderr", text="UserWarning: x\n"), "stored stderr"),
        (
            nbformat.v4.new_output(
                "stream",
                name="stdout",
                text="E0000 00:00:1795254709.249406     324 cuda_platform.cc:52] failed call to cuInit\n",
            ),
            "a TensorFlow log line",
        ),
        (
            nbformat.v4.new_output("stream", name="stdout", text="ISBI 2012 from /work/shared/data\n"),
            "a machine path",
        ),
        (
            nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/tmp/run/x')"}),
            "a machine path",
        ),
        (
            nbformat.v4.new_output(
                "stream", name="stdout", text="saved to checkpoints/run-1 and https://x.org/tmp/a\n"
            ),
            None,
        ),
    ],
)
def test_clean_output_check_flags_logs_stderr_and_paths(output, found):
    nb = _header_notebook()
    nb.cells[2].outputs = [output]
    problems = check_outputs_are_clean(nb, "notebooks/03_mini_unet.ipynb")
    assert (found in problems[0]) if found else problems == []


def test_notebook_cells_tool_writes_and_refreshes_header(tmp_path, monkeypatch):
    cells_tool = load_tool("notebook_cells")
    monkeypatch.setattr(cells_tool, "ROOT", tmp_path)
    path = tmp_path / "notebooks" / "06_weight_maps.ipynb"
    assert cells_tool.write_header(path, cells_tool.load_config()) == "created"
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) == 4
    nb.cells.append(nbformat.v4.new_markdown_cell("## The author's own text"))
    nbformat.write(nb, path)
    assert cells_tool.write_header(path, cells_tool.load_config()) == "updated"
    nb = nbformat.read(path, as_version=4)
    assert [cell.cell_type for cell in nb.cells] == ["markdown", "code", "code", "markdown", "code"]
    assert nb.cells[3].source == "## The author's own text"  # kept, between header and run-time cell
    assert "ran in {clock}" in nb.cells[4].source
    assert check_colab_badge(nb, path) == [] and check_install_cell(nb, path) == []
    with pytest.raises(ValueError, match="--title"):
        cells_tool.header_cells(tmp_path / "notebooks" / "09_extra.ipynb", cells_tool.load_config())


def _run_tool(*args, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_notebooks.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_run_notebooks_stores_outputs_that_pass_the_book_checks(tmp_path):
    """A header made by tools/notebook_cells.py, run by tools/run_notebooks.py, passes every check."""
    figure_cell = nbformat.v4.new_code_cell(
        "import os\nimport matplotlib.pyplot as plt\n"
        "print(os.environ['UNET_TUTORIAL_PROFILE'])\nplt.plot([0, 1])\nplt.show()"
    )
    plotting_cell = nbformat.v4.new_code_cell(
        "import numpy as np\nfrom unet_tutorial import plotting\n"
        "plotting.show_images([np.eye(4)], titles=['eye'])"
    )
    nb = _header_notebook(extra_cells=[figure_cell, plotting_cell])
    nb.metadata["kernelspec"] = {"name": "something-else", "display_name": "x"}
    path = tmp_path / "03_mini_unet.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, MPLBACKEND="Agg", KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    result = _run_tool("--profile", "smoke", path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"stored .*03_mini_unet\.ipynb \(\d+\.\d s wall time\)", result.stdout)
    done = nbformat.read(path, as_version=4)
    assert all_problems(done, path) == []
    assert "profile=smoke" in "".join(_output_text(o) for o in done.cells[2].outputs)
    assert "with the smoke profile on" in "".join(_output_text(o) for o in done.cells[-1].outputs)
    outputs = done.cells[3].outputs
    assert outputs[0]["text"] == "smoke\n"
    assert any("image/png" in output.get("data", {}) for output in outputs), "figure not stored as an image"
    # a figure returned by unet_tutorial.plotting is stored once, as an image
    images = [output for output in done.cells[4].outputs if "image/png" in output.get("data", {})]
    assert len(images) == 1 and len(done.cells[4].outputs) == 1, done.cells[4].outputs


def test_run_notebooks_leaves_a_failing_notebook_untouched(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('first')"), nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    result = _run_tool(path)
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr and "left unchanged" in result.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.ipynb"]


def test_run_notebooks_rejects_missing_files(tmp_path):
    result = _run_tool(tmp_path / "nothing.ipynb")
    assert result.returncode == 2 and "not an existing .ipynb" in result.stderr


# ----------------------------------------------------------------------------- nbval settings
def test_nbval_conftest_ignores_figures_and_stderr_but_checks_text(tmp_path):
    """Run nbval on two tiny notebooks with notebooks/conftest.py: one must pass, one fail."""
    (tmp_path / "conftest.py").write_text((ROOT / "notebooks" / "conftest.py").read_text(encoding="utf-8"))
    checked = (
        "# NBVAL_CHECK_OUTPUT\nimport os, sys\nfrom matplotlib.figure import Figure\n"
        "print(os.environ['UNET_TUTORIAL_PROFILE'], os.environ['MPLBACKEND'])\n"
        "print('noise', id(object()), file=sys.stderr)\nfig = Figure(figsize=(3, 2))\nfig.add_subplot()\nfig"
    )
    stored = [
        nbformat.v4.new_output("stream", name="stdout", text="smoke Agg\n"),
        nbformat.v4.new_output("stream", name="stderr", text="old noise\n"),
        nbformat.v4.new_output(
            "execute_result",
            data={"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBORw0KGgo="},
            execution_count=1,
        ),
    ]
    good = nbformat.v4.new_notebook()
    good.cells = [nbformat.v4.new_code_cell(checked, outputs=stored, execution_count=1)]
    good.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(good, tmp_path / "good.ipynb")
    bad = nbformat.from_dict(json.loads(nbformat.writes(good)))
    bad.cells[0].outputs[0]["text"] = "cpu Agg\n"
    nbformat.write(bad, tmp_path / "bad.ipynb")

    env = {k: v for k, v in os.environ.items() if k not in ("UNET_TUTORIAL_PROFILE", "MPLBACKEND")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "-q", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    report = result.stdout
    assert re.search(r"PASSED good\.ipynb::Cell 0", report), report[-3000:]
    assert re.search(r"FAILED bad\.ipynb::Cell 0", report), report[-3000:]
    assert "1 failed, 1 passed" in report
