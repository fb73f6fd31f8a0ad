"""Named data sets and data specs: lists fall back in order and say so; Kodak is found locally
or downloaded and checked."""

from __future__ import annotations

import hashlib
import logging

import pytest
from PIL import Image

from liclab import LiclabError, datasets

from conftest import smooth_image


def test_a_list_takes_the_first_source_that_exists_and_says_it_fell_back(tmp_path, caplog):
    folder = tmp_path / "there"
    folder.mkdir()
    Image.fromarray(smooth_image(32, 32)).save(folder / "a.png")
    with caplog.at_level(logging.INFO, logger="liclab"):
        found = datasets.resolve_images([str(tmp_path / "missing"), str(folder)])
    assert found == [folder / "a.png"]
    assert "missing: no such folder" in caplog.text and f"using {folder}" in caplog.text
    with pytest.raises(LiclabError, match="none of the data sources exist: .*nowhere"):
        datasets.resolve_images([str(tmp_path / "nowhere")])


def test_skimage_photographs_ship_with_the_package():
    photos = datasets.resolve_images("skimage")
    assert len(photos) >= 5 and all(p.exists() for p in photos)


def test_kodak_download_is_checked_against_its_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("LIC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LIC_CACHE", str(tmp_path / "cache"))
    served = {name: f"image {name}".encode() for name in datasets.KODAK_SHA256}
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in served.items()}
    monkeypatch.setattr(datasets, "KODAK_SHA256", digests)

    class Response:
        def __init__(self, body):
            self.body = body

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.body

    def urlopen(url, timeout):
        return Response(served[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    files = datasets.resolve_images("kodak")
    assert [f.name for f in files] == list(digests) and files[
        0
    ].read_bytes() == b"image kodim01.png"
    served["kodim05.png"] = b"tampered"
    for f in files:
        f.unlink()
    with pytest.raises(LiclabError, match="kodim05.png: downloaded file fails its SHA-256 check"):
        datasets.resolve_images("kodak")

    def offline(url, timeout):
        raise OSError("no network")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(LiclabError, match=r"Kodak not found locally and the download failed"):
        datasets.resolve_images("kodak")
