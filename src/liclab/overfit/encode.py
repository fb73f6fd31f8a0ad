"""Encoding with an overfitted codec: an optimisation of one model over one image.

The schedule follows Cool-chic's and C3's (Ladune et al., Cool-chic 3.x–4.x ``c3x_intra``
and 5.0 ``intra`` presets; Kim et al. 2024, C3, arXiv:2312.02753)::

    warm-up   n₀ fresh models, each trained a few iterations; the best n₁ go on; …; best 1
    main      cosine learning rate, annealed proxy (soft rounding T 0.3 → 0.1 with noise)
    final     rounding at a low learning rate (Cool-chic: soft rounding's gradient at T = 1e-4,
              so that the networks adapt to latents that hold still)

Every phase validates under true rounding every ``validate_every`` iterations and ends on its
best state. The loss is :class:`liclab.overfit.loss.CoolChicMSE` (MSE + λ·bpp, Cool-chic's λ).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from liclab.overfit.loss import CoolChicMSE
from liclab.overfit.model import CoolChic, describe
from liclab.overfit.soap import SOAP
from liclab.quantizers import Quantizer

log = logging.getLogger(__name__)


@dataclass
class Phase:
    """One stretch of the optimisation.

    Args:
        iterations: optimiser steps (per candidate, in the warm-up).
        lr: Adam's learning rate at the start.
        quantizer: the proxy; its ``on_train_step(i, iterations)`` anneals it over the phase.
        cosine: decay the learning rate to ``lr_min`` along a half cosine (C3); else keep it.
        lr_min: where the cosine ends (Cool-chic: 1e-5).
        hold: iterations over which the learning rate and the proxy's annealed parameters
            stay fixed (Cool-chic updates both at its validations, every 100 iterations:
            each stretch runs on the values of its first iteration); 1: every iteration.
        latent_lr: the latents' learning rate as a multiple of the networks' (1: one rate
            for all, as Cool-chic and C3).
        betas: Adam's (β₁, β₂), for the networks (and for the latents unless
            ``latent_betas``).
        optimizer: ``"adam"``, or ``"soap"``: the networks trained by SOAP (Adam in the
            eigenbasis of Shampoo's preconditioner, :class:`liclab.overfit.soap.SOAP`), the
            latents by Adam, as Cool-chic 5.0.
        latent_betas: Adam's betas for the latents (None: ``betas``).
        weight_decay: decoupled weight decay of the networks (AdamW's; Cool-chic 5: 0.01).
        precondition_every: SOAP's steps between refreshes of its eigenbases.
    """

    iterations: int
    lr: float
    quantizer: Quantizer
    cosine: bool = True
    lr_min: float = 0.0
    hold: int = 1
    latent_lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    optimizer: str = "adam"
    latent_betas: tuple[float, float] | None = None
    weight_decay: float = 0.0
    precondition_every: int = 10

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.latent_betas is not None:
            self.latent_betas = tuple(self.latent_betas)
        if self.hold < 1 or self.iterations < 1:
            raise ValueError(
                f"a phase needs iterations and hold ≥ 1, not {self.iterations}, {self.hold}"
            )
        if not self.latent_lr >= 0:
            raise ValueError(f"a phase's latent_lr must be ≥ 0, not {self.latent_lr}")
        for betas in (self.betas, self.latent_betas or self.betas):
            if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
                raise ValueError(f"Adam's betas must be two numbers in [0, 1), not {betas}")
        if self.optimizer not in ("adam", "soap"):
            raise ValueError(f"a phase's optimizer is 'adam' or 'soap', not {self.optimizer!r}")
        if not self.weight_decay >= 0 or self.precondition_every < 1:
            raise ValueError(
                f"a phase needs weight_decay ≥ 0 and precondition_every ≥ 1, not "
                f"{self.weight_decay}, {self.precondition_every}"
            )


@dataclass
class Warmup:
    """Keep the best of several initialisations (Cool-chic): round r trains the best
    ``candidates[r]`` models (fresh ones in round 0) for ``phase.iterations`` each.

    Args:
        candidates: models alive in each round, decreasing, e.g. (5, 2).
        phase: how each candidate is trained in each round.
        carry_arm: in the first round, each candidate after the first starts from the ARM
            as the previous one's training left it (its own latents, upsampling and
            synthesis): the ARM then trains through the whole round. Until the seventh
            session's fix of the shared ARM every fit did this by accident; on crops it is
            no gain (results/overfit-kodak/screens).
    """

    candidates: Sequence[int]
    phase: Phase
    carry_arm: bool = False


@dataclass
class Schedule:
    """Warm-up, main and final phases (Cool-chic 4.x and 5.0.1 at ``--n_itr 2000``: 5 × 50 +
    2 × 50 warm-up, 1150 main, 500 final iterations).

    Args:
        warmup: the competition of initialisations (None: one model, no warm-up).
        main: the main phase.
        final: the straight-through phase (None: none).
        grad_clip: global gradient-norm clip (Cool-chic: 0.1).
        clip_latents: the clip takes the latents' gradients with the networks' (liclab's
            schedules until the sixteenth session); False: the networks' only (Cool-chic 5).
        validate_every: iterations between validations under rounding.
    """

    main: Phase
    warmup: Warmup | None = None
    final: Phase | None = None
    grad_clip: float | None = 0.1
    clip_latents: bool = True
    validate_every: int = 100

    @property
    def coding_quantizer(self) -> Quantizer:
        """The decoder's rounding: the last phase's proxy in eval mode (plain rounding for
        every proxy but universal quantization, which rounds around its shared dither)."""
        return (self.final or self.main).quantizer

    @property
    def iterations(self) -> int:
        """Optimiser steps in all, every warm-up candidate's counted."""
        warm = self.warmup
        n = sum(warm.candidates) * warm.phase.iterations if warm else 0
        return n + self.main.iterations + (self.final.iterations if self.final else 0)

    def scaled(self, total: int) -> Schedule:
        """This schedule with every phase's iterations scaled by ``total / iterations`` (at
        least one each; the main phase takes the rounding, so the total is ``total`` when it
        can be), as Cool-chic's ``--n_itr``: the proportions of the phases stay."""
        factor = total / self.iterations

        def phase(p: Phase, n: int | None = None) -> Phase:
            n = max(1, round(p.iterations * factor)) if n is None else max(1, n)
            return dataclasses.replace(p, iterations=n)

        warm = self.warmup
        if warm:
            warm = dataclasses.replace(warm, phase=phase(warm.phase))
        final = phase(self.final) if self.final else None
        rest = total - (warm.phase.iterations * sum(warm.candidates) if warm else 0)
        rest -= final.iterations if final else 0
        return dataclasses.replace(self, warmup=warm, main=phase(self.main, rest), final=final)


@dataclass
class Fit:
    """A fitted model (eval mode) and how it went: ``stats`` under true rounding at the end
    (``bpp`` is the latents' entropy estimate, ``psnr`` on 8-bit output); ``history`` has a
    record per validation (``kind`` "validation": loss, bpp, mse, psnr), and per phase its
    starting loss ("start") and the loss of the state it ended on ("kept")."""

    model: CoolChic
    stats: dict[str, float]
    history: list[dict] = field(default_factory=list)


def fit(
    image: Tensor,
    model: Callable[..., CoolChic],
    lmbda: float,
    schedule: Schedule,
    *,
    device: str | torch.device = "cpu",
    compile: bool = False,
    seed: int = 0,
    log_every: int = 100,
    init: Mapping[str, Tensor] | None = None,
) -> Fit:
    """Fit an overfitted codec to ``image``.

    Args:
        image: (3, H, W) or (1, 3, H, W) in [0, 1].
        model: builds a model from ``size=(H, W)`` (a config's partial of
            :class:`~liclab.overfit.model.CoolChic`).
        lmbda: λ in Cool-chic's convention (loss = MSE + λ·bpp).
        schedule: the phases.
        device: where to run ("cpu", "cuda", …); the same code everywhere.
        compile: ``torch.compile`` the rate and decoding path (worth it on a GPU and for long
            runs on a CPU; the first iterations pay the compilation).
        seed: seeds initialisations and noise; candidate i of the warm-up uses seed + i.
        log_every: iterations between progress lines (``logging``, logger ``liclab.overfit``).
        init: a state of the same model to start from (a warm start: e.g. the fit of the
            same image at a neighbouring λ); the warm-up is skipped and its iterations go to
            the main phase (the same total). Its latents are taken at this fit's gain (a
            codec rescales them where the gain depends on λ).
    """
    x = (image[None] if image.dim() == 3 else image).to(device=device, dtype=torch.float32)
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"fit: expected one RGB image (3, H, W), got {tuple(image.shape)}")
    size = tuple(x.shape[-2:])

    def initial_state(i: int) -> dict[str, Tensor]:
        torch.manual_seed(seed + i)
        return model(size=size).state_dict()

    # One model object trains every candidate in turn (their states are swapped in), so that
    # torch.compile compiles once.
    work = model(size=size).to(device)
    gain = work.gain_at(lmbda)
    if gain is not None:  # a λ-dependent gain (Cool-chic 5.0): the latents' scale at this λ
        work.latents.set_gain(gain)
    if any(p is q for p, q in zip(work.parameters(), model(size=size).parameters(), strict=True)):
        raise ValueError(
            "fit: the model factory returns modules shared between its models (an ARM instance "
            "in a config without `_partial_: true`?); every warm-up candidate needs its own"
        )
    log.info("%s", describe(work))
    if init is not None and schedule.warmup:
        warm = sum(schedule.warmup.candidates) * schedule.warmup.phase.iterations
        main = dataclasses.replace(schedule.main, iterations=schedule.main.iterations + warm)
        schedule = dataclasses.replace(schedule, warmup=None, main=main)
    run = Fitter(x, CoolChicMSE(lmbda), schedule, log_every, work, compile)
    if init is not None:
        state = _checked_init(work, init)
        log.info("warm start: the main phase starts from the given state (no warm-up)")
    elif schedule.warmup:
        warm = schedule.warmup
        pool = [(math.inf, initial_state(i)) for i in range(warm.candidates[0])]
        for r, n in enumerate(warm.candidates):
            pool = sorted(pool, key=lambda entry: entry[0])[:n]
            trained = []
            for c, (_, state) in enumerate(pool):
                if warm.carry_arm and r == 0 and c > 0:  # the ARM as the last one left it
                    arm = {f"arm.{k}": v.clone() for k, v in work.arm.state_dict().items()}
                    state = {**state, **arm}
                trained.append(run.phase(state, warm.phase, f"warm-up {r + 1}.{c + 1}/{n}"))
            pool = trained
        state = min(pool, key=lambda entry: entry[0])[1]
    else:
        state = initial_state(0)
    _, state = run.phase(state, schedule.main, "main")
    if schedule.final:
        _, state = run.phase(state, schedule.final, "final")
    work.load_state_dict(state)
    stats = run.validate()
    stats.update(iterations=run.done, seconds=run.seconds, s_per_iteration=run.seconds / run.done)
    log.info(
        "done: %.4f bpp (latents, estimate), %.3f dB, %d iterations in %.0f s (%.3f s/it)",
        stats["bpp"], stats["psnr"], run.done, run.seconds, stats["s_per_iteration"],
    )  # fmt: skip
    return Fit(work.eval(), stats, run.history)


