"""Check the environment `make test-colab` built: Colab's versions plus the installed package.

Run with the environment's Python (``.venv-colab/bin/python tools/colab_stack.py``). It
prints one line with the versions that matter, lists every package of
``requirements-colab.txt`` whose installed version differs from its pin (Keras should:
the install cell upgrades it), and fails when

* Keras is older than the package needs (the install did not upgrade it),
* TensorFlow is not Colab's version (something replaced it), or
* ``unet_tutorial`` is imported from a source folder instead of the installed package.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements-colab.txt"
NEEDED_KERAS = (3, 14)


def read_pins(path=PINS):
    """{distribution name: version} of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def major_minor(version):
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pins", type=Path, default=PINS)
    args = parser.parse_args(argv)

    # Run from outside the repository so that `import unet_tutorial` cannot find the source folder.
    sys.path[:] = [entry for entry in sys.path if Path(entry or os.getcwd()).resolve() != ROOT]
    import unet_tutorial

    pins = read_pins(args.pins)
    versions = {name: installed_version(name) for name in ("tensorflow", "keras", "numpy", "unet-tutorial")}
    print(
        f"Colab stack: python {sys.version.split()[0]}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + f"; unet_tutorial from {Path(unet_tutorial.__file__).parent}"
    )
    changed = {
        name: (pin, installed_version(name)) for name, pin in pins.items() if installed_version(name) != pin
    }
    for name, (pin, now) in changed.items():
        print(f"  {name}: pinned {pin}, installed {now}")

    problems = []
    if versions["keras"] is None or major_minor(versions["keras"]) < NEEDED_KERAS:
        problems.append(f"Keras {versions['keras']} is older than {'.'.join(map(str, NEEDED_KERAS))}")
    if "tensorflow" in pins and versions["tensorflow"] != pins["tensorflow"]:
        problems.append(f"TensorFlow is {versions['tensorflow']}, not Colab's {pins['tensorflow']}")
    if "site-packages" not in Path(unet_tutorial.__file__).parts:
        problems.append(f"unet_tutorial comes from {unet_tutorial.__file__}, not from the installed package")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
