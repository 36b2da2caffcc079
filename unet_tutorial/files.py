"""Tooling: writing files so that an interrupted session never leaves half a file.

Not taught in a chapter; the training runs, the weight-map cache and the downloads use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path, write):
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file sits in the same folder and keeps the suffix (``model.save``
    needs ``.keras``), so the rename is atomic: a session killed mid-write (Colab)
    leaves the old file intact, and a failed write leaves nothing behind.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> write_atomically(target, lambda p: p.write_text("done"))
    >>> target.read_text(), sorted(f.name for f in target.parent.iterdir())
    ('done', ['note.txt'])
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
