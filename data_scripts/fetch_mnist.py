#!/usr/bin/env python
"""Download MNIST (four IDX files, about 11 MB) with torchvision into $TUTORIAL_DATA/mnist/MNIST/raw.

    python data_scripts/fetch_mnist.py [--root DIR]

``torchvision.datasets.MNIST(root, download=True)`` fetches both splits from its mirrors, checks
their MD5 sums and unpacks them into ``<root>/MNIST/raw``; ``root`` defaults to
``$TUTORIAL_DATA/mnist`` (``$TUTORIAL_DATA`` defaults to ``~/.cache/tutorial_lib/data``).
Offline, it stops with the file names, the mirrors and the folder to copy the files into by hand.

The `gpu` profile of notebooks 01 and 02 trains on MNIST (28x28) when it is present, and on the
embedded digits upsampled to 28x28 otherwise (saying so).
"""

import argparse
import sys

from tutorial_lib.errors import TutorialError
from tutorial_lib.public_data import fetch_mnist, load_mnist, mnist_root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None,
                        help=f"torchvision's MNIST root; the files go to ROOT/MNIST/raw (default {mnist_root()})")
    args = parser.parse_args()
    try:
        folder = fetch_mnist(args.root)
        data = load_mnist(args.root)
    except TutorialError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"MNIST ready in {folder}")
    print(data.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
