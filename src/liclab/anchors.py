"""Traditional-codec anchor curves, built from ``configs/anchors.yaml`` (codec + sweep).

The one place that turns an anchor name (``jpeg``, ``hevc``, …) into its operating points and
evaluates them; ``liclab-anchors``, the quickstart and sweep reports all call it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from liclab import LiclabError


def anchor_codecs(name: str, overrides: Sequence[str] = ()) -> list:
    """One codec object per operating point of anchor ``name`` (from ``anchors.yaml``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from liclab.cli import config_dir

    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app
        cfg = compose("anchors", overrides=[f"codec={name}", *overrides])
    else:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("anchors", overrides=[f"codec={name}", *overrides])
    return codecs_from_config(cfg)


def codecs_from_config(cfg) -> list:
    """The codec objects of ``cfg.codec`` at each point of ``cfg.sweep.<name>``."""
    from hydra.utils import get_class, instantiate

    name = get_class(cfg.codec._target_).name
    if name not in cfg.sweep:
        raise LiclabError(f"anchors.yaml: no sweep.{name} (the {name} operating points)")
    ((arg, values),) = cfg.sweep[name].items()
    return [instantiate(cfg.codec, **{arg: v}) for v in values]


def evaluate_anchor(
    codecs: list, images, data_name: str, workers=None, cache_dir=None, progress: bool = True
) -> tuple[dict, list[list[dict]], float]:
    """Evaluate the operating points; returns (curve, per-point records, seconds)."""
    from liclab.evaluate import aggregate, combine, evaluate_codecs

    start = time.perf_counter()
    per_codec = evaluate_codecs(codecs, images, workers, cache_dir, progress)
    seconds = time.perf_counter() - start
    points = [
        aggregate(
            records, codec.name, f"{codec.version()} on {data_name}", codec.setting, codec.version()
        )
        for codec, records in zip(codecs, per_codec, strict=True)
    ]
    return combine(points), per_codec, seconds
