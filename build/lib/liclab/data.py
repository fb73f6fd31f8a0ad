"""The one DataModule: random crops from a folder of images, a few held-out for validation."""

from __future__ import annotations

import logging

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from liclab import LiclabError
from liclab.datasets import resolve_images
from liclab.images import load_rgb, to_chw

log = logging.getLogger(__name__)


def _load_all(paths, what: str) -> list[torch.Tensor]:
    """Decode every image once (uint8 CHW); unreadable files are skipped with a warning."""
    images, skipped = [], []
    for p in paths:
        try:
            arr, _ = load_rgb(p)
        except LiclabError as exc:
            log.warning("liclab: skipping %s", exc)
            skipped.append(p)
            continue
        images.append(to_chw(arr))
    if skipped:
        log.warning("liclab: skipped %d unreadable %s image(s)", len(skipped), what)
    if not images:
        raise LiclabError(f"{paths[0].parent}: no readable {what} images")
    return images


class RandomCrops(Dataset):
    """``length`` random ``crop_size`` crops from in-memory images, as float [0, 1] tensors.

    An image smaller than the crop is upscaled (bicubic) until it covers the crop, so every
    sample is real image content rather than padding.

    Crops come from the dataset's own generator (seeded by ``seed`` and the DataLoader worker
    id), not the global RNG that noise-based quantizers also draw from: runs that differ only
    in the quantization proxy see exactly the same crops in the same order.
    """

    def __init__(self, images: list[torch.Tensor], crop_size: int, length: int, seed: int = 0):
        self.images, self.crop_size, self.length, self.seed = images, crop_size, length, seed
        self._rng: torch.Generator | None = None
        self._worker: int | None = None

    def _generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        if self._rng is None or self._worker != worker:
            self._rng = torch.Generator().manual_seed(self.seed * 1009 + worker + 1)
            self._worker = worker
        return self._rng

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        g = self._generator()
        img = self.images[int(torch.randint(len(self.images), (), generator=g))]
        img = img.float().div_(255.0)
        c = self.crop_size
        h, w = img.shape[-2:]
        if min(h, w) < c:
            scale = c / min(h, w)
            size = (max(c, round(h * scale)), max(c, round(w * scale)))
            img = F.interpolate(img[None], size=size, mode="bicubic", align_corners=False)[0]
            img = img.clamp_(0, 1)
            h, w = size
        top = int(torch.randint(h - c + 1, (), generator=g))
        left = int(torch.randint(w - c + 1, (), generator=g))
        return img[:, top : top + c, left : left + c]


class CenterCrops(Dataset):
    """Held-out images, centre-cropped to ``crop_size`` (None: whole images, batch 1)."""

    def __init__(self, images: list[torch.Tensor], crop_size: int | None):
        self.images, self.crop_size = images, crop_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = self.images[index].float().div_(255.0)
        if self.crop_size is None:
            return img
        c = self.crop_size
        h, w = img.shape[-2:]
        if min(h, w) < c:
            raise LiclabError(f"validation image {index} is {w}x{h}, smaller than {c} px")
        top, left = (h - c) // 2, (w - c) // 2
        return img[:, top : top + c, left : left + c]


class ImageDataModule(L.LightningDataModule):
    """Random-crop training and centre-crop validation on folders of images.

    Args:
        train: a data spec for :func:`liclab.datasets.resolve_images` (folder, ``skimage``, …).
        val: a spec for validation images, or None to hold out the last ``val_count``
            training images (sorted by name).
        crop_size: training crop side in pixels.
        batch_size: training batch size.
        samples_per_epoch: crops per epoch (default: one per training image); epochs only
            pace validation and checkpoints, training length is ``trainer.max_steps``.
        val_count: images held out when ``val`` is None.
        val_crop_size: validation centre-crop side (None: whole images).
        num_workers: DataLoader workers.
        seed: seed of the crop sequence (the run's ``seed`` by default in the configs).
    """

    def __init__(
        self,
        train,
        val=None,
        crop_size: int = 256,
        batch_size: int = 8,
        samples_per_epoch: int | None = None,
        val_count: int = 2,
        val_crop_size: int | None = 256,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.train_spec, self.val_spec = train, val
        self.crop_size, self.batch_size = crop_size, batch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_count, self.val_crop_size = val_count, val_crop_size
        self.num_workers, self.seed = num_workers, seed
        self.train_set = self.val_set = None
        self.train_paths: list = []
        self.val_paths: list = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_paths = resolve_images(self.train_spec)
        if self.val_spec is None:
            if len(train_paths) <= self.val_count:
                raise LiclabError(
                    f"{train_paths[0].parent}: {len(train_paths)} images, too few to hold out "
                    f"{self.val_count} for validation"
                )
            train_paths, val_paths = train_paths[: -self.val_count], train_paths[-self.val_count :]
        else:
            val_paths = resolve_images(self.val_spec)
        self.train_paths, self.val_paths = train_paths, val_paths
        train_images = _load_all(train_paths, "training")
        length = self.samples_per_epoch or max(len(train_images), self.batch_size)
        self.train_set = RandomCrops(train_images, self.crop_size, length, self.seed)
        self.val_set = CenterCrops(_load_all(val_paths, "validation"), self.val_crop_size)

    def describe(self) -> str:
        """One line for the start of a run: where the images came from and how many."""
        if self.train_set is None:
            return "not set up"
        folder = self.train_paths[0].parent
        return (
            f"{len(self.train_set.images)} training images from {folder}, "
            f"{len(self.val_set)} held out; {self.crop_size}px crops, batch {self.batch_size}"
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=False,  # every item is already a random crop
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=1 if self.val_crop_size is None else len(self.val_set),
            num_workers=0,
        )
