"""Exceptions with messages written for the reader of a notebook.

Every error the library raises on bad input derives from :class:`TutorialError`,
so a notebook can show one clear sentence instead of a traceback from deep inside torch.
"""


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
