"""Thin command-line entry points: parse the config, call the library, print."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from liclab import LiclabError


def _dirsafe(text: str, limit: int = 120) -> str:
    """An override string usable as one directory name: no separators, bounded length."""
    text = str(text).replace(os.sep, "_")
    if len(text) <= limit:
        return text
    return text[: limit - 9] + "~" + hashlib.sha256(text.encode()).hexdigest()[:8]


# ${pid:} in run-directory names keeps parallel launches apart; ${dirsafe:...} keeps a sweep
# run's override string one directory deep.
for _name, _fn in (("pid", os.getpid), ("dirsafe", _dirsafe)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def config_dir() -> str:
    """The Hydra config directory: ``$LICLAB_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("LICLAB_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "configs"
    if not path.is_dir():
        sys.exit(f"liclab: {path}: config directory not found (set LICLAB_CONFIG_DIR)")
    return str(path)


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
