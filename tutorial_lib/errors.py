"""Exceptions with messages written for the reader of a notebook.

Every error the library raises on bad input derives from :class:`TutorialError`,
so a notebook can show one clear sentence instead of a traceback from deep inside torch.
:func:`exit_status` does the same for the command-line tools.
"""

import sys
from typing import Callable


class TutorialError(Exception):
    """Base class of the library's errors."""


class ProfileError(TutorialError, ValueError):
    """Unknown profile name, unknown override key, or an override of the wrong type."""


class CheckpointError(TutorialError):
    """A checkpoint is corrupt, was made by another configuration, or does not fit the model."""


class DatasetMissing(TutorialError, FileNotFoundError):
    """A public data set (or weight file) is not on disk; the message says how to get it."""


class InputShapeError(TutorialError, ValueError):
    """A tensor passed to a library function has the wrong shape, dtype or range."""


class ClaimFailed(TutorialError, AssertionError):
    """A notebook's claim does not hold at a profile where it must."""


def exit_status(work: Callable[[], object]) -> int:
    """Run a command-line tool's ``work()``: exit status 0 when it succeeds; bad input (a
    :class:`TutorialError`) becomes one line ``error: ...`` on stderr and status 2, not a traceback."""
    try:
        work()
    except TutorialError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
