"""pytest settings for running the chapter notebooks with nbval.

Run from the repository root::

    python -m pytest --nbval-lax --nbval-current-env notebooks/

``--nbval-lax`` runs every cell and fails on any exception, but compares stored and
new outputs only for cells marked ``# NBVAL_CHECK_OUTPUT`` (first line of the cell) or
tagged ``nbval-check-output``. For those cells this file makes the comparison ignore
what legitimately changes from run to run:

* stderr (warnings, progress bars), rich outputs (images, HTML, JavaScript, widgets);
* the text form of figures, ``<Figure size 640x480 with 2 Axes>``, and memory
  addresses such as ``at 0x7f3a...``.

The kernel is always the Python running pytest (as with ``--nbval-current-env``)
unless ``--nbval-kernel-name`` is given, so the notebooks test the package installed
here. While a notebook's kernel starts, ``UNET_TUTORIAL_PROFILE`` defaults to ``smoke``
(a few training steps on tiny models) and ``MPLBACKEND`` to ``Agg``; values already set
in the environment win, e.g. ``UNET_TUTORIAL_PROFILE=cpu``. ``UNET_TUTORIAL_CHECKPOINTS``
points at a fresh temporary folder, so a chapter never resumes from an earlier run's
checkpoints.
"""

import os
import tempfile

import pytest

#: Output fields and MIME types never compared (nbval compares the rest).
SKIP_COMPARE = (
    "stderr",
    "image/png",
    "image/jpeg",
    "image/svg+xml",
    "text/html",
    "text/markdown",
    "text/latex",
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)

#: regex -> replacement, applied to stored and new outputs before they are compared.
SANITIZE = {
    r"<Figure size \d+(\.\d+)?x\d+(\.\d+)? with \d+ Axes>": "<Figure>",
    r"\bat 0x[0-9a-fA-F]+": "at 0x...",
}

#: Environment of the notebook kernels, unless already set.
NOTEBOOK_ENV = {"UNET_TUTORIAL_PROFILE": "smoke", "MPLBACKEND": "Agg"}


def _is_notebook(node):
    path = getattr(node, "path", None)
    return path is not None and path.suffix == ".ipynb"


def pytest_configure(config):
    option = config.option
    if getattr(option, "nbval_kernel_name", None) is None and hasattr(option, "nbval_current_env"):
        option.nbval_current_env = True


def pytest_collectstart(collector):
    if _is_notebook(collector) and hasattr(collector, "skip_compare"):
        collector.skip_compare = tuple(collector.skip_compare) + SKIP_COMPARE
        collector.sanitize_patterns.update(SANITIZE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Set the kernel's environment while nbval starts it, then restore ours."""
    if not _is_notebook(item):
        yield
        return
    env = dict(NOTEBOOK_ENV, UNET_TUTORIAL_CHECKPOINTS=tempfile.mkdtemp(prefix="nbval-checkpoints-"))
    saved = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if not os.environ.get(name):
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
