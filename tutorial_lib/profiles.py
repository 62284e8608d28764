"""Profiles: ``smoke`` (proves a notebook runs), ``laptop`` (default: shows the effect on a
CPU in minutes) and ``gpu`` (the larger version on one GPU).

A notebook declares its settings once, for all three profiles, and resolves one of them::

    PROFILES = ProfileSet("01_parameter_space_directions",
        smoke=dict(gan_steps=40, batch=32),
        laptop=dict(gan_steps=1500, batch=64),
        gpu=dict(gan_steps=6000, batch=256),
    )
    cfg = PROFILES.resolve(PROFILE, gan_steps=200)   # overrides are checked
    cfg.gan_steps                                    # -> 200

Unknown profile names and unknown override keys fail with a message that lists the valid ones.

**A capped run.** ``TUTORIAL_MAX_STEPS=N`` in the environment caps every setting of a profile that
counts work: names ending in ``steps`` at ``N``, ``epochs`` at ``max(1, N // 10)``, sample counts
(``n_...``) at ``50 N`` and patches per photo (``..._per_photo``, ``per_image``) at ``N``, but
never below the ``smoke`` profile's own value (the smallest amount of work known to give every
later step something to work on: a GAN that draws digits at all, a classifier that labels them).
Settings that set the size of the data or of a batch (``image_scale``, ``photo_scale``,
``..._reps``, ``batch``/``..._batch``, the ``..._curve`` lists of values to sweep and the number of
points a training curve records, ``..._points``) take the
``smoke`` profile's value when it is smaller, and grid spacings (``..._step``) take it when it is
coarser. Every other setting (architectures, patch sizes, data
set, mixed precision) stays as the profile has it, so ``PROFILE=gpu`` with ``TUTORIAL_MAX_STEPS=5`` executes every code path of the
``gpu`` profile on a CPU in seconds to minutes. Claims are then reported, not enforced.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .errors import ProfileError

PROFILE_NAMES = ("smoke", "laptop", "gpu")
DEFAULT_PROFILE = "laptop"
ENV_VAR = "TUTORIAL_PROFILE"
MAX_STEPS_ENV_VAR = "TUTORIAL_MAX_STEPS"


def step_cap() -> int | None:
    """The cap set by ``TUTORIAL_MAX_STEPS`` (a positive integer), or ``None`` when it is not set."""
    value = os.environ.get(MAX_STEPS_ENV_VAR, "").strip()
    if not value:
        return None
    try:
        cap = int(value)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ProfileError(f"The environment variable {MAX_STEPS_ENV_VAR}={value!r} must be a positive "
                           f"integer (the most training steps any loop may run), or unset.")
    return cap


DATA_SIZE_SETTINGS = ("image_scale", "photo_scale")


def capped_value(name: str, value: Any, cap: int, floor: Any = None) -> Any:
    """``value`` of setting ``name`` under the step cap ``cap``, never below ``floor`` (the smoke
    profile's value) when that is an integer; data-size settings take ``floor`` (see the module
    docstring)."""
    if floor is not None and (name in DATA_SIZE_SETTINGS or name.endswith(("_reps", "_curve", "_points", "batch"))):
        return min(value, floor) if isinstance(value, (int, float)) and not isinstance(value, bool) else floor
    if floor is not None and name.endswith("_step") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(value, floor)
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if name.endswith("steps"):
        limit = cap
    elif name.endswith("epochs"):
        limit = max(1, cap // 10)
    elif name.startswith("n_"):
        limit = 50 * cap
    elif name.endswith(("_per_photo", "per_image")):
        limit = cap
    else:
        return value
    if isinstance(floor, int) and not isinstance(floor, bool):
        limit = max(limit, floor)
    return min(value, limit)

def check_profile_name(name: str) -> str:
    """Return ``name`` if it is a valid profile, else raise :class:`ProfileError` listing them."""
    if not isinstance(name, str) or name.strip().lower() not in PROFILE_NAMES:
        raise ProfileError(
            f"Unknown profile {name!r}. Valid profiles: {', '.join(PROFILE_NAMES)} "
            f"(smoke = seconds, proves it runs; laptop = default, shows the effect on a CPU; "
            f"gpu = the larger version on one GPU)."
        )
    return name.strip().lower()


def default_profile() -> str:
    """The profile named by the environment variable ``TUTORIAL_PROFILE``, else ``laptop``."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_PROFILE
    try:
        return check_profile_name(value)
    except ProfileError as err:
        raise ProfileError(f"The environment variable {ENV_VAR}={value!r} is invalid. {err}") from None


