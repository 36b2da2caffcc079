"""Execute chapter notebooks top to bottom and store their outputs in place.

The book is built from the outputs stored in the notebooks (nothing runs at build
time), so this is how those outputs are made::

    python tools/run_notebooks.py --profile cpu                    # every chapter
    python tools/run_notebooks.py --profile gpu notebooks/05_unet_training.ipynb

Each notebook runs in a fresh ``python3`` kernel of the current environment, with
``UNET_TUTORIAL_PROFILE`` set to ``--profile`` (when given) and matplotlib's inline
backend, so figures are stored as images. A notebook whose execution raises is left
exactly as it was on disk, and the script stops (or, with ``--keep-going``, carries on
with the others) and exits with status 1. Each notebook's wall time is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "cpu", "gpu")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def default_notebooks():
    """The chapters: notebooks/NN_*.ipynb in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def prepare_environment(profile):
    """Environment the kernels inherit: the profile, and no forced matplotlib backend.

    A non-interactive backend such as Agg (set for tests) would keep pyplot figures out
    of the stored outputs; without MPLBACKEND, ipykernel picks the inline backend.
    """
    if profile is not None:
        os.environ["UNET_TUTORIAL_PROFILE"] = profile
    backend = os.environ.get("MPLBACKEND", "")
    if backend and "inline" not in backend:
        del os.environ["MPLBACKEND"]


def execute(path, timeout, kernel_name="python3"):
    """Run one notebook and return it executed; raises if a cell raised.

    The file itself is not touched here.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # A fresh checkpoint folder per notebook: a stored run never resumes an older one. It is
    # given relative to the notebook's folder (where the kernel runs; checkpoints/ is
    # git-ignored), so printed paths say nothing about the machine that ran the chapter.
    parent = Path(path).resolve().parent
    (parent / "checkpoints").mkdir(exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f"{Path(path).stem}-", dir=parent / "checkpoints"))
    os.environ["UNET_TUTORIAL_CHECKPOINTS"] = str(fresh.relative_to(parent))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(Path(path).parent)}},
    )
    try:
        client.execute()
    finally:  # the run's checkpoints served only this run
        shutil.rmtree(fresh, ignore_errors=True)
        if not any((parent / "checkpoints").iterdir()):
            (parent / "checkpoints").rmdir()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def store(nb, path):
    """Write ``nb`` over ``path`` through a temporary file, so a crash cannot leave half a notebook."""
    import nbformat

    path = Path(path)
    temporary = path.with_name(f".{path.name}.running")
    nbformat.write(nb, temporary)
    temporary.replace(path)


def run(paths, timeout, keep_going=False):
    """Execute and store each notebook; return the number that failed."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    failures = 0
    total = time.perf_counter()
    for path in paths:
        print(f"running {path} ...", flush=True)
        start = time.perf_counter()
        try:
            nb = execute(path, timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            failures += 1
            seconds = time.perf_counter() - start
            print(
                f"FAILED  {path} after {seconds:.1f} s; the file was left unchanged.\n{error}",
                file=sys.stderr,
            )
            if not keep_going:
                break
            continue
        store(nb, path)
        print(f"stored  {path} ({time.perf_counter() - start:.1f} s wall time)", flush=True)
    print(f"total wall time {time.perf_counter() - total:.1f} s")
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--profile", choices=PROFILES, help="sets UNET_TUTORIAL_PROFILE for the kernels")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    parser.add_argument("--keep-going", action="store_true", help="run the other notebooks after a failure")
    args = parser.parse_args(argv)

    paths = args.notebooks or default_notebooks()
    if not paths:
        parser.error("no notebooks given and none found in notebooks/.")
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not an existing .ipynb notebook.")
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds.")

    prepare_environment(args.profile)
    return 1 if run(paths, args.timeout, args.keep_going) else 0


if __name__ == "__main__":
    sys.exit(main())
