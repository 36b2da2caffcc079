"""``python -m unet_tutorial``: see :mod:`unet_tutorial.cli`."""

import sys

from unet_tutorial.cli import main

if __name__ == "__main__":
    sys.exit(main())
