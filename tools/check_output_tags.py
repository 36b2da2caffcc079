"""Turn ``# NBVAL_CHECK_OUTPUT`` comment lines into the ``nbval-check-output`` cell tag.

nbval honours both; the tag keeps the marker out of the code a reader sees in the book.
Only cell sources and tags change, never outputs.

    python tools/check_output_tags.py notebooks/*.ipynb
"""

import sys

import nbformat

MARKER = "# NBVAL_CHECK_OUTPUT"
TAG = "nbval-check-output"


def convert(path):
    nb = nbformat.read(path, as_version=4)
    changed = 0
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if cell.cell_type != "code" or not lines or lines[0].strip() != MARKER:
            continue
        cell.source = "\n".join(lines[1:]).lstrip("\n")
        tags = cell.metadata.setdefault("tags", [])
        if TAG not in tags:
            tags.append(TAG)
        changed += 1
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {convert(name)} cells tagged {TAG}")
