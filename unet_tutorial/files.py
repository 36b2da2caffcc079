"""Tooling: writing files so that an interrupted session never leaves half a file.

Not taught in a chapter; the training runs, the weight-map cache and the downloads use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np


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


def sha256_of_pixels(array) -> str:
    """SHA-256 of an array's pixels in C order.

    Examples
    --------
    >>> sha256_of_pixels(np.zeros((2, 2), np.uint8)) == hashlib.sha256(bytes(4)).hexdigest()
    True
    """
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _load_checked(path, shape):
    """The array cached in ``path``, or None (with a warning) when it or its checksum is damaged."""
    try:
        array, checksum = np.load(path, allow_pickle=False), path.with_suffix(".sha256").read_text()
        if array.shape == shape and sha256_of_pixels(array) == checksum.strip():
            return array
    except (OSError, ValueError, EOFError):
        pass
    warnings.warn(f"Cache {path} is damaged; recomputing it.", RuntimeWarning, stacklevel=4)
    return None


def cached_array(folder, name, compute, source, options):
    """``compute()``, an array of ``source``'s shape, cached on disk in ``folder`` (created if missing).

    The file is ``<name>-<key>.npy`` plus a ``.sha256`` checksum of its pixels; the key hashes
    ``options`` (a JSON-able dict, a version string included) and ``source``'s dtype, shape and
    bytes. A damaged file is computed again, with a warning; nothing is written outside ``folder``.
    """
    source = np.asarray(source)
    text = json.dumps(options, sort_keys=True) + f"{source.dtype.str}{source.shape}"
    key = hashlib.sha256(text.encode() + np.ascontiguousarray(source).tobytes()).hexdigest()[:32]
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"{name}-{key}.npy"
    if path.exists() and (cached := _load_checked(path, source.shape)) is not None:
        return cached
    array = compute()
    write_atomically(path, lambda file: np.save(file, array))
    write_atomically(path.with_suffix(".sha256"), lambda file: file.write_text(sha256_of_pixels(array)))
    return array
