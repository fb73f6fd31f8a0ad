"""liclab's Hydra configs, shipped inside the package (``pkg://liclab.configs.<root>``).

Two config roots:

* ``train/`` — ``liclab-train``: the ``model``, ``quantizer``, ``loss``, ``data``, ``trainer``,
  ``logger``, ``callbacks``, ``sweep``, ``experiment``, ``debug`` groups and the paper zoo;
* ``eval/`` — ``liclab-eval``, ``liclab-anchors``, ``liclab-rd``, ``liclab-compress``: the
  ``codec`` group, each codec's operating points in ``codec/points/<name>.yaml``.

They are kept apart because ``liclab-eval data=/my/images`` gives ``data`` a value where
``liclab-train`` has a ``data`` config group: in one search path Hydra takes the key for the
group and refuses the override. ``$LICLAB_CONFIG_DIR``, a folder laid out like this one
(``train/`` and ``eval/``), replaces the shipped configs.

Importing this module registers the resolvers the configs use (``${pid:}``,
``${dirsafe:…}``, ``${zoo:…}``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from liclab import LiclabError

ROOTS = ("train", "eval")


def config_dir(root: str) -> Path:
    """The folder of config root ``root`` (``train`` or ``eval``)."""
    if root not in ROOTS:
        raise ValueError(f"config root must be one of {ROOTS}, not {root!r}")
    env = os.environ.get("LICLAB_CONFIG_DIR")
    path = (Path(env) if env else Path(__file__).parent) / root
    if not path.is_dir():
        raise LiclabError(f"{path}: config folder not found (check LICLAB_CONFIG_DIR)")
    return path


def search_path(root: str) -> str:
    """``config_path`` for ``hydra.main``: the package's configs, or ``$LICLAB_CONFIG_DIR``."""
    if os.environ.get("LICLAB_CONFIG_DIR"):
        return str(config_dir(root))
    return f"pkg://liclab.configs.{root}"


def compose(root: str, name: str, overrides=()) -> DictConfig:
    """Compose config ``name`` of ``root`` in-process (Hydra's compose API), as a command
    line with ``overrides`` would, without running the application."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir(root)), version_base="1.3"):
        return _compose(name, overrides=list(overrides))


def codec_config(name: str) -> tuple[DictConfig, DictConfig]:
    """``(codec, points)``: ``eval/codec/<name>.yaml`` and its operating points
    ``eval/codec/points/<name>.yaml`` (``{constructor argument: [values]}``)."""
    folder = config_dir("eval") / "codec"
    files = (folder / f"{name}.yaml", folder / "points" / f"{name}.yaml")
    for f in files:
        if not f.is_file():
            known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            raise LiclabError(f"{f.name}: no such codec config (known: {known})")
    return OmegaConf.load(files[0]), OmegaConf.load(files[1])


def _dirsafe(text: str, limit: int = 120) -> str:
    """An override string usable as one directory name: no separators, bounded length."""
    text = str(text).replace(os.sep, "_")
    if len(text) <= limit:
        return text
    return text[: limit - 9] + "~" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _zoo(table, target: str, quality, index=None):
    """``${zoo:<table>,<_target_>,<quality>[,<index>]}``: the entry of quality ``quality``
    (1-based) for the class that ``_target_`` names, in a table of ``experiment/paper.yaml``.

    Keyed by class, not by config file name, so a user's own ``loss/my_mse.yaml`` with
    ``_target_: liclab.losses.MSE`` gets the MSE ladder, and so does a subclass of MSE."""
    cls = str(target).rsplit(".", 1)[-1]
    if cls not in table:
        from hydra.utils import get_class

        try:
            names = [c.__name__ for c in get_class(str(target)).__mro__]
        except Exception:  # an unimportable _target_: instantiation will say so
            names = []
        cls = next((n for n in names if n in table), cls)
    if cls not in table:
        raise LiclabError(f"the paper zoo has no entry for {cls} (it has {', '.join(table)})")
    column = table[cls]
    if not isinstance(quality, int) or not 1 <= quality <= len(column):
        raise LiclabError(f"quality={quality}: {cls} has qualities 1 to {len(column)}")
    value = column[quality - 1]
    return value if index is None else value[int(index)]


for _name, _fn in (("pid", os.getpid), ("dirsafe", _dirsafe), ("zoo", _zoo)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
