"""Exercise solutions that stay folded until a student opens them, and still run in CI.

A solution lives in a Markdown cell as a folded block::

    <details>
    <summary>Solution</summary>

    ```python
    ...the solution's code...
    ```

    </details>

Colab, Jupyter and the book's site all show it folded, and "Run all" never runs it,
because it is not a code cell. CI runs it all the same: ``expand`` writes copies of the
chapters in which every solution is a code cell again, in its place, and ``make test``
runs nbval over those copies.

    python tools/solutions.py expand notebooks/*.ipynb --out notebooks/_with_solutions
    python tools/solutions.py fold notebooks/03_mini_unet.ipynb   # code cells tagged
                                                                  # "solution" -> folded blocks
    python tools/solutions.py check notebooks/*.ipynb             # every chapter has >= 3
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

OPEN = "<details>\n<summary>Solution</summary>\n\n```python\n"
CLOSE = "\n```\n\n</details>"
SOLUTION = re.compile(
    r"\A<details>\s*<summary>Solution</summary>\s*```python\n(?P<code>.*?)\n```\s*</details>\s*\Z", re.DOTALL
)
TAG = "solution"  # a code cell to fold (fold turns it into a Markdown block)


def solution_code(cell):
    """The code of a folded solution cell, or None for any other cell."""
    if cell.cell_type != "markdown":
        return None
    match = SOLUTION.match(cell.source.strip())
    return match.group("code") if match else None


def fold(nb):
    """Turn code cells tagged "solution" (or the older "hide-cell") into folded blocks."""
    count = 0
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and (TAG in tags or "hide-cell" in tags):
            folded = nbformat.v4.new_markdown_cell(OPEN + cell.source.strip("\n") + CLOSE)
            folded["id"] = cell.get("id", folded["id"])
            nb.cells[index] = folded
            count += 1
    return count


def expand(nb):
    """A copy of ``nb`` in which every folded solution is a code cell again."""
    full = nbformat.from_dict(nb)
    for index, cell in enumerate(full.cells):
        code = solution_code(cell)
        if code is not None:
            runnable = nbformat.v4.new_code_cell(code)
            runnable["id"] = cell["id"]
            runnable.metadata["tags"] = [TAG]
            full.cells[index] = runnable
    return full


def count(nb):
    return sum(solution_code(cell) is not None for cell in nb.cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("expand", "fold", "check"):
        command = commands.add_parser(name)
        command.add_argument("notebooks", nargs="+", type=Path)
        if name == "expand":
            command.add_argument("--out", type=Path, required=True, help="folder for the copies")
        if name == "check":
            command.add_argument("--at-least", type=int, default=3, help="solutions every chapter needs")
    args = parser.parse_args(argv)
    failures = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.command == "expand":
            args.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(expand(nb), args.out / path.name)
        elif args.command == "fold":
            folded = fold(nb)
            nbformat.write(nb, path)
            print(f"{path}: {folded} solutions folded")
        else:
            found = count(nb)
            code_left = [
                i
                for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and {TAG, "hide-cell"} & set(c.get("metadata", {}).get("tags", []))
            ]
            if found < args.at_least or code_left:
                failures += 1
                print(
                    f"{path}: {found} folded solutions (need {args.at_least}); "
                    f"unfolded solution code cells: {code_left or 'none'}"
                )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
