"""Checkpoints written whole, read back with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from liclab.checkpoint import AtomicCheckpointIO


def test_checkpoint_save_removes_partial_files_of_dead_writers(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".best.ckpt.{dead.pid}.tmp"
    live = tmp_path / f".last.ckpt.{os.getppid()}.tmp"  # a running process: may be mid-write
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    AtomicCheckpointIO().save_checkpoint({"global_step": 7}, tmp_path / "last.ckpt")
    assert not stale.exists()
    assert live.exists()
    assert torch.load(tmp_path / "last.ckpt")["global_step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.ckpt"]
