"""Shared code of the U-Net tutorial book.

Every chapter imports its pieces from here. Submodules are named for the concept
they hold (``data``, ``augment``, ``models``, ``weights``, ``tiling``, ``metrics``,
``losses``, ``training``, ``plotting``, ``runtime``); import them explicitly, e.g.
``from unet_tutorial import data, models``. Importing the package itself is cheap:
it loads neither Keras nor matplotlib.
"""

__version__ = "0.1.0"
