"""Thin command-line entry points: parse the config, call the library, print."""

from __future__ import annotations

import functools
import sys

import liclab.configs  # noqa: F401  (registers the configs' resolvers)
from liclab import LiclabError


def user_errors(fn):
    """Run ``fn``; a :class:`LiclabError` becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LiclabError as exc:
            print(f"liclab: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def choice(group: str) -> str | None:
    """The option chosen for config group ``group`` in the running Hydra application."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group)
