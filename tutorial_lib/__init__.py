"""tutorial_lib: the tested helper library behind the notebook course.

One module per concern:

* :mod:`tutorial_lib.profiles`     validated ``smoke`` / ``laptop`` / ``gpu`` configurations
* :mod:`tutorial_lib.runtime`      device choice, seeds, progress bars, environment report
* :mod:`tutorial_lib.checkpoints`  atomic, config-checked checkpoint cache
* :mod:`tutorial_lib.data`         offline data that ships inside installed packages
* :mod:`tutorial_lib.public_data`  checksum-verified downloads of public data sets and weights
* :mod:`tutorial_lib.metrics`      PSNR, SSIM, classifier-feature Frechet distance, Delta E 2000
* :mod:`tutorial_lib.plots`        image grids, before/after panels, one plotting style
* :mod:`tutorial_lib.results`      claim cells: record, check and display a notebook's claims
* :mod:`tutorial_lib.nbtools`      notebook hygiene (output stripping, structure checks)

Method modules (one per notebook) build on these.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CheckpointError,
    ClaimFailed,
    DatasetMissing,
    InputShapeError,
    ProfileError,
    TutorialError,
)
from .checkpoints import set_retrain  # noqa: E402
from .profiles import ProfileSet, Config, PROFILE_NAMES, default_profile  # noqa: E402
from .runtime import (  # noqa: E402
    start,
    pick_device,
    seed_everything,
    make_generator,
    progress,
    environment_report,
    require_version,
)

__all__ = [
    "__version__",
    "TutorialError",
    "ProfileError",
    "CheckpointError",
    "DatasetMissing",
    "InputShapeError",
    "ClaimFailed",
    "ProfileSet",
    "Config",
    "PROFILE_NAMES",
    "default_profile",
    "start",
    "pick_device",
    "seed_everything",
    "make_generator",
    "progress",
    "environment_report",
    "require_version",
    "set_retrain",
]
