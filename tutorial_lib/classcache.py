"""A class cache: the trained models of every notebook, shipped by a lecturer to a whole class.

    python -m tutorial_lib.classcache pack   CACHE_DIR  class-cache.tar.gz   # archive + SHA-256 list
    python -m tutorial_lib.classcache unpack class-cache.tar.gz  FOLDER      # checks every file

``make cache`` trains every model of the ``laptop`` profile into ``.cache/class`` (by running the
notebooks) and packs it. Students unpack it once and set ``TUTORIAL_SHARED_CACHE=FOLDER``: the
notebooks then read a model from that folder when its code key matches (the same key as the
personal cache: configuration plus a fingerprint of the training code that is the same on every
Python version and operating system), and write only to their personal cache. A model whose code
changed since the archive was made is simply trained again.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

from .errors import TutorialError, exit_status

MANIFEST = "SHA256SUMS.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(cache_dir: str | Path, archive: str | Path) -> dict[str, str]:
    """Write the checkpoints (``*.pt``) of ``cache_dir`` and their SHA-256 list into a .tar.gz."""
    cache_dir, archive = Path(cache_dir), Path(archive)
    files = sorted(p for p in cache_dir.glob("*.pt") if p.is_file())
    if not files:
        raise TutorialError(f"No checkpoints (*.pt) in {cache_dir}: run the notebooks with TUTORIAL_CACHE={cache_dir} "
                            f"first (make cache does).")
    sums = {p.name: _sha256(p) for p in files}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=p.name)
        data = json.dumps(sums, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return sums


def unpack(archive: str | Path, folder: str | Path) -> dict[str, str]:
    """Extract a class cache into ``folder`` and check every file against the archive's SHA-256 list;
    a missing, extra or altered file is an error (and nothing half-checked is left behind)."""
    archive, folder = Path(archive), Path(folder)
    if not archive.is_file():
        raise TutorialError(f"No class cache archive at {archive}.")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        if MANIFEST not in names:
            raise TutorialError(f"{archive} has no {MANIFEST}: not a class cache made by `classcache pack`.")
        bad = [n for n in names if "/" in n or n.startswith(".") or not (n.endswith(".pt") or n == MANIFEST)]
        if bad:
            raise TutorialError(f"{archive} holds unexpected entries: {bad[:5]}.")
        sums = json.loads(tar.extractfile(MANIFEST).read())
        if set(sums) != set(names) - {MANIFEST}:
            raise TutorialError(f"{archive}: the checksum list and the files differ.")
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        try:
            for name in sums:
                target = folder / name
                with tar.extractfile(name) as src, open(target, "wb") as dst:
                    dst.write(src.read())
                written.append(target)
                if _sha256(target) != sums[name]:
                    raise TutorialError(f"{name} in {archive} does not match its checksum: the archive is damaged.")
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.classcache", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="archive a cache folder with its checksums")
    p.add_argument("cache_dir")
    p.add_argument("archive")
    u = sub.add_parser("unpack", help="extract and verify a class cache")
    u.add_argument("archive")
    u.add_argument("folder")
    args = parser.parse_args(argv)

    def work():
        if args.command == "pack":
            sums = pack(args.cache_dir, args.archive)
            size = Path(args.archive).stat().st_size / 1e6
            print(f"{len(sums)} checkpoints packed into {args.archive} ({size:.1f} MB) with their SHA-256 list.")
        else:
            sums = unpack(args.archive, args.folder)
            print(f"{len(sums)} checkpoints checked and written to {args.folder}. Use them with:\n"
                  f"  export TUTORIAL_SHARED_CACHE={Path(args.folder).resolve()}")
    return exit_status(work)

if __name__ == "__main__":
    sys.exit(main())
