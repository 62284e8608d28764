#!/usr/bin/env python
"""Download MNIST (four IDX files, about 11 MB) into $TUTORIAL_DATA/mnist/MNIST/raw
(torchvision first, the mirrors directly if that fails), verifying SHA-256.

    python data_scripts/fetch_mnist.py [--root DIR]

Offline, it stops with the mirror addresses and the folder to copy the files into by hand.
The `gpu` profile of notebooks 01 and 02 uses MNIST when it is present.
"""

import argparse
import sys

from tutorial_lib.errors import TutorialError
from tutorial_lib.public_data import data_dir, fetch_mnist, load_mnist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help=f"data folder (default {data_dir()})")
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
