"""Config composition: every option instantiates, λ and sizes come from the paper zoo by
class, the eval tools take values where training has groups, the configs ship in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from liclab import LiclabError, configs
from liclab.checkpoint import build_model

from conftest import compose

ROOT = configs.config_dir("train")
# The groups train.yaml composes (hydra/ is Hydra's own; its options are tested with sweeps).
TRAIN_GROUPS = [
    next(iter(d)) for d in OmegaConf.load(ROOT / "train.yaml").defaults if OmegaConf.is_dict(d)
]
GROUP_OPTIONS = [
    (group, f.stem)
    for group in TRAIN_GROUPS
    if group != "hydra"
    for f in sorted((ROOT / group).glob("*.yaml"))
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_resolves_and_instantiates(
    group, option, tmp_path, random_weights, monkeypatch
):
    monkeypatch.setenv("LICLAB_WEIGHTS", str(random_weights))  # LPIPS, VGG: random weights
    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path}"]
    if option == "folder":
        overrides.append(f"data.train={tmp_path}")
    cfg = compose(overrides)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group == "trainer" and cfg.trainer.accelerator not in ("cpu", "auto"):
        assert cfg.trainer._target_ == "lightning.Trainer"  # needs the hardware to build
    elif group == "model":
        build_model({**cfg.model, "N": 8, "M": 12})
    elif group in ("quantizer", "loss", "data", "trainer"):
        instantiate(cfg[group], **({"logger": False} if group == "trainer" else {}))
    elif group in ("logger", "callbacks"):
        for sub in (cfg.get(group) or {}).values():
            instantiate(sub)
    elif group == "discriminator":
        instantiate(cfg.discriminator, latent_channels=12)  # liclab-train passes the model's M
    else:  # experiment / debug / sweep: the whole config must still build a model and a loss
        build_model({**cfg.model, "N": 8, "M": 12})
        assert instantiate(cfg.loss).lmbda == cfg.lmbda
        if cfg.get("discriminator"):
            instantiate(cfg.discriminator, latent_channels=12)


def test_lambda_comes_from_the_zoo_by_loss_class_not_file_name(tmp_path):
    out = f"paths.output_dir={tmp_path}"
    assert compose([out]).loss.lmbda == 0.0130  # quality 4 of the MSE ladder
    assert compose([out, "quality=2"]).loss.lmbda == 0.0035
    assert compose([out, "loss=ms_ssim", "quality=3"]).loss.lmbda == 8.73
    # a user's own loss file, named anything, with the MS-SSIM class: the MS-SSIM ladder
    assert compose([out, "loss._target_=liclab.losses.MSSSIM"]).loss.lmbda == 16.64
    assert compose([out, "lmbda=0.02", "quality=8"]).loss.lmbda == 0.02  # a number wins
    # a subclass of a loss in the zoo (here one a test defines) takes its parent's ladder
    assert compose([out, "loss._target_=test_lit.NaNAfter"]).loss.lmbda == 0.0130
    with pytest.raises(Exception, match="quality=9: MSE has qualities 1 to 8"):
        OmegaConf.to_container(compose([out, "quality=9"]), resolve=True)


@pytest.mark.parametrize(
    ("model", "zoo_name"),
    [
        ("factorized", "bmshj2018-factorized"),
        ("hyperprior", "bmshj2018-hyperprior"),
        ("meanscale", "mbt2018-mean"),
        ("gmm", "cheng2020-attn"),
    ],
)
def test_paper_sizes_are_compressai_zoo_sizes(model, zoo_name, tmp_path):
    from compressai.zoo.image import cfgs

    for quality, sizes in cfgs[zoo_name].items():
        cfg = compose(
            [
                "experiment=paper",
                f"model={model}",
                f"quality={quality}",
                f"paths.output_dir={tmp_path}",
            ]
        )
        assert (cfg.model.N, cfg.model.M)[: len(sizes)] == sizes, (model, quality)


def test_paper_zoo_refuses_a_model_it_does_not_know(tmp_path):
    cfg = compose(
        [
            "experiment=paper",
            "model._target_=liclab.models.x.Unknown",
            f"paths.output_dir={tmp_path}",
        ]
    )
    with pytest.raises(Exception, match="no entry for Unknown"):
        OmegaConf.to_container(cfg, resolve=True)


def test_eval_takes_data_as_a_value_where_training_has_a_group(tmp_path):
    cfg = configs.compose("eval", "eval", [f"data={tmp_path}", "ckpt=x.ckpt"])
    assert cfg.data == str(tmp_path) and cfg.get("codec") is None
    cfg = configs.compose("eval", "anchors", ["codec=hevc", "points.qp=[20,30]", "data=kodak"])
    assert cfg.codec._target_.endswith("HEVC") and list(cfg.points.qp) == [20, 30]
    with pytest.raises(LiclabError, match="nothing.yaml: no such codec config"):
        configs.codec_config("nothing")


@pytest.mark.slow
def test_a_built_wheel_carries_every_config(tmp_path):
    root = ROOT.parents[3]
    source = tmp_path / "source"  # a copy: setuptools writes build/ into the tree it builds
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*pip, "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("liclab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(root / "src").as_posix() for p in ROOT.parent.rglob("*.yaml")}
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
