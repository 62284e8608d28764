#!/usr/bin/env python
"""Download torchvision's ImageNet VGG-19 and AlexNet weights into the torch hub cache, SHA-256 checked.

    python data_scripts/fetch_feature_weights.py [--only alexnet|vgg19]

Files (from https://download.pytorch.org/models/):

    alexnet-owt-7be5be79.pth   about 233 MB   (AlexNet; also what LPIPS needs)
    vgg19-dcbb9e9d.pth         about 548 MB   (VGG-19)

They go to ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), where torchvision itself
looks, so ``torchvision.models.vgg19(weights="DEFAULT")`` then loads without network too.

Verification: torchvision publishes no separate checksum file; each weight file's name embeds the
first hex digits of its own SHA-256 (``7be5be79``, ``dcbb9e9d``). The download goes through
``torch.hub.download_url_to_file(url, dst, hash_prefix=...)``, which checks that prefix before it
moves the file into place; a file already there is re-checked (``tutorial_lib.isp.pretrained_path``).
Offline, it stops with the URL and the folder to copy the file into by hand.

Notebook 05 (unpaired ISP) uses these as its frozen feature networks when present (``gpu``
profile, ``feature_nets="auto"``); without them it uses its offline fallback.
"""

import argparse
import sys

from tutorial_lib.errors import TutorialError
from tutorial_lib.isp import PRETRAINED_FILES, pretrained_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(PRETRAINED_FILES), default=None,
                        help="fetch only this network's weights")
    args = parser.parse_args()
    status = 0
    for arch, spec in PRETRAINED_FILES.items():
        if args.only and arch != args.only:
            continue
        try:
            path = spec.fetch()
            pretrained_path(arch)  # re-check exactly what the notebook will load
            print(f"{arch}: {path} (SHA-256 starts with {spec.sha256_prefix}, verified)")
        except TutorialError as err:
            print(f"error: {arch}: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
