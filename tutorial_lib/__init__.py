"""tutorial_lib: the tested helper library behind the notebook course.

What the notebooks use:

* :mod:`tutorial_lib.runtime`       ``start()`` (the setup call of every notebook), ``in_parallel()``, device choice,
  seeds, progress bars, environment report
* :mod:`tutorial_lib.profiles`      validated ``smoke`` / ``laptop`` / ``gpu`` configurations
* :mod:`tutorial_lib.checkpoints`   atomic, config- and code-checked checkpoint cache
* :mod:`tutorial_lib.classcache`    pack / unpack a class cache of trained models with SHA-256 checksums
* :mod:`tutorial_lib.fingerprint`   the cache key's view of code: syntax trees, the same on every Python version
* :mod:`tutorial_lib.results`       claim cells: record, check and display a notebook's claims
* :mod:`tutorial_lib.data`          offline data that ships inside installed packages, crops, splits
* :mod:`tutorial_lib.public_data`   checksum-verified downloads of public data sets and weights
* :mod:`tutorial_lib.models`        the digit classifier; ``evaluating``, ``batched_apply``, ``ema_model``
* :mod:`tutorial_lib.metrics`       PSNR, SSIM, classifier-feature Frechet distance, Delta E 2000
* :mod:`tutorial_lib.plots`         one plotting style, image grids, panels, the widget pattern
* :mod:`tutorial_lib.checks`        comparing the reader's function with the library's (outputs, gradients)
* :mod:`tutorial_lib.exercises`     the graded exercises: points, hints, known mistakes, locked checks, records
* :mod:`tutorial_lib.gan`           small GANs, their training loop, parameter-space arithmetic (01, 02)
* :mod:`tutorial_lib.unlearning`    adapt-then-unlearn: repulsion losses, PUL, stages 1 and 2 (02)
* :mod:`tutorial_lib.degradations`  synthetic noise, rain and haze (03)
* :mod:`tutorial_lib.restoration`   the all-in-one restorer and forgetting one of its tasks (03)
* :mod:`tutorial_lib.camera`        unprocessing sRGB to RAW, sensor noise, a classic ISP (04, 05)
* :mod:`tutorial_lib.mid`           mask, inpaint and denoise with a refined noise sampler (04)
* :mod:`tutorial_lib.isp`           a learned ISP trained without aligned pairs (05)
* :mod:`tutorial_lib.isp_study`     notebook 05's ablation and step-budget study on validation photos (05)

The course tools (command line and tests):

* :mod:`tutorial_lib.runner`        execute notebooks with papermill, print the claims table
* :mod:`tutorial_lib.robust`        run a notebook over its ``ROBUST_GRID`` and count where claims hold
* :mod:`tutorial_lib.report`        a static HTML site of the executed notebooks
* :mod:`tutorial_lib.student`       the student edition (solutions removed) and the nbgrader edition
* :mod:`tutorial_lib.grade`         grade a class's submissions from the checks' records (local or Dask)
* :mod:`tutorial_lib.nbtools`       notebook hygiene (output stripping, structure checks)
* :mod:`tutorial_lib.errors`        the reader-facing exceptions
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
    in_parallel,
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
    "in_parallel",
    "pick_device",
    "seed_everything",
    "make_generator",
    "progress",
    "environment_report",
    "require_version",
    "set_retrain",
]
