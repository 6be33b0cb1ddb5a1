"""Parameter profiles (``smoke``, ``workshop``, ``paper``: YAML files of config field values beside this
module) and the one resolver of a run's config from a profile, named values and overrides."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeVar

import yaml

__all__ = ["PROFILE_NAMES", "load_profile", "resolve_config", "config_from_profile"]

PROFILE_NAMES = ("smoke", "workshop", "paper")

C = TypeVar("C")


def load_profile(name: str) -> dict[str, Any]:
    """Field values of a profile (``smoke``, ``workshop``, ``paper``) from ``shapnas/profiles``.

    Raises:
        ValueError: for an unknown profile name.
    """
    if name not in PROFILE_NAMES:
        raise ValueError(f"profile={name!r}; expected one of {', '.join(PROFILE_NAMES)}")
    text = resources.files("shapnas.profiles").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def resolve_config(cls: type[C], profile: str, overrides: Mapping[str, Any] | None = None, **named: Any) -> C:
    """The one way to a run's config: a profile's values, then named values, then overrides.

    Used alike by the command line (``--set`` parsed by :func:`shapnas.config.overrides.parse_overrides`), the
    notebook runner and the run matrix, so that a job's config equals the one its command would build.

    Args:
        cls: the config class (e.g. ``RetrainConfig``); profile keys that are not its fields are ignored.
        profile: ``smoke``, ``workshop`` or ``paper`` (recorded in the config's ``profile`` field).
        overrides: field -> value (text or typed), applied last; unknown names raise.
        **named: field values of named options (e.g. ``dataset``, ``seed``); ``None`` means "not given".

    Returns:
        The validated config.

    Raises:
        ValueError: unknown profile or field (valid names listed), a value of the wrong type, an invalid config.
    """
    values = {k: v for k, v in load_profile(profile).items() if k in set(cls.field_names())}
    values["profile"] = profile
    values.update({k: v for k, v in named.items() if v is not None})
    values.update(overrides or {})
    return cls.from_dict(values)


def config_from_profile(cls: type[C], profile: str, **overrides: Any) -> C:
    """A config of type ``cls`` from a profile's values plus named values (``None`` ignored); see
    :func:`resolve_config`."""
    return resolve_config(cls, profile, **overrides)
