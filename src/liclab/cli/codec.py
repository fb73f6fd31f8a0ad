"""``liclab-compress``, ``liclab-decompress`` and ``liclab-verify``: real files from a model.

    liclab-compress kodim01.png -o kodim01.lic --ckpt run/checkpoints/best.ckpt
    liclab-decompress kodim01.lic -o kodim01.png --ckpt run/checkpoints/best.ckpt
    liclab-verify kodim01.png --ckpt run/checkpoints/best.ckpt

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
from pathlib import Path

from liclab import LiclabError
from liclab.cli import user_errors


def _codec(ckpt: str):
    from liclab.codecs.learned import LearnedCodec

    return LearnedCodec.from_checkpoint(ckpt)


def compress_file(image: str | Path, out: str | Path, ckpt: str) -> dict:
    """Encode ``image`` to ``out`` (.lic); returns sizes and the rate."""
    from liclab.images import load_rgb
    from liclab.metrics import bpp

    arr, notes = load_rgb(image, min_size=1)
    data = _codec(ckpt).encode(arr)
    Path(out).write_bytes(data)
    h, w = arr.shape[:2]
    return {"file": str(out), "bytes": len(data), "bpp": bpp(len(data), h, w), "notes": notes}


def decompress_file(path: str | Path, out: str | Path, ckpt: str) -> dict:
    """Decode a .lic file to a PNG; a corrupt file or a wrong model raises LiclabError."""
    from liclab.images import save_rgb

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LiclabError(f"{path.name}: cannot read ({exc.strerror})") from None
    arr = _codec(ckpt).decode(data, path.name)
    save_rgb(arr, out)
    return {"file": str(out), "height": arr.shape[0], "width": arr.shape[1]}


def compress_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liclab-compress", description="Encode an image to .lic")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--ckpt", required=True)
    return p


@user_errors
def compress_main(argv=None) -> None:
    args = compress_parser().parse_args(argv)
    info = compress_file(args.image, args.output, args.ckpt)
    for note in info["notes"]:
        print(f"liclab: {Path(args.image).name}: {note}", file=sys.stderr)
    print(f"{info['file']}: {info['bytes']} bytes, {info['bpp']:.4f} bpp")


def decompress_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liclab-decompress", description="Decode a .lic file")
    p.add_argument("bitstream")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--ckpt", required=True)
    return p


@user_errors
def decompress_main(argv=None) -> None:
    args = decompress_parser().parse_args(argv)
    info = decompress_file(args.bitstream, args.output, args.ckpt)
    print(f"{info['file']}: {info['width']}x{info['height']}")


def _decode_digest(ckpt: str, lic: str, threads: int, device: str) -> str:
    """SHA-256 of the decoded image, in a fresh process with the given threads/device."""
    code = (
        "import sys, json, hashlib, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from liclab.codecs.learned import LearnedCodec\n"
        "from pathlib import Path\n"
        f"c = LearnedCodec.from_checkpoint({ckpt!r})\n"
        f"c.model.to({device!r})\n"
        f"a = c.decode(Path({lic!r}).read_bytes())\n"
        "print(hashlib.sha256(a.tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise LiclabError(f"decoding in a subprocess failed: {out.stderr.strip()[-300:]}")
    return out.stdout.strip().splitlines()[-1]


def verify(image: str, ckpt: str, threads: tuple[int, ...] = (1, 3)) -> dict:
    """Encode here, decode here and in fresh processes (other thread counts, CUDA if any)."""
    import torch

    from liclab.images import load_rgb

    arr, _ = load_rgb(image)
    codec = _codec(ckpt)
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
    p.add_argument("--ckpt", required=True)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 3])
    return p


@user_errors
def verify_main(argv=None) -> None:
    args = verify_parser().parse_args(argv)
    report = verify(args.image, args.ckpt, tuple(args.threads))
    print(json.dumps(report, indent=2))
    if not report["identical"]:
        print("liclab: decoders disagree", file=sys.stderr)
        sys.exit(3)
