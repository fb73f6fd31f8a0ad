"""An overfitted image codec (Cool-chic, C3): latent pyramid, ARM, upsampling, synthesis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from liclab.overfit.arm import ARM, laplace_likelihood
from liclab.overfit.latents import LatentPyramid
from liclab.quantizers import Quantizer, Round

_ROUND = Round().eval()


class CoolChic(nn.Module):
    """One image's decoder and latents (Ladune et al. 2023, Cool-chic, arXiv:2212.05458;
    Leguay et al. 2023, arXiv:2307.12706; Kim et al. 2024, C3, arXiv:2312.02753)::

        y_l ─×gain─q─▶ ŷ_l ──ARM──▶ (μ_l, b_l) ─▶ p(ŷ_l) = Laplace(μ_l, b_l)[ŷ_l ± ½]
                        │
                        └─▶ upsampling ─▶ (1, L, H, W) ─▶ synthesis ─▶ x̂ (1, 3, H, W)

    The latents are the model's parameters: it is built for one image size, and an encoder
    fits it to one image (:func:`liclab.overfit.encode.fit`). A decoder given the rounded
    latents (:meth:`rounded_latents`) and the three networks runs :meth:`decode`; the ARM
    gives the coding distributions (:meth:`entropy_parameters`).

    Args:
        size: the image's (H, W).
        arm: the probability model (:class:`liclab.overfit.arm.ARM`), or a callable that
            builds it (a config's partial): then every model gets its own ARM, initialised
            from the random state at construction (an encoder seeds it per warm-up
            candidate), where an instance is shared by every model given it.
        upsampling: called with ``levels=L`` to build the upsampling module
            (:class:`~liclab.overfit.upsampling.LearnedUpsampling` or
            :class:`~liclab.overfit.upsampling.BilinearUpsampling`; a partial in configs).
        synthesis: called with ``in_channels=L`` to build the synthesis
            (:class:`~liclab.overfit.synthesis.Synthesis`; a partial in configs).
        gain: the latents' gain before rounding, one or one per grid.
        levels: L; None derives it from the size (:func:`liclab.overfit.latents.num_levels`).
        clamp: ``"always"``: x̂ clamped to [0, 1] in training too, as Cool-chic does (the
            loss then ignores overshoot that the decoder's clamp removes anyway, at the cost
            of no gradient through saturated pixels); ``"eval"``: in eval mode only.
        hyperlatents: n more grids at the n coarsest resolutions, coded by the ARM and read
            only by its inter-grid features (Cool-chic 5.0's hyperlatents; 3 for its hop).
        lambda_gains: (threshold, gain) pairs: a fit at λ below a threshold uses that gain on
            every grid (the smallest threshold that applies), else ``gain``
            (:meth:`gain_at`); Cool-chic 5.0: ((2e-4, 24), (5e-4, 20)). The bitstream carries
            integers, so the gain is the encoder's choice alone.
    """

    def __init__(
        self,
        size: Sequence[int],
        arm: ARM | Callable[[], ARM],
        upsampling: Callable[..., nn.Module],
        synthesis: Callable[..., nn.Module],
        gain: float | Sequence[float] = 16.0,
        levels: int | None = None,
        clamp: str = "eval",
        hyperlatents: int = 0,
        lambda_gains: Sequence[Sequence[float]] = (),
    ):
        super().__init__()
        if clamp not in ("always", "eval"):
            raise ValueError(f"clamp must be 'always' or 'eval', not {clamp!r}")
        self.clamp = clamp
        self.latents = LatentPyramid(size, levels, gain, hyperlatents)
        self.lambda_gains = sorted((float(t), float(g)) for t, g in lambda_gains)
        if any(g <= 0 for _, g in self.lambda_gains):
            raise ValueError(f"lambda_gains must be positive, not {lambda_gains}")
        self.arm = arm if isinstance(arm, nn.Module) else arm()
        grids = range(len(self.latents.shapes))
        self.arm.attach(self.latents.levels, [self.latents.resolution(i) for i in grids])
        self.upsampling = upsampling(levels=self.latents.levels)
        self.synthesis = synthesis(in_channels=self.latents.levels)

    @property
    def size(self) -> tuple[int, int]:
        return self.latents.size

    def forward(self, quantizer: Quantizer | None = None) -> dict[str, Any]:
        """``{"x_hat": (1, 3, H, W), "likelihoods": {"y0": …, "y1": …}, "y_hat": [ŷ_l]}``
        under ``quantizer`` (rounding if None or in eval mode). x̂ is clamped to [0, 1] in
        eval mode, and in training with ``clamp="always"``."""
        y_rate, y_hat = self.latents(quantizer or _ROUND)
        likelihoods, x_hat = self.rate_and_decode(y_rate, y_hat)
        return {"x_hat": x_hat, "likelihoods": likelihoods, "y_hat": y_hat}

    def rate_and_decode(
        self, y_rate: list[Tensor], y_hat: list[Tensor]
    ) -> tuple[dict[str, Tensor], Tensor]:
        """(likelihoods of ``y_rate`` per grid, x̂ from ``y_hat``): everything after the
        quantizer, the part worth ``torch.compile``."""
        params = self.entropy_parameters(y_hat)
        likelihoods = {
            f"y{level}": laplace_likelihood(y, mu, scale)
            for level, (y, (mu, scale)) in enumerate(zip(y_rate, params, strict=True))
        }
        return likelihoods, self.decode(y_hat)

    def entropy_parameters(self, y_hat: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """(μ, scale) of every latent's Laplace, from already decoded context only."""
        return self.arm(y_hat)

    def decode(self, y_hat: list[Tensor]) -> Tensor:
        """x̂ from the (rounded) latents: upsampling, then synthesis; clamped to [0, 1] in
        eval mode (and in training with ``clamp="always"``)."""
        x_hat = self.synthesis(self.upsampling(y_hat[: self.latents.levels]))
        return x_hat if self.training and self.clamp == "eval" else x_hat.clamp(0, 1)

    def gain_at(self, lmbda: float) -> float | None:
        """The gain ``lambda_gains`` gives a fit at ``lmbda`` (None: the model's own)."""
        return next((g for t, g in self.lambda_gains if lmbda < t), None)

    def rounded_latents(self) -> list[Tensor]:
        """What a bitstream carries: round(gain·y_l) per grid (integers as float32)."""
        return self.latents.rounded()

    def networks(self) -> dict[str, nn.Module]:
        """The modules a bitstream sends, by name."""
        return {"arm": self.arm, "upsampling": self.upsampling, "synthesis": self.synthesis}

    def macs_per_pixel(self) -> dict[str, float]:
        """Decoder multiplications per image pixel, per module and in total: the ARM on every
        latent of every grid, the upsampling, the synthesis at full resolution."""
        shapes, (h, w) = self.latents.shapes, self.size
        pixels = h * w
        arm = self.arm.macs_per_latent() * self.latents.num_latents + self.arm.feature_macs(shapes)
        macs = {
            "arm": arm / pixels,
            "upsampling": self.upsampling.macs(shapes[: self.latents.levels]) / pixels,
            "synthesis": float(self.synthesis.macs_per_pixel()),
        }
        macs["total"] = sum(macs.values())
        return macs

    def num_parameters(self) -> dict[str, int]:
        """Parameters of each sent network (the latents excluded)."""
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.networks().items()}


def describe(model: CoolChic) -> str:
    """One line: size, grids, MAC/pixel per module, network parameters."""
    macs, params = model.macs_per_pixel(), model.num_parameters()
    h, w = model.size
    parts = ", ".join(f"{k} {macs[k]:.0f}" for k in ("arm", "upsampling", "synthesis"))
    hyper = len(model.latents.shapes) - model.latents.levels
    grids = f"{model.latents.levels} latent grids" + (f" + {hyper} hyperlatent" if hyper else "")
    return (
        f"{w}×{h}, {grids}; decoder {macs['total']:.0f} MAC/pixel "
        f"({parts}); {sum(params.values())} network parameters"
    )
