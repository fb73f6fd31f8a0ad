"""A trained liclab model as a :class:`~liclab.codecs.base.Codec` writing ``.lic`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from liclab import LiclabError
from liclab.bitstream import Bitstream, pack, unpack
from liclab.checkpoint import load_model, model_hash


class LearnedCodec:
    """Encode with ``model.compress`` into the ``.lic`` container; decode back to uint8 RGB.

    The whole file (header, latent strings, CRC) is the encoded output, so the evaluator's
    bpp counts everything a decoder needs.

    Args:
        model: a liclab model in eval mode with updated CDFs.
        name: the curve name (e.g. ``hyperprior``).
        setting: the operating point (e.g. the λ or the checkpoint name).
        model_config: the model's config, part of the fingerprint written in each file.
        quantizer: supplies the rounding centres (a dither for universal quantization);
            default: plain rounding. Its config is part of the fingerprint too.
        exact_synthesis: False decodes x̂ with a float32 g_s: faster, bit-identical only on
            the same machine and thread count (see ``CompressionModel.exact_synthesis``).
    """

    def __init__(
        self,
        model,
        name: str,
        setting: str,
        model_config: dict | None = None,
        quantizer=None,
        quantizer_config: dict | None = None,
        exact_synthesis: bool = True,
    ):
        self.model, self.name, self.setting = model, name, setting
        model.exact_synthesis = exact_synthesis
        self.quantizer = quantizer.eval() if quantizer is not None else None
        self.config: dict = {}  # the run config, when loaded from a checkpoint
        self.model_id = type(model).__name__
        self.fingerprint = model_hash(model, {"model": model_config, "q": quantizer_config})

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, name: str | None = None, exact_synthesis: bool = True
    ) -> LearnedCodec:
        model, config = load_model(path)
        lmbda = config.get("loss", {}).get("lmbda")
        setting = f"lmbda={lmbda}" if lmbda is not None else Path(path).stem
        name = name or config.get("model", {}).get("_target_", "model").rsplit(".", 1)[-1]
        from hydra.utils import instantiate

        q_config = config.get("quantizer")
        quantizer = instantiate(q_config) if q_config else None
        codec = cls(model, name, setting, config["model"], quantizer, q_config, exact_synthesis)
        codec.config = config
        return codec

    def version(self) -> str:
        fast = "" if self.model.exact_synthesis else "-float32-gs"
        return f"{self.model_id}-{self.fingerprint.hex()}{fast}"

    @staticmethod
    def _to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255.0)

    def encode(self, image: np.ndarray) -> bytes:
        out = self.model.compress(self._to_tensor(image), self.quantizer)
        strings = [s[0] for s in out["strings"]]
        return pack(Bitstream(self.model_id, self.fingerprint, out["size"], out["shape"], strings))

    def decode(self, data: bytes, name: str = "bitstream") -> np.ndarray:
        bs = unpack(data, name)
        if bs.model_id != self.model_id or bs.model_hash != self.fingerprint:
            raise LiclabError(
                f"{name}: made by {bs.model_id} {bs.model_hash.hex()}, but this model is "
                f"{self.model_id} {self.fingerprint.hex()} (use the checkpoint that encoded it)"
            )
        strings = [[s] for s in bs.strings]
        x_hat = self.model.decompress(strings, bs.shape, bs.size, self.quantizer)["x_hat"]
        return to_uint8(x_hat)

    @torch.no_grad()
    def estimate_bpp(self, image: np.ndarray) -> float:
        """Entropy-model estimate of the rate under rounding (no header), for comparison."""
        out = self.model(self._to_tensor(image), self.quantizer)
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        return float(bits) / (image.shape[0] * image.shape[1])

    @torch.no_grad()
    def proxy_metrics(self, image: np.ndarray, seed: int = 0) -> dict[str, float]:
        """Estimated bpp and PSNR under the training proxy (seeded), for the train-vs-eval
        gap: what the training loss saw, against the real bytes and rounding."""
        if self.quantizer is None:
            return {}
        x = self._to_tensor(image)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            out = self.model(x, self.quantizer.train())
        self.quantizer.eval()
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        x8 = out["x_hat"].clamp(0, 1).mul(255).round().div(255)
        return {
            "proxy_bpp": float(bits) / (image.shape[0] * image.shape[1]),
            "proxy_psnr": _psnr(x8, x),
        }


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / torch.mean((a - b) ** 2).clamp_min(1e-12)))


def to_uint8(x_hat: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] → (H, W, 3) uint8, rounding to nearest."""
    return x_hat[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
