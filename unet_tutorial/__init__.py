"""Shared code of the U-Net tutorial book.

Every chapter imports its pieces from here; import the modules explicitly, e.g.
``from unet_tutorial import data, models``. Importing the package itself is cheap: it
loads neither Keras nor matplotlib.

What the chapters teach, one concept per module:

- ``data``: the ISBI 2012 stacks, the book's split, image scaling;
- ``augment``: flips, affine and elastic deformation in one resampling;
  ``dataset``: mirrored training crops and batches;
- ``models``: the mini U-Net, the paper's U-Net and its size arithmetic;
- ``losses``: the weighted pixel cross-entropy; ``weights``: the paper's weight maps;
- ``metrics``: pixel scores and Keras metrics; ``challenge``: the ISBI scores V_Rand, V_Info;
- ``training``: resumable training; ``callbacks``: scores and previews during training;
- ``tiling``: overlap-tile prediction; ``memory``: activation-memory estimates;
- ``predictions``: saving maps and the ISBI submission; ``folders``: your own images;
- ``plotting``: the figures.

Tooling, which no chapter teaches: ``runtime`` (profiles, seeding, Drive), ``download``,
``synthetic``, ``palettes``, ``probing``, ``model_files``, ``files`` and the command line
(``cli``, ``python -m unet_tutorial``).
"""

__version__ = "0.1.0"
