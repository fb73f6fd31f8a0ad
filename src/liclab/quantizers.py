"""Quantization proxies: objects the models call, never flags they branch on.

A model hands every latent to its quantizer as ``q(x, offset)`` and gets back two tensors:

* ``x_rate`` — what the entropy model scores (the likelihood / rate term),
* ``x_dec``  — what the synthesis transform (or the hyper-synthesis) receives.

``offset`` is the value rounding is centred on: the predicted mean where the model has one,
the entropy bottleneck's median for factorized latents, else ``None`` (zero).

In ``eval()`` mode every proxy is true rounding, ``round(x - c) + c`` for both outputs, with
``c = coding_offset(x.shape, offset)``: the offset itself, or for universal quantization the
offset plus a dither both sides derive from a seed. Models code with the same ``coding_offset``, so
``compress``/``decompress`` reproduce the eval ``forward`` exactly and evaluation never sees
the training proxy, whichever one was configured.

Training hooks: :meth:`Quantizer.on_train_step` is called by the LightningModule before each
step (soft rounding anneals its α there).

CompressAI has the noise and ``quantize_ste`` primitives but no proxy objects; these are
written here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def round_offset(x: Tensor, offset: Tensor | None) -> Tensor:
    """``round(x - offset) + offset``: the decoder's reconstruction of a coded latent."""
    if offset is None:
        return torch.round(x)
    return torch.round(x - offset) + offset


def ste_round(x: Tensor, offset: Tensor | None = None) -> Tensor:
    """Rounding in the forward pass, identity gradient in the backward pass."""
    return x + (round_offset(x, offset) - x).detach()


