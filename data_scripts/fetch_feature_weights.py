#!/usr/bin/env python
"""Download torchvision's ImageNet VGG-19 and AlexNet weights into the torch hub cache, SHA-256 verified.

    python data_scripts/fetch_feature_weights.py [--only alexnet|vgg19]

Files (from https://download.pytorch.org/models/):

    alexnet-owt-7be5be79.pth   about 233 MB   (AlexNet; also what LPIPS needs)
    vgg19-dcbb9e9d.pth         about 548 MB   (VGG-19)

They go to ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), where torchvision itself
looks, so ``torchvision.models.vgg19(weights="DEFAULT")`` then loads without network too.

Verification: torchvision publishes no separate checksum file; each weight file's name embeds the
first hex digits of its own SHA-256 (``7be5be79``, ``dcbb9e9d``). The download is checked against
that prefix (``tutorial_lib.public_data.RemoteFile`` with the prefix as ``sha256``) and only then
moved into place; an existing file is re-verified. Offline, it stops with the URL and the folder to
copy the file into by hand.

Notebook 05 (unpaired ISP) uses these as its frozen feature networks when present (``gpu``
profile, ``feature_nets="auto"``); without them it uses its offline fallback.
"""

import argparse
import sys

from tutorial_lib.errors import TutorialError
from tutorial_lib.isp import PRETRAINED_FILES, hub_checkpoint_dir, pretrained_path
from tutorial_lib.public_data import fetch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(PRETRAINED_FILES), default=None,
                        help="fetch only this network's weights")
    args = parser.parse_args()
    folder = hub_checkpoint_dir()
    status = 0
    for arch, spec in PRETRAINED_FILES.items():
        if args.only and arch != args.only:
            continue
        try:
            path = fetch(spec.remote(), folder, timeout=120.0)
            pretrained_path(arch)  # re-check exactly what the notebook will load
            print(f"{arch}: {path} (SHA-256 starts with {spec.sha256_prefix}, verified)")
        except TutorialError as err:
            print(f"error: {arch}: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
