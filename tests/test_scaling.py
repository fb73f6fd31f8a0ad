"""DDP, parallel sweeps, bf16, the SLURM launcher."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from liclab.checkpoint import build_model
from liclab.configs import config_dir
from liclab.train import train

from conftest import compose, tiny_train_overrides


def compose_with_hydra(overrides):
    """Compose as a run would, with the ``hydra:`` resolver available."""
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_slurm_launcher_composes():
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"])
    assert "submitit" in cfg.hydra.launcher._target_
    assert cfg.hydra.launcher.tasks_per_node == 4


def test_bf16_training_keeps_likelihoods_in_float32(image_folder, tmp_path):
    overrides = tiny_train_overrides(image_folder, tmp_path / "run", "meanscale")
    result = train(compose(overrides + ["trainer.precision=bf16-mixed"]))
    assert result["global_step"] == 2

    from liclab.quantizers import Noise

    model = build_model(compose(overrides).model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 64, 64), Noise().train())
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())


def _train_cmd(args):
    return [sys.executable, "-m", "liclab.cli.train", *args]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(image_folder, tmp_path):
    out = tmp_path / "ddp"
    args = tiny_train_overrides(image_folder, out, steps=3)
    args = [a for a in args if not a.startswith(("trainer=", "paths.output_dir"))]
    args += ["trainer=ddp_cpu", f"hydra.run.dir={out}"]
    done = subprocess.run(_train_cmd(args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stderr + done.stdout
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3


@pytest.mark.slow
def test_parallel_sweeps_write_disjoint_directories(image_folder, tmp_path):
    args = tiny_train_overrides(image_folder, tmp_path, steps=1)
    args = [a for a in args if not a.startswith("paths.output_dir")]
    args = ["-m", "lmbda=0.01,0.02", "logger=none", *args]
    # Two processes on a 2-core machine: one thread each, or OpenMP's spinning threads of the
    # two starve each other (a single step was measured taking minutes).
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(_train_cmd(args), cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    sweeps = sorted((tmp_path / "multirun" / "train").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        runs = sorted(d.name for d in sweep.iterdir() if d.is_dir())
        assert [r.split("_")[0] for r in runs] == ["0", "1"]
        assert all((sweep / r / "checkpoints" / "last.ckpt").exists() for r in runs)
