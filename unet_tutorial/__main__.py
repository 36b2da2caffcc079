"""Tooling: ``python -m unet_tutorial`` runs the command line of :mod:`unet_tutorial.cli`."""

import sys

from unet_tutorial.cli import main

if __name__ == "__main__":
    sys.exit(main())
