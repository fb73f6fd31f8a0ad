"""scripts/anchor_gap.py: a codec's PSNR minus an anchor's at the same rate, per image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script


def _script():
    return load_script("anchor_gap")


def _write(path: Path, settings: dict[str, list[tuple[str, float, float]]]) -> Path:
    data = [
        {"setting": s, "images": [{"file": f, "bpp": b, "psnr": p} for f, b, p in rows]}
        for s, rows in settings.items()
    ]
    path.write_text(json.dumps(data))
    return path


def test_gap_interpolates_the_anchor_in_log_bpp_per_image(tmp_path, capsys):
    gap = _script()
    points = {
        "q=1": [("x.png", 0.25, 30.0), ("y.png", 0.5, 20.0)],
        "q=2": [("x.png", 1.0, 34.0), ("y.png", 2.0, 24.0)],
    }
    anchor = _write(tmp_path / "a.json", points)
    codec = _write(tmp_path / "c.json", {"l=1": [("x.png", 0.5, 33.0), ("y.png", 4.0, 25.0)]})
    rows = gap.gaps(gap.records(codec), gap.records(anchor))
    # x: 0.5 is halfway between 0.25 and 1.0 in log-bpp -> 32 dB; y: beyond 2.0 -> 24 dB, marked
    assert [(r["file"], r["anchor"], r["outside"]) for r in rows] == [
        ("x.png", pytest.approx(32.0), False),
        ("y.png", pytest.approx(24.0), True),
    ]
    gap.main([str(codec), str(anchor)])
    out = capsys.readouterr().out.splitlines()
    assert "gap +1.00 dB" in out[0] and out[1].endswith("gap +1.00 dB *")


def test_gap_names_the_bad_file_in_one_line(tmp_path):
    gap = _script()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json: not an evaluator's per-image file"):
        gap.records(bad)
    anchor = _write(tmp_path / "a.json", {"q=1": [("x.png", 0.25, 30.0)]})
    codec = _write(tmp_path / "c.json", {"l=1": [("z.png", 0.5, 33.0)]})
    with pytest.raises(SystemExit, match="no record of z.png"):
        gap.gaps(gap.records(codec), gap.records(anchor))