def _same_kind(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


class Config(Mapping):
    """A frozen, attribute-style view of one resolved profile.

    ``cfg.name`` is the profile's name; every setting is an attribute (``cfg.steps``) and a key
    (``cfg["steps"]``). ``cfg.to_dict()`` gives plain data (for checkpoints and results).
    """

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    @property
    def name(self) -> str:
        return self._name

    def __getattr__(self, key: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        raise AttributeError(
            f"Profile setting {key!r} does not exist. Settings: {', '.join(sorted(values))}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("A resolved profile is frozen; pass overrides to resolve() instead.")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self._name, **self._values}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some settings changed (same validation as overrides)."""
        _check_overrides(self._values, changes)
        return Config(self._name, {**self._values, **changes})

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Config({self._name}: {body})"


def _check_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ProfileError(
            f"Unknown setting(s) {', '.join(map(repr, unknown))}. "
            f"Valid settings: {', '.join(sorted(base))}."
        )
    for key, value in overrides.items():
        if not _same_kind(base[key], value):
            raise ProfileError(
                f"Setting {key!r} expects a value like {base[key]!r} "
                f"({type(base[key]).__name__}), got {value!r} ({type(value).__name__})."
            )


class ProfileSet:
    """The three profiles of one notebook; every profile must define the same settings."""

    def __init__(self, notebook: str, **profiles: Mapping[str, Any]):
        names = set(profiles)
        if names != set(PROFILE_NAMES):
            missing = sorted(set(PROFILE_NAMES) - names)
            extra = sorted(names - set(PROFILE_NAMES))
            raise ProfileError(
                f"A ProfileSet needs exactly the profiles {', '.join(PROFILE_NAMES)}; "
                f"missing: {missing or 'none'}, unexpected: {extra or 'none'}."
            )
        keys = {name: set(values) for name, values in profiles.items()}
        reference = keys["laptop"]
        for name, k in keys.items():
            if k != reference:
                raise ProfileError(
                    f"Profile {name!r} of {notebook!r} defines different settings than 'laptop': "
                    f"only in {name}: {sorted(k - reference)}, only in laptop: {sorted(reference - k)}."
                )
        self.notebook = notebook
        self._profiles = {name: dict(values) for name, values in profiles.items()}

    @property
    def names(self) -> tuple[str, ...]:
        return PROFILE_NAMES

    def settings(self) -> list[str]:
        return sorted(self._profiles["laptop"])

    def resolve(self, name: str | None = None, **overrides: Any) -> Config:
        """The validated :class:`Config` for ``name`` (default: :func:`default_profile`)."""
        name = check_profile_name(default_profile() if name is None else name)
        base = self._profiles[name]
        _check_overrides(base, overrides)
        values = {**base, **overrides}
        cap = step_cap()
        if cap is not None:
            smoke = self._profiles["smoke"]
            capped = {key: capped_value(key, value, cap, smoke.get(key)) for key, value in values.items()}
            changed = sorted(k for k in values if capped[k] != values[k])
            values = capped
            print(f"{MAX_STEPS_ENV_VAR}={cap}: a capped run of profile {name!r} (claims are reported, not "
                  f"enforced); capped: {', '.join(changed) or 'nothing'}")
        return Config(name, values)

    def table(self):
        """The three profiles side by side, as a pandas DataFrame (for display)."""
        import pandas as pd

        return pd.DataFrame(self._profiles).loc[self.settings(), list(PROFILE_NAMES)]
