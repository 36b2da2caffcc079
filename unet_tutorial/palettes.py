"""Tooling: colour palettes of public segmentation data sets.

A palette maps class names to the RGB colours that a data set's masks use; its order gives
the class indices. :func:`unet_tutorial.folders.mask_to_classes` and
:func:`unet_tutorial.folders.classes_to_rgb` take one.
"""

#: The 12 CamVid classes with the colours of SegNet-style CamVid label images.
#: Class index = position (Sky = 0, ..., Unlabelled = 11). Chapter 1 colours a scene with it.
CAMVID = {
    "Sky": (128, 128, 128),
    "Building": (128, 0, 0),
    "Pole": (192, 192, 128),
    "Road": (128, 64, 128),
    "Pavement": (60, 40, 222),
    "Tree": (128, 128, 0),
    "SignSymbol": (192, 128, 128),
    "Fence": (64, 64, 128),
    "Car": (64, 0, 128),
    "Pedestrian": (64, 64, 0),
    "Bicyclist": (0, 128, 192),
    "Unlabelled": (0, 0, 0),
}
