"""``liclab-compress``, ``liclab-decompress`` and ``liclab-verify``: real files from a model.

    liclab-compress kodim01.png -o kodim01.lic --ckpt run/checkpoints/best.ckpt
    liclab-decompress kodim01.lic -o kodim01.png --ckpt run/checkpoints/best.ckpt
    liclab-verify kodim01.png --ckpt run/checkpoints/best.ckpt

An overfitted codec (``eval/codec/coolchic_*.yaml``, ``c3.yaml``) encodes without a
checkpoint, and its files decode without one::

    liclab-compress kodim01.png -o kodim01.lic codec=coolchic_hop lmbda=1e-3
    liclab-decompress kodim01.lic -o kodim01.png
    liclab-verify kodim01.png codec=coolchic_lop lmbda=1e-3 iterations=100

Exit codes: 0 success, 2 bad input (one line on stderr naming the file), 3 verify mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from liclab import LiclabError
from liclab.cli import user_errors


def _codec(ckpt: str | None, overrides: Sequence[str] = ()):
    """The learned codec of a checkpoint, or a codec config with ``codec=<name>`` and
    ``key=value`` arguments (only codecs that write self-contained ``.lic`` files)."""
    if ckpt is not None:
        if overrides:
            raise LiclabError(f"--ckpt takes no codec arguments (got {' '.join(overrides)})")
        from liclab.codecs.learned import LearnedCodec

        return LearnedCodec.from_checkpoint(ckpt)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from liclab.configs import codec_config

    args = dict(o.split("=", 1) if "=" in o else (o, None) for o in overrides)
    name = args.pop("codec", None)
    if not name or None in args.values():
        raise LiclabError("give --ckpt <checkpoint> or codec=<name> [key=value ...]")
    cfg = codec_config(name)[0]
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in args.items()]))
    except Exception as exc:  # OmegaConf's parse errors
        raise LiclabError(f"codec={name}: bad argument ({exc})") from None
    try:
        codec = instantiate(cfg)
    except Exception as exc:  # Hydra wraps the constructor's TypeError / ValueError
        cause = exc.__cause__ or exc
        raise LiclabError(f"codec={name}: bad argument ({cause})") from None
    if not getattr(codec, "self_contained", False):
        raise LiclabError(f"codec={name} does not write .lic files (an anchor: use liclab-anchors)")
    return codec


def _decode(data: bytes, name: str, ckpt: str | None):
    """Decode ``data``: with the checkpoint's model, or, without one, the self-contained
    file of an overfitted codec."""
    if ckpt is not None:
        return _codec(ckpt).decode(data, name)
    from liclab.bitstream import unpack
    from liclab.overfit import coding

    model_id = unpack(data, name).model_id
    if model_id != coding.MODEL_ID:
        raise LiclabError(f"{name}: written by a {model_id} model; give its checkpoint (--ckpt)")
    return coding.decode(data, name)


def compress_file(
    image: str | Path, out: str | Path, ckpt: str | None, overrides: Sequence[str] = ()
) -> dict:
    """Encode ``image`` to ``out`` (.lic) with a checkpoint's model or a codec config;
    returns sizes and the rate."""
    from liclab.images import load_rgb
    from liclab.metrics import bpp

    codec = _codec(ckpt, overrides)
    arr, notes = load_rgb(image, min_size=1)
    data = codec.encode(arr)
    Path(out).write_bytes(data)
    h, w = arr.shape[:2]
    return {"file": str(out), "bytes": len(data), "bpp": bpp(len(data), h, w), "notes": notes}


def decompress_file(path: str | Path, out: str | Path, ckpt: str | None = None) -> dict:
    """Decode a .lic file to a PNG; a corrupt file or a wrong model raises LiclabError."""
    from liclab.images import save_rgb

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LiclabError(f"{path.name}: cannot read ({exc.strerror})") from None
    arr = _decode(data, path.name, ckpt)
    save_rgb(arr, out)
    return {"file": str(out), "height": arr.shape[0], "width": arr.shape[1]}


def compress_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liclab-compress", description="Encode an image to .lic")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--ckpt", help="a trained model's checkpoint")
    p.add_argument(
        "overrides",
        nargs="*",
        help="without --ckpt: codec=<name> (eval/codec/) and its arguments, e.g. "
        "codec=coolchic_hop lmbda=1e-3 iterations=500",
    )
    return p


def log_progress() -> None:
    """Show the fit's progress lines (logger ``liclab.overfit``) on stderr."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("liclab.overfit").setLevel(logging.INFO)


