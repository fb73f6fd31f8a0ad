"""Every option of every config group composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from liclab.cli import config_dir

from conftest import compose

ROOT = Path(config_dir())
# The groups train.yaml composes (codec/ belongs to liclab-anchors, tested with it).
TRAIN_GROUPS = [
    next(iter(d)) for d in OmegaConf.load(ROOT / "train.yaml").defaults if OmegaConf.is_dict(d)
]
GROUP_OPTIONS = [
    (group, f.stem)
    for group in TRAIN_GROUPS
    if group != "hydra"
    for f in sorted((ROOT / group).glob("*.yaml"))
]


def test_groups_are_discovered():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"model", "quantizer", "loss", "data", "trainer", "logger", "callbacks"} <= groups


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_composes(group, option, tmp_path):
    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path}"]
    if option == "folder":
        overrides.append(f"data.train={tmp_path}")
    cfg = compose(overrides)
    if group == "trainer" and cfg.trainer.accelerator not in ("cpu", "auto"):
        assert cfg.trainer._target_ == "lightning.Trainer"  # needs the hardware to build
    elif group in ("model", "quantizer", "loss", "data", "trainer"):
        assert cfg[group]["_target_"]
        instantiate(cfg[group], **({"N": 8, "M": 12} if group == "model" else {}))
    elif group in ("logger", "callbacks"):
        for sub in (cfg.get(group) or {}).values():
            instantiate(sub)
    else:  # experiment / debug: global packages, they must still yield a runnable config
        assert cfg.model._target_ and cfg.trainer._target_


def test_command_line_example_composes(tmp_path):
    cfg = compose(
        [
            "model=meanscale",
            "quantizer=mixed",
            "loss=mse",
            "loss.lmbda=0.0067",
            "trainer.max_steps=200",
            f"paths.output_dir={tmp_path}",
        ]
    )
    assert cfg.model._target_ == "liclab.models.hyperprior.MeanScaleHyperprior"
    assert cfg.quantizer._target_ == "liclab.quantizers.Mixed"
    assert cfg.loss.lmbda == 0.0067 and cfg.trainer.max_steps == 200
