"""Generate the standard first cells of a chapter notebook.

Every chapter opens with the same three cells and ends with the same one, so nobody
types them by hand:

1. a Markdown cell: the chapter's title and an "Open in Colab" badge;
2. the install cell: inside Colab it pip-installs this book's package from the
   repository named in ``_config.yml`` (the one place that names it); elsewhere it
   does nothing;
3. the profile cell: picks the runtime profile, starts a stopwatch and prints the line
   that says which machine made the stored outputs (``profile=... | device=...``);
4. last, the run-time cell: prints how long the chapter ran, with which profile and
   on which device (the course plan's timings are read from it).

Usage (from the repository root)::

    python tools/notebook_cells.py header notebooks/03_mini_unet.ipynb           # insert / update
    python tools/notebook_cells.py header notebooks/03_mini_unet.ipynb --print   # only show them
    python tools/notebook_cells.py header notebooks/09_new.ipynb --title "New chapter"

A missing notebook is created with just these cells. In an existing notebook, the
cells this tool wrote earlier (marked in their metadata) are replaced; the header
goes on top, the run-time cell at the bottom, and every other cell is kept as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# Marks generated cells in their metadata, so a later run replaces instead of duplicating them.
MARKER = "unet_tutorial_header"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

#: Chapter titles by notebook name (the number comes from the name's prefix).
CHAPTER_TITLES = {
    "01_semantic_segmentation": "Semantic segmentation",
    "02_augmentation": "Augmentation",
    "03_mini_unet": "A mini U-Net",
    "04_unet_network": "The paper's network",
    "05_unet_training": "Training the U-Net",
    "06_weight_maps": "Weight maps",
    "07_overlap_tile": "Overlap-tile on Colab GPUs",
    "08_own_data": "Your own data and pretrained encoders",
    "09_results": "Results: the paper's recipe against the popular Keras recipe",
}


def load_config(path=CONFIG):
    """The book's ``_config.yml`` as a dict."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run this tool inside the book's repository.")
    with path.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def repository(config):
    """(url, owner, name, branch) of the GitHub repository named in ``_config.yml``."""
    repo = config.get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    if not match:
        raise ValueError(
            f"_config.yml repository.url must look like https://github.com/<owner>/<repo>, got {url!r}."
        )
    return url, match.group(1), match.group(2), str(repo.get("branch", "main"))


def colab_url(notebook, config):
    """The Colab address that opens ``notebook`` straight from GitHub."""
    _, owner, name, branch = repository(config)
    relative = _relative_to_root(notebook)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{relative}"


def _relative_to_root(notebook):
    path = Path(notebook).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        raise ValueError(f"{notebook} is not inside the book's repository {ROOT}.") from None


def chapter_title(notebook, title=None):
    """'3. A mini U-Net' from the notebook's name, or the given title with its number."""
    stem = Path(notebook).stem
    title = title or CHAPTER_TITLES.get(stem)
    if title is None:
        raise ValueError(f"no title known for {stem!r}: pass --title 'Your chapter title'.")
    number = re.match(r"(\d+)_", stem)
    return f"{int(number.group(1))}. {title}" if number else title


def install_source(config):
    """Code of the install cell: pip-installs the package, but only inside Colab."""
    url = repository(config)[0]
    return (
        "# In Google Colab, install the book's package (about a minute); on your own machine\n"
        "# `pip install -e .` has done that already and this cell does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install --quiet "git+{url}"'
    )


PROFILE_SOURCE = (
    "from unet_tutorial import runtime\n"
    "\n"
    "runtime.quiet_tensorflow_logs()  # before Keras loads: no TensorFlow start-up lines below\n"
    "profile = runtime.select_profile()  # smoke, cpu or gpu: see the Setup page\n"
    "clock = runtime.Stopwatch()\n"
    "print(runtime.summary(profile))"
)


RUN_TIME_SOURCE = (
    'print(f"This chapter ran in {clock} with the {profile.name} profile on {runtime.device_name()}.")'
)


def _marked(cell):
    cell.metadata[MARKER] = True
    return cell


def header_cells(notebook, config, title=None):
    """The three standard first cells of ``notebook`` as nbformat cells."""
    import nbformat

    badge = f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook, config)})"
    return [
        _marked(nbformat.v4.new_markdown_cell(f"# {chapter_title(notebook, title)}\n\n{badge}")),
        _marked(nbformat.v4.new_code_cell(install_source(config))),
        _marked(nbformat.v4.new_code_cell(PROFILE_SOURCE)),
    ]


def footer_cells():
    """The standard last cell: the chapter's run time, profile and device."""
    import nbformat

    return [_marked(nbformat.v4.new_code_cell(RUN_TIME_SOURCE))]


def write_header(notebook, config, title=None):
    """Insert (or refresh) the header and run-time cells of ``notebook``; create it if missing.

    Returns
    -------
    str
        "created" or "updated".
    """
    import nbformat

    path = Path(notebook)
    header, footer = header_cells(path, config, title), footer_cells()
    if path.exists():
        nb = nbformat.read(path, as_version=4)
        kept = [cell for cell in nb.cells if not cell.metadata.get(MARKER)]
        action = "updated"
    else:
        nb, kept, action = nbformat.v4.new_notebook(), [], "created"
    nb.cells = []
    for cell in header + kept + footer:
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.nbformat_minor = max(nb.nbformat_minor, 5)  # cell ids need format 4.5
    for cell in nb.cells:  # cells of an older notebook may lack ids
        cell.setdefault("id", uuid.uuid4().hex[:8])
    nbformat.validate(nb)
    temporary = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, temporary)
    temporary.replace(path)
    return action


def _print_cells(cells):
    for cell in cells:
        print(f"----- {cell.cell_type} cell -----")
        print(cell.source)
    print("-----")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    header = commands.add_parser("header", help="write the standard first (and last) cells of a chapter")
    header.add_argument("notebook", type=Path, help="e.g. notebooks/03_mini_unet.ipynb")
    header.add_argument("--title", help="chapter title, for notebooks not in CHAPTER_TITLES")
    header.add_argument(
        "--print", dest="only_print", action="store_true", help="print the cells, change nothing"
    )
    header.add_argument("--json", action="store_true", help="with --print: print the cells as notebook JSON")
    args = parser.parse_args(argv)

    if args.notebook.suffix != ".ipynb":
        parser.error(f"{args.notebook} is not a .ipynb notebook.")
    try:
        config = load_config()
        if args.only_print:
            cells = header_cells(args.notebook, config, args.title) + footer_cells()
            if args.json:
                print(json.dumps(cells, indent=1))
            else:
                _print_cells(cells)
            return 0
        action = write_header(args.notebook, config, args.title)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{action} {args.notebook}: title, Colab badge, install, profile and run-time cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
