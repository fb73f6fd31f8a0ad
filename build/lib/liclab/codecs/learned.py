"""A trained liclab model as a :class:`~liclab.codecs.base.Codec` writing ``.lic`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from liclab import LiclabError
from liclab.bitstream import Bitstream, pack, unpack
from liclab.checkpoint import load_model, model_hash
from liclab.images import to_tensor, to_uint8
from liclab.losses import bpp_terms
from liclab.metrics import psnr_batch


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

    def encode(self, image: np.ndarray) -> bytes:
        out = self.model.compress(to_tensor(image), self.quantizer)
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
    def details(self, image: np.ndarray, data: bytes) -> dict[str, float]:
        """The entropy model's estimate of the rate under rounding (``est_bpp``: no header,
        no coder overhead) and, when the codec has a training proxy, the estimated rate and
        PSNR under it (``proxy_bpp``, ``proxy_psnr``, seeded): what the training loss saw,
        for the train-vs-eval gap."""
        x = to_tensor(image)
        out = {"est_bpp": float(bpp_terms(self.model(x, self.quantizer)["likelihoods"], x)["bpp"])}
        if self.quantizer is not None:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                proxy = self.model(x, self.quantizer.train())
            self.quantizer.eval()
            out["proxy_bpp"] = float(bpp_terms(proxy["likelihoods"], x)["bpp"])
            out["proxy_psnr"] = float(psnr_batch(proxy["x_hat"], x)[0])
        return out