class Fitter:
    """The state of one fit: the image, loss, the model being trained, clock and history."""

    def __init__(
        self,
        x: Tensor,
        loss: CoolChicMSE,
        schedule: Schedule,
        log_every: int,
        model: CoolChic,
        compile: bool,
    ):
        self.x, self.loss, self.schedule, self.log_every = x, loss, schedule, log_every
        self.model = model
        if x.device.type == "cpu":
            keep_freed_memory()
        if compile and x.device.type == "cpu":
            log.warning(
                "compile=true on a CPU: the compiled fit cannot use liclab's C kernels and ran "
                "~3x slower per iteration than the eager one on a 2-core CPU, after minutes of "
                "compilation (results/overfit-speed); it is meant for GPUs"
            )
        # the proxy stays outside the compiled graph: its annealed floats would recompile it
        self.rate_and_decode = torch.compile(model.rate_and_decode) if compile else None
        self.total, self.done, self.seconds = schedule.iterations, 0, 0.0
        self.clipped = list(model.parameters())  # what the gradient clip takes (each phase sets it)
        self.history: list[dict] = []

    def forward(self, q: Quantizer) -> dict:
        if self.rate_and_decode is None:
            return self.model(q)
        likelihoods, x_hat = self.rate_and_decode(*self.model.latents(q))
        return {"x_hat": x_hat, "likelihoods": likelihoods}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss, bpp (latents' estimate), MSE and 8-bit PSNR under true rounding."""
        model, q = self.model, self.schedule.coding_quantizer
        was_training, q_training = model.training, q.training
        out = model.eval()(q.eval())
        model.train(was_training)
        q.train(q_training)
        terms = self.loss(out, self.x)
        mse8 = float(torch.mean((torch.round(self.x * 255) - torch.round(out["x_hat"] * 255)) ** 2))
        return {
            "loss": float(terms["loss"]),
            "bpp": float(terms["bpp"]),
            "mse": float(terms["mse"]),
            "psnr": 10 * math.log10(255.0**2 / mse8) if mse8 > 0 else math.inf,
        }

    def phase(
        self, state: dict[str, Tensor], phase: Phase, name: str
    ) -> tuple[float, dict[str, Tensor]]:
        """Train from ``state`` through ``phase``; returns the best validated (loss, state)."""
        model = self.model
        model.load_state_dict(state)
        model.train()
        q = phase.quantizer.train()
        q.set_lambda(self.loss.lmbda_coolchic)  # proxies whose parameters follow λ
        opt = self.optimizer(phase)
        best = (self.validate()["loss"], _copy(model))
        self.history.append(
            {"phase": name, "iteration": self.done, "kind": "start", "loss": best[0]}
        )
        every = min(self.schedule.validate_every, phase.iterations)
        start = time.perf_counter()
        for i in range(phase.iterations):
            held = i - i % phase.hold
            q.on_train_step(held, phase.iterations)
            if phase.cosine:
                cos = 0.5 * (1 + math.cos(math.pi * held / phase.iterations))
                for group in opt.param_groups:
                    group["lr"] = group["scale"] * (phase.lr_min + (phase.lr - phase.lr_min) * cos)
            terms = self.step(q, opt)
            self.done += 1
            if self.done % self.log_every == 0:
                self._log(name, terms, start)
            if (i + 1) % every == 0 or i + 1 == phase.iterations:
                record = self.validate()
                record.update(phase=name, iteration=self.done, kind="validation")
                self.history.append(record)
                if record["loss"] < best[0]:
                    best = (record["loss"], _copy(model))
        self.seconds += time.perf_counter() - start
        self.history.append(
            {"phase": name, "iteration": self.done, "kind": "kept", "loss": best[0]}
        )
        return best

    def optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        """A fresh optimiser of ``phase`` over the model (the networks, the latents), and
        the parameters the gradient clip takes from now on (the latents too, or not:
        ``Schedule.clip_latents``)."""
        latents = list(self.model.latents.parameters())
        ids = {id(p) for p in latents}
        networks = [p for p in self.model.parameters() if id(p) not in ids]
        self.clipped = list(self.model.parameters()) if self.schedule.clip_latents else networks
        return _optimizer(phase, networks, latents)

    def step(self, q: Quantizer, opt: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One iteration: forward under ``q``, loss, backward, clipping, optimiser step."""
        opt.zero_grad(set_to_none=True)
        terms = self.loss(self.forward(q), self.x)
        terms["loss"].backward()
        if self.schedule.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.clipped, self.schedule.grad_clip)
        opt.step()
        return terms

    def _log(self, name: str, terms: dict, start: float) -> None:
        elapsed = self.seconds + time.perf_counter() - start
        rate = self.done / elapsed
        mse = terms["mse"].item()
        log.info(
            "%d/%d %s: loss %.6f, bpp %.4f, PSNR %.2f dB (proxy); %.2f it/s, ETA %s",
            self.done, self.total, name, terms["loss"].item(), terms["bpp"].item(),
            10 * math.log10(1 / mse) if mse > 0 else math.inf, rate,
            _duration((self.total - self.done) / rate),
        )  # fmt: skip


def _optimizer(phase: Phase, networks: list, latents: list) -> torch.optim.Optimizer:
    """The phase's optimiser over two groups, each with the "scale" of its learning rate
    (the cosine sets ``lr = scale × the schedule's``): the networks (1) and the latents
    (``latent_lr``)."""
    nets = {"params": networks, "scale": 1.0, "lr": phase.lr, "betas": phase.betas}
    lats = {
        "params": latents,
        "scale": phase.latent_lr,
        "lr": phase.latent_lr * phase.lr,
        "betas": phase.latent_betas or phase.betas,
    }
    if phase.optimizer == "soap":  # the latents: Adam (no preconditioner), no decay
        nets.update(weight_decay=phase.weight_decay, precondition_every=phase.precondition_every)
        return SOAP([nets, {**lats, "max_precond_dim": 0, "weight_decay": 0.0}])
    if phase.weight_decay:
        nets["weight_decay"] = phase.weight_decay
        return torch.optim.AdamW([nets, {**lats, "weight_decay": 0.0}])
    return torch.optim.Adam([nets, lats])


def keep_freed_memory(keep: bool = True) -> bool:
    """Have this process keep the memory it frees for its next allocations (``keep=False``:
    glibc's defaults again), where the C library is glibc (``mallopt``; elsewhere nothing
    happens, and False is returned). Every iteration of a fit allocates and frees the same
    tensors of tens of MB, and glibc hands blocks over 128 kB back to the system when they
    are freed, so each iteration paid again a page fault per 4 kB it touched. Side by side
    (``scripts/bench_overfit.py --malloc``, ``results/overfit-speed/bench_overfit_kernel*.txt``)
    the median iteration of ``coolchic_hop`` was lower with memory kept in 7 of 8 pairs, by
    up to 30 %, on an hour whose noise was as large. The process then holds on to its peak
    memory until it exits. :class:`Fitter` calls it on a
    CPU."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    default = 128 << 10
    ok = mallopt(m_mmap_threshold, 32 << 20 if keep else default)  # 32 MB: glibc's largest
    ok &= mallopt(m_trim_threshold, (1 << 31) - 1 if keep else default)  # never trim
    ok &= mallopt(m_top_pad, 64 << 20 if keep else default)  # grow the heap 64 MB at a time
    return bool(ok)


@functools.cache
def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None


def _checked_init(model: CoolChic, init: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``init`` as a state of ``model`` (copied), or a one-line error naming what differs."""
    own = model.state_dict()
    missing, extra = own.keys() - init.keys(), init.keys() - own.keys()
    shapes = [k for k in own.keys() & init.keys() if own[k].shape != init[k].shape]
    if missing or extra or shapes:
        what = sorted(missing)[:1] or sorted(extra)[:1] or shapes[:1]
        raise ValueError(
            f"fit: the warm start is not a state of this model (image size or preset differ: "
            f"{what[0]})"
        )
    return {k: v.detach().clone().to(own[k].device) for k, v in init.items()}


def _copy(model: CoolChic) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"