@user_errors
def compress_main(argv=None) -> None:
    args = compress_parser().parse_intermixed_args(argv)
    log_progress()
    print(f"liclab-compress: {args.image} -> {args.output}", file=sys.stderr)
    info = compress_file(args.image, args.output, args.ckpt, args.overrides)
    for note in info["notes"]:
        print(f"liclab: {Path(args.image).name}: {note}", file=sys.stderr)
    print(f"{info['file']}: {info['bytes']} bytes, {info['bpp']:.4f} bpp")


def decompress_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liclab-decompress", description="Decode a .lic file")
    p.add_argument("bitstream")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--ckpt", help="the model's checkpoint (none for an overfitted codec)")
    return p


@user_errors
def decompress_main(argv=None) -> None:
    args = decompress_parser().parse_args(argv)
    info = decompress_file(args.bitstream, args.output, args.ckpt)
    print(f"{info['file']}: {info['width']}x{info['height']}")


def _decode_digest(ckpt: str | None, lic: str, threads: int, device: str) -> str:
    """SHA-256 of the decoded image, in a fresh process with the given threads/device (an
    overfitted codec's file decodes on the CPU whatever ``device``)."""
    code = (
        "import hashlib, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from pathlib import Path\n"
        "from liclab.cli.codec import _decode\n"
        f"data = Path({lic!r}).read_bytes()\n"
    )
    if ckpt is None:
        code += "a = _decode(data, 'x.lic', None)\n"
    else:
        code += (
            "from liclab.codecs.learned import LearnedCodec\n"
            f"c = LearnedCodec.from_checkpoint({ckpt!r})\n"
            f"c.model.to({device!r})\n"
            "a = c.decode(data)\n"
        )
    code += "print(hashlib.sha256(a.tobytes()).hexdigest())\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise LiclabError(f"decoding in a subprocess failed: {out.stderr.strip()[-300:]}")
    return out.stdout.strip().splitlines()[-1]


def verify(
    image: str, ckpt: str | None, threads: tuple[int, ...] = (1, 3), overrides: Sequence[str] = ()
) -> dict:
    """Encode here, decode here and in fresh processes (other thread counts, CUDA if any)."""
    import torch

    from liclab.images import load_rgb

    codec = _codec(ckpt, overrides)
    arr, _ = load_rgb(image)
    t0 = time.perf_counter()
    data = codec.encode(arr)
    local = hashlib.sha256(codec.decode(data).tobytes()).hexdigest()
    report = {"image": str(image), "bytes": len(data), "decoders": {"this process": local}}
    with tempfile.TemporaryDirectory() as tmp:
        lic = str(Path(tmp) / "x.lic")
        Path(lic).write_bytes(data)
        for t in threads:
            report["decoders"][f"cpu, {t} thread(s)"] = _decode_digest(ckpt, lic, t, "cpu")
        if torch.cuda.is_available():
            report["decoders"]["cuda"] = _decode_digest(ckpt, lic, 1, "cuda")
    report["seconds"] = time.perf_counter() - t0
    report["identical"] = len(set(report["decoders"].values())) == 1
    return report


def verify_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="liclab-verify",
        description="Check that decoding is bit-identical across processes, thread counts "
        "and (when present) CUDA.",
    )
    p.add_argument("image")
    p.add_argument("--ckpt", help="a trained model's checkpoint")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 3])
    p.add_argument("overrides", nargs="*", help="without --ckpt: codec=<name> key=value ...")
    return p


@user_errors
def verify_main(argv=None) -> None:
    args = verify_parser().parse_intermixed_args(argv)
    log_progress()
    report = verify(args.image, args.ckpt, tuple(args.threads), args.overrides)
    print(json.dumps(report, indent=2))
    if not report["identical"]:
        print("liclab: decoders disagree", file=sys.stderr)
        sys.exit(3)
