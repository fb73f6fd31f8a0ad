"""``liclab-eval``: evaluate trained checkpoints on real bitstreams (``configs/eval.yaml``)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from liclab import LiclabError
from liclab.cli import config_dir


def find_checkpoints(spec, which: str = "best") -> list[Path]:
    """Checkpoint files named by ``spec``: files, or directories searched for run folders.

    A run folder is one with ``checkpoints/``; it contributes its ``best.ckpt`` (or
    ``last.ckpt`` when ``which=last`` or when it has no best). A run without a checkpoint,
    e.g. a failed λ of a sweep, is reported and skipped.
    """
    specs = list(spec) if OmegaConf.is_list(spec) or isinstance(spec, (list, tuple)) else [spec]
    found: list[Path] = []
    for item in map(Path, specs):
        if item.is_file():
            found.append(item)
            continue
        if not item.is_dir():
            raise LiclabError(f"{item}: no such checkpoint or run directory")
        runs = sorted({p.parent for p in item.rglob("config.yaml") if p.parent.name != ".hydra"})
        for run in runs:
            ckpts = run / "checkpoints"
            order = [f"{which}.ckpt", "last.ckpt"]
            pick = next((ckpts / n for n in order if (ckpts / n).is_file()), None)
            if pick is None:
                print(f"liclab: {run}: no checkpoint (failed run?), skipped", file=sys.stderr)
            else:
                found.append(pick)
    if not found:
        raise LiclabError(f"{', '.join(map(str, specs))}: no checkpoints found")
    return found


def curve_key(config: dict) -> str:
    """Runs differing only in λ form one curve: model / quantizer / loss class names."""
    parts = [config[g]["_target_"].rsplit(".", 1)[-1] for g in ("model", "quantizer", "loss")]
    return "-".join(parts)


def evaluate_checkpoints(
    ckpts, images, out: Path, name: str | None = None, exact_synthesis: bool = True
) -> list[dict]:
    """One curve per group of runs; writes ``<curve>.json`` and ``<curve>_images.json``."""
    from liclab.codecs.learned import LearnedCodec
    from liclab.evaluate import aggregate, combine, evaluate_codec

    groups: dict[str, list] = defaultdict(list)
    for ckpt in ckpts:
        try:
            codec = LearnedCodec.from_checkpoint(ckpt, exact_synthesis=exact_synthesis)
        except LiclabError as exc:
            print(f"liclab: {exc} (skipped)", file=sys.stderr)
            continue
        key = name or curve_key(codec.config)
        records = evaluate_codec(codec, images, workers=1, cache_dir=None)
        point = aggregate(records, key, str(ckpt), codec.setting, codec.version())
        groups[key].append((point, {"ckpt": str(ckpt), "images": records}))
    out.mkdir(parents=True, exist_ok=True)
    curves = []
    for key, items in groups.items():
        curve = combine([p for p, _ in items], name=key, description="liclab-eval")
        (out / f"{key}.json").write_text(json.dumps(curve, indent=2))
        (out / f"{key}_images.json").write_text(json.dumps([r for _, r in items], indent=2))
        curves.append(curve)
        r = curve["results"]
        for i, setting in enumerate(curve["settings"]):
            print(
                f"{key} {setting}: {r['bpp'][i]:.4f} bpp (estimate {r['est_bpp'][i]:.4f}), "
                f"{r['psnr-rgb'][i]:.2f} dB"
                + (f", MS-SSIM {r['ms-ssim-rgb'][i]:.4f}" if "ms-ssim-rgb" in r else "")
            )
    if not curves:
        raise LiclabError("no checkpoint could be evaluated")
    print(f"wrote {', '.join(str(out / (c['name'] + '.json')) for c in curves)}")
    return curves


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def _main(cfg: DictConfig) -> None:
    from liclab.datasets import resolve_images

    try:
        images = resolve_images(cfg.data)
        if cfg.limit:
            images = images[: cfg.limit]
        ckpts = find_checkpoints(cfg.ckpt, cfg.which)
        evaluate_checkpoints(ckpts, images, Path(cfg.out), cfg.name, cfg.exact_synthesis)
    except LiclabError as exc:
        print(f"liclab: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _main()