def add_noise(x: Tensor) -> Tensor:
    """Additive uniform noise U(-1/2, 1/2), the continuous relaxation of Ballé et al. 2017."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


class Quantizer(nn.Module):
    """Base class: true rounding in eval mode; subclasses define :meth:`proxy` for training."""

    def forward(self, x: Tensor, offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Latents stay float32 under bf16 autocast: bf16 steps are 0.25 at |y| ≈ 50.
        x = x.float()
        if offset is not None:
            # The offset is a prediction of the model, not a quantity to optimise through
            # the rounding (and bottleneck medians are trained only by the aux loss).
            offset = offset.detach().float()
        if not self.training:
            centre = self.coding_offset(x.shape, offset)
            x_hat = round_offset(x, None if centre is None else centre.to(x.device))
            return x_hat, x_hat
        return self.proxy(x, offset)

    def coding_offset(self, shape: torch.Size, offset: Tensor | None) -> Tensor | None:
        """The value rounding is centred on when coding a latent of ``shape`` (B, C, H, W):
        ``offset`` itself (None: zero); a tensor broadcastable to ``shape``."""
        return offset

    def on_train_step(self, step: int, max_steps: int) -> None:
        """Called before every training step with the global step and the run's length."""

    def set_lambda(self, lmbda: float) -> None:
        """Called by an overfitted codec's fit with its λ (Cool-chic's convention) before a
        phase: proxies whose parameters follow λ set them; the others ignore it."""

    def proxy(self, x: Tensor, offset: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Round(Quantizer):
    """Hard rounding everywhere (zero gradient); the default when no quantizer is passed."""

    def proxy(self, x, offset):
        x_hat = round_offset(x, offset)
        return x_hat, x_hat


class Noise(Quantizer):
    """Uniform noise for both the rate term and the decoder input (Ballé et al. 2017,
    arXiv:1611.01704)."""

    def proxy(self, x, offset):
        x_tilde = add_noise(x)
        return x_tilde, x_tilde


class STE(Quantizer):
    """Straight-through rounding ``round(x - μ) + μ`` for the rate and the decoder input
    (Theis et al. 2017, arXiv:1703.00395; centred on μ as in Minnen & Singh 2020).

    Args:
        t_backward: None: the identity gradient. A temperature T: the gradient of soft
            rounding s_{1/T} instead (Cool-chic's "ste"), which for a small T (Cool-chic's
            final phase: 1e-4) is zero but within ~T of a half-integer: the latents hold
            still while the networks learn to decode the integers they will get.
    """

    def __init__(self, t_backward: float | None = None):
        super().__init__()
        if t_backward is not None and t_backward <= 0:
            raise ValueError(f"STE's backward temperature must be positive, not {t_backward}")
        self.t_backward = t_backward

    def proxy(self, x, offset):
        if self.t_backward is None:
            x_hat = ste_round(x, offset)
        else:
            off = 0.0 if offset is None else offset
            soft = soft_round(x - off, 1.0 / self.t_backward) + off
            x_hat = soft + (round_offset(x, offset) - soft).detach()
        return x_hat, x_hat


class Mixed(Quantizer):
    """Noise for the rate term, straight-through rounding for the decoder (Minnen & Singh
    2020, arXiv:2007.08739): the entropy model trains on a smooth density while the synthesis
    learns to decode the integers it will see at test time."""

    def proxy(self, x, offset):
        return add_noise(x), ste_round(x, offset)


class Universal(Quantizer):
    """Universal quantization (Agustsson & Theis 2020, arXiv:2006.09952).

    Encoder and decoder share a dither u ∈ [−½, ½) derived from ``seed`` and the latent's
    shape (:func:`dither`), so it travels in no bitstream. The encoder transmits
    k = round(y − μ − u); the decoder reconstructs ŷ = k + μ + u. Since ŷ − y is then
    uniform and independent of y, training with a fresh random dither (straight-through
    gradient) and the noise-convolved density for the rate has no train/test mismatch.

    Args:
        seed: the shared dither seed (part of the codec: a decoder needs the same one).
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    def coding_offset(self, shape, offset):
        u = dither(self.seed, tuple(shape[1:]))
        if offset is None:
            return u.expand(shape)
        return offset + u.to(offset.device, offset.dtype)

    def proxy(self, x, offset):
        u = torch.empty_like(x).uniform_(-0.5, 0.5)
        c = u if offset is None else offset + u
        x_hat = x + (round_offset(x, c) - x).detach()
        return x_hat, x_hat


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment


def splitmix64(state: np.ndarray | int) -> np.ndarray | int:
    """SplitMix64's output function (Steele, Lea, Flood 2014) on uint64 (wrapping) arithmetic:
    ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
    z ^= z >> 31``. Works on Python ints (masked to 64 bits) and numpy uint64 arrays."""
    if isinstance(state, int):
        z = state & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)
    z = state.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dither(seed: int, shape: tuple[int, ...]) -> Tensor:
    """The universal-quantization dither of a latent of per-image ``shape`` (C, H, W): part
    of the ``.lic`` format (version 2), so defined here bit for bit, independent of any
    library's random generator:

    1. key = splitmix64(seed mod 2⁶⁴); then for each dimension d of ``shape`` in order,
       key = splitmix64(key ⊕ d) — the same latent shape always gives the same key;
    2. element i (C-order flat index) takes v_i = splitmix64(key + (i + 1)·0x9E3779B97F4A7C15
       mod 2⁶⁴), SplitMix64's i-th output for that key;
    3. u_i = ⌊v_i / 2⁴⁰⌋ · 2⁻²⁴ − ½, exact in float32.

    Every image of a batch shares the dither (a decoder of one image derives the same).
    """
    key = splitmix64(seed)
    for d in shape:
        key = splitmix64(key ^ d)
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        counter = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(key)
    top = (splitmix64(counter) >> np.uint64(40)).astype(np.float32)
    return torch.from_numpy(top * np.float32(2.0**-24) - np.float32(0.5)).reshape(shape)


def soft_round(x: Tensor, alpha: float) -> Tensor:
    """s_α(x) = ⌊x⌋ + ½ · tanh(α r) / tanh(α/2) + ½ with r = x − ⌊x⌋ − ½ (Agustsson & Theis
    2020): the identity as α → 0, rounding as α → ∞, differentiable in between."""
    if alpha < 1e-3:
        return x
    m = torch.floor(x) + 0.5
    r = x - m
    return m + 0.5 * torch.tanh(alpha * r) / math.tanh(alpha / 2)


class NoisyLatent:
    """SoftRound's rate term on y + u: the combination Tsubota & Aizawa 2023 ("Comprehensive
    comparisons of uniform quantization in deep image compression") found robust."""

    def __call__(self, x: Tensor, x_soft: Tensor) -> Tensor:
        return add_noise(x)


class NoisySoftRound:
    """SoftRound's rate term on s_α(y − μ) + μ + u, the soft-rounded latent plus noise
    (Agustsson & Theis 2020)."""

    def __call__(self, x: Tensor, x_soft: Tensor) -> Tensor:
        return add_noise(x_soft)


class SoftRound(Quantizer):
    """Soft rounding s_α around μ for the decoder input, with α annealed linearly from
    ``alpha_start`` to ``alpha_end`` over ``anneal_steps`` training steps (Agustsson & Theis
    2020, arXiv:2006.09952).

    Args:
        alpha_start, alpha_end: the α schedule's ends.
        anneal_steps: steps to reach ``alpha_end`` (None: the whole run, ``max_steps``).
        rate: what the rate term scores, ``rate(y, s_α(y − μ) + μ)``: :class:`NoisyLatent`
            (default) or :class:`NoisySoftRound`.

    Deviation from the paper: the decoder receives s_α(y − μ) + μ directly, not the paper's
    conditional-mean estimate r_α(s_α(y) + u); the rate uses the noise-convolved density of
    the entropy model, not the density of s_α(y) + u.
    """

    def __init__(
        self,
        alpha_start: float = 1.0,
        alpha_end: float = 16.0,
        anneal_steps: int | None = None,
        rate=None,
    ):
        super().__init__()
        self.alpha_start, self.alpha_end, self.anneal_steps = alpha_start, alpha_end, anneal_steps
        self.rate = rate if rate is not None else NoisyLatent()
        self.alpha = alpha_start

    def on_train_step(self, step, max_steps):
        span = self.anneal_steps or max_steps
        t = min(1.0, step / max(1, span)) if span and span > 0 else 1.0
        self.alpha = self.alpha_start + t * (self.alpha_end - self.alpha_start)

    def proxy(self, x, offset):
        off = 0.0 if offset is None else offset
        x_soft = soft_round(x - off, self.alpha) + off
        return self.rate(x, x_soft), x_soft


def _anneal(start: float, end: float, step: int, span: int) -> float:
    """Linear interpolation from ``start`` (step 0) to ``end`` (step ``span`` and later)."""
    t = min(1.0, step / span) if span > 0 else 1.0
    return start + t * (end - start)


class KumaraswamyNoise(Quantizer):
    """Additive Kumaraswamy noise for the rate and the decoder (Kim et al. 2024, C3,
    arXiv:2312.02753, Sec. 3.2).

    The noise is κ − ½ with κ ~ Kumaraswamy(a, b) on (0, 1) and ``b = (2^a (a − 1) + 1) / a``,
    which puts the mode at ½: a = 1 is the uniform noise of Ballé et al.; larger a
    concentrates the noise around zero. C3 anneals a from 2 to 1 during training.

    Args:
        a_start, a_end: the parameter a's schedule ends (linear in the step).
        anneal_steps: steps to reach ``a_end`` (None: the whole run, ``max_steps``).
    """

    def __init__(self, a_start: float = 2.0, a_end: float = 1.0, anneal_steps: int | None = None):
        super().__init__()
        if min(a_start, a_end) < 1.0:
            raise ValueError(f"Kumaraswamy a must be ≥ 1 (mode ½), not {a_start} / {a_end}")
        self.a_start, self.a_end, self.anneal_steps = a_start, a_end, anneal_steps
        self.a = a_start

    def on_train_step(self, step, max_steps):
        self.a = _anneal(self.a_start, self.a_end, step, self.anneal_steps or max_steps)

    def sample(self, x: Tensor) -> Tensor:
        """Noise of the shape of ``x``, in (−½, ½), by inverting the CDF 1 − (1 − κ^a)^b."""
        a = self.a
        b = (2.0**a * (a - 1.0) + 1.0) / a
        u = torch.rand_like(x)
        return (1.0 - (1.0 - u) ** (1.0 / b)) ** (1.0 / a) - 0.5

    def proxy(self, x, offset):
        x_tilde = x + self.sample(x)
        return x_tilde, x_tilde


class GaussianNoise(Quantizer):
    """Additive Gaussian noise N(0, σ²) with σ annealed: the noise of Cool-chic's main
    training phase (Ladune et al., Cool-chic 3.x–5.x, `quantizer.py`; σ 0.25 → 0.1), meant
    inside :class:`SoftRoundNoise`. On its own it is the rate and decoder proxy x + n.

    Args:
        std_start, std_end: σ's schedule ends (linear in the step).
        anneal_steps: steps to reach ``std_end`` (None: the whole run, ``max_steps``).
        lambda_rule: (a, b): σ = a + b·log10 λ at both ends instead, once the fit gives λ
            (:meth:`set_lambda`); Cool-chic 5.0's warm-up: (0.0747, −0.0432).
    """

    def __init__(
        self,
        std_start: float = 0.25,
        std_end: float = 0.1,
        anneal_steps: int | None = None,
        lambda_rule: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.std_start, self.std_end, self.anneal_steps = std_start, std_end, anneal_steps
        self.lambda_rule = None if lambda_rule is None else tuple(lambda_rule)
        if self.lambda_rule is not None and len(self.lambda_rule) != 2:
            raise ValueError(f"lambda_rule is (a, b) of σ = a + b·log10 λ, not {lambda_rule}")
        self.std = std_start

    def set_lambda(self, lmbda):
        if self.lambda_rule is not None:
            a, b = self.lambda_rule
            std = a + b * math.log10(lmbda)
            if not std > 0:
                raise ValueError(f"lambda_rule {self.lambda_rule}: σ = {std:g} at λ = {lmbda:g}")
            self.std_start = self.std_end = self.std = std

    def on_train_step(self, step, max_steps):
        self.std = _anneal(self.std_start, self.std_end, step, self.anneal_steps or max_steps)

    def sample(self, x: Tensor) -> Tensor:
        return torch.randn_like(x) * self.std

    def proxy(self, x, offset):
        x_tilde = x + self.sample(x)
        return x_tilde, x_tilde


class SoftRoundNoise(Quantizer):
    """C3's proxy ``s_T(s_T(y) + n)``: soft rounding, additive noise, soft rounding again
    (Kim et al. 2024, C3, arXiv:2312.02753, Sec. 3.2; soft rounding of Agustsson & Theis
    2020, arXiv:2006.09952), for both the rate and the decoder, with the temperature
    T = 1/α annealed from ``t_start`` to ``t_end`` (C3 and Cool-chic: 0.3 → 0.1).

    The inner s_T moves y towards the integers, the noise keeps the synthesis from learning
    to undo s_T, the outer s_T brings the noisy value back towards an integer, so the
    decoder trains on values that look like quantized ones while gradients still flow.

    Args:
        t_start, t_end: temperature schedule ends (linear in the step).
        noise: a quantizer with a ``sample(x)`` method giving the additive noise:
            :class:`KumaraswamyNoise` (C3; a 2 → 1) or :class:`GaussianNoise` (Cool-chic's
            main phase; σ 0.25 → 0.1). Its own schedule is stepped with this one.
        anneal_steps: steps to reach ``t_end`` (None: the whole run, ``max_steps``).

    Deviation from C3: the outer function is s_T itself, as in Cool-chic, not C3's
    conditional mean r_T(z) = s_T⁻¹(z − ½) + ½, whose gradient grows like 1/T near the
    half-integers.
    """

    def __init__(
        self,
        t_start: float = 0.3,
        t_end: float = 0.1,
        noise: Quantizer | None = None,
        anneal_steps: int | None = None,
    ):
        super().__init__()
        if min(t_start, t_end) <= 0:
            raise ValueError(f"soft-round temperatures must be positive, not {t_start} / {t_end}")
        self.t_start, self.t_end, self.anneal_steps = t_start, t_end, anneal_steps
        self.noise = noise if noise is not None else KumaraswamyNoise()
        self.t = t_start

    def on_train_step(self, step, max_steps):
        self.t = _anneal(self.t_start, self.t_end, step, self.anneal_steps or max_steps)
        self.noise.on_train_step(step, max_steps)

    def set_lambda(self, lmbda):
        self.noise.set_lambda(lmbda)

    def proxy(self, x, offset):
        off = 0.0 if offset is None else offset
        alpha = 1.0 / self.t
        y = soft_round(soft_round(x - off, alpha) + self.noise.sample(x), alpha) + off
        return y, y
