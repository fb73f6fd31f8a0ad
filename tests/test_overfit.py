"""The overfitted codec family (liclab.overfit): causality, decoding, MACs, warm-up, proxies."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from liclab.configs import config_dir
from liclab.overfit.arm import ARM, CONTEXT_ORDER
from liclab.overfit.encode import Phase, Schedule, Warmup, fit
from liclab.overfit.latents import num_levels
from liclab.overfit.loss import CoolChicMSE
from liclab.overfit.model import CoolChic
from liclab.overfit.synthesis import Synthesis
from liclab.overfit.upsampling import (
    BilinearUpsampling,
    LearnedUpsampling,
    bicubic_half_kernel,
    prefilter,
    upsample2,
)
from liclab.quantizers import (
    STE,
    GaussianNoise,
    KumaraswamyNoise,
    Mixed,
    Noise,
    SoftRound,
    SoftRoundNoise,
    Universal,
)

from conftest import smooth_image

OVERFIT_CONFIGS = sorted((config_dir("eval") / "overfit").glob("*/*.yaml"))
SIZE = (64, 96)


def tiny(coarse: int = 0, upsampling=LearnedUpsampling, **kw) -> CoolChic:
    return CoolChic(
        SIZE,
        ARM(context=kw.pop("context", 8), hidden_layers=1, coarse=coarse),
        functools.partial(
            upsampling, **({"kernel_size": 4} if upsampling is LearnedUpsampling else {})
        ),
        functools.partial(Synthesis, hidden=[8], residual_layers=1),
        **kw,
    )


def image() -> torch.Tensor:
    return torch.from_numpy(smooth_image(*SIZE)).permute(2, 0, 1).float()[None] / 255


def randomised(model: CoolChic, seed: int = 0) -> CoolChic:
    """Non-trivial latents and ARM weights (the zero initialisation hides mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*model.latents.grids, *model.arm.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("coarse", [0, 4])
def test_arm_parallel_equals_a_raster_order_decoder_seeing_only_decoded_latents(coarse):
    model = randomised(tiny(coarse=coarse, context=24))
    arm = model.arm
    y_hat = model()["y_hat"]
    params = arm(y_hat)
    level = 2  # 16×24: small enough for a latent-by-latent loop
    y, coarser = y_hat[level], y_hat[level + 1]
    h, w = y.shape[-2:]
    decoded = torch.zeros_like(y)  # the decoder's grid: zeros where nothing is decoded yet
    for i in range(h * w):
        mu, scale = arm.mlp(arm.contexts(decoded, coarser)[i : i + 1])
        assert torch.allclose(mu, params[level][0].flatten()[i], atol=1e-5)
        assert torch.allclose(scale, params[level][1].flatten()[i], rtol=1e-5)
        decoded.view(-1)[i] = y.view(-1)[i]


def test_perturbing_a_later_latent_never_changes_an_earlier_ones_parameters():
    model = randomised(tiny(coarse=4, context=24))
    y_hat = [y.clone() for y in model()["y_hat"]]
    mu0, scale0 = model.arm(y_hat)[0]
    h, w = y_hat[0].shape[-2:]
    pos = (h // 2) * w + w // 2
    y_hat[0].view(-1)[pos] += 7.0
    mu1, scale1 = model.arm(y_hat)[0]
    changed = (mu0 != mu1) | (scale0 != scale1)
    assert not changed.view(-1)[: pos + 1].any()  # itself and everything before: untouched
    assert changed.view(-1)[pos + 1 :].any()  # the context does reach later latents
    # a finer grid is decoded after its coarser one: it never changes the coarser's parameters
    coarse_before = model.arm(y_hat)[1]
    y_hat[0].view(-1)[:] += 3.0
    coarse_after = model.arm(y_hat)[1]
    assert all(torch.equal(a, b) for a, b in zip(coarse_before, coarse_after, strict=True))


def test_context_offsets_are_causal_and_nearest_first():
    assert len(set(CONTEXT_ORDER)) == 24
    assert all(dy < 0 or (dy == 0 and dx < 0) for dy, dx in CONTEXT_ORDER)
    distances = [dy * dy + dx * dx for dy, dx in CONTEXT_ORDER]
    assert distances == sorted(distances)


def test_eval_forward_is_what_a_decoder_rebuilds_from_rounded_latents_and_networks():
    model = tiny()
    q = SoftRoundNoise(noise=GaussianNoise()).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = image()
    for _ in range(5):
        opt.zero_grad()
        CoolChicMSE(1e-3)(model(q), x)["loss"].backward()
        opt.step()
    out = model.eval()()
    latents = model.rounded_latents()
    assert all(torch.equal(v, v.round()) for v in latents)
    decoder = tiny().eval()  # fresh latents (zeros): only the networks are copied
    for name, module in model.networks().items():
        getattr(decoder, name).load_state_dict(module.state_dict())
    assert torch.equal(decoder.decode(latents), out["x_hat"])
    for (mu_a, s_a), (mu_b, s_b) in zip(
        decoder.entropy_parameters(latents), model.entropy_parameters(out["y_hat"]), strict=True
    ):
        assert torch.equal(mu_a, mu_b) and torch.equal(s_a, s_b)


def test_macs_per_pixel_equal_a_hand_count():
    model = CoolChic(
        SIZE,
        ARM(context=8, hidden_layers=1),
        functools.partial(LearnedUpsampling, kernel_size=4),
        functools.partial(Synthesis, hidden=[4], residual_layers=1),
        levels=3,
    )
    pixels = 64 * 96
    latents = 64 * 96 + 32 * 48 + 16 * 24
    arm = (8 * 8 + 8 * 2) * latents / pixels
    # 2 taps per output; level 2 → 1: 1 channel, rows (16 + 32) × 48 cols; level 1 → 0: 2 ch.
    upsampling = (1 * 2 * (16 + 32) * 48 + 2 * 2 * (32 + 64) * 96) / pixels
    synthesis = 3 * 4 + 4 * 3 + 9 * 3 * 3
    macs = model.macs_per_pixel()
    assert macs["arm"] == pytest.approx(arm)
    assert macs["upsampling"] == pytest.approx(upsampling)
    assert macs["synthesis"] == synthesis
    assert macs["total"] == pytest.approx(arm + upsampling + synthesis)
    # pre-concatenation filters: k taps per axis on every grid but the coarsest
    filtered = CoolChic(
        SIZE,
        ARM(context=8, hidden_layers=1),
        functools.partial(LearnedUpsampling, kernel_size=4, preconcat=3),
        functools.partial(Synthesis, hidden=[4], residual_layers=1),
        levels=3,
    )
    extra = 2 * 3 * (64 * 96 + 32 * 48) / pixels
    assert filtered.macs_per_pixel()["upsampling"] == pytest.approx(upsampling + extra)


def test_mac_counts_match_the_operations_pytorch_counts():
    from torch.utils.flop_counter import FlopCounterMode

    model = randomised(tiny(context=24))
    ctx = model.arm.contexts(model()["y_hat"][0])
    with FlopCounterMode(display=False) as arm_count:
        model.arm.mlp(ctx)
    assert arm_count.get_total_flops() == 2 * model.arm.macs_per_latent() * len(ctx)
    with torch.no_grad(), FlopCounterMode(display=False) as syn_count:  # as a decoder runs it
        model.synthesis(torch.zeros(1, model.latents.levels, *SIZE))
    assert syn_count.get_total_flops() == 2 * model.synthesis.macs_per_pixel() * SIZE[0] * SIZE[1]


def test_learned_upsampling_starts_as_bicubic_interpolation():
    x = torch.randn(1, 2, 12, 20)
    ours = upsample2(x, bicubic_half_kernel(8))
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(ours[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4], atol=1e-5)


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_prefilter_is_a_separable_symmetric_filter_plus_identity_with_exact_gradients(padding):
    g = torch.Generator().manual_seed(0)
    half = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.cat([half, half[:-1].flip(0)]).detach()
    mode = "constant" if padding == "zeros" else "replicate"
    for shape in [(1, 1, 13, 17), (1, 2, 5, 4), (1, 1, 2, 1)]:  # grids narrower than the kernel
        x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        flat = x.detach().reshape(-1, 1, *shape[-2:])
        ref = F.conv2d(F.pad(flat, (3, 3, 0, 0), mode=mode), kernel.view(1, 1, 1, 7))
        ref = F.conv2d(F.pad(ref, (0, 0, 3, 3), mode=mode), kernel.view(1, 1, 7, 1))
        if padding == "zeros":  # Cool-chic's: one 2-D convolution with zero padding
            ref2 = F.conv2d(flat, torch.outer(kernel, kernel).view(1, 1, 7, 7), padding=3)
            assert torch.allclose(ref, ref2, atol=1e-12)
        assert torch.allclose(prefilter(x, half, padding), x + ref.view(shape), atol=1e-12)
        assert torch.autograd.gradcheck(lambda x, h: prefilter(x, h, padding), (x, half))
    # initialised as a unit impulse: the finer grid enters the synthesis doubled (Cool-chic's)
    up = LearnedUpsampling(levels=2, kernel_size=8, preconcat=7)
    y = [torch.randn(1, 1, 8, 12, generator=g), torch.randn(1, 1, 4, 6, generator=g)]
    assert torch.equal(up(y)[:, :1], 2 * y[0])


def test_coolchic_synthesis_init_starts_from_a_black_image_with_no_dead_unit():
    syn = Synthesis(7, hidden=[48], residual_layers=2, init="coolchic")
    assert torch.equal(syn(torch.zeros(1, 7, 6, 8)), torch.zeros(1, 3, 6, 8))
    first, last = syn.pointwise
    assert first.weight.abs().max() <= 1 / (7**0.5 * 48**2) and not first.bias.any()
    assert last.weight.abs().max() <= 1 / (48**0.5 * 3**2) and not last.bias.any()
    with pytest.raises(ValueError, match="init"):
        Synthesis(7, init="xavier")


@pytest.mark.parametrize("clamp", ["eval", "always"])
def test_training_clamp_bounds_the_output_and_stops_gradients_only_where_it_saturates(clamp):
    model = tiny(clamp=clamp).train()
    with torch.no_grad():  # biases that push red far above 1 and blue far below 0
        model.synthesis.pointwise[-1].bias.copy_(torch.tensor([5.0, 0.5, -5.0]))
    x_hat = model(SoftRound())["x_hat"]
    x_hat.sum().backward()
    bias_grad = model.synthesis.pointwise[-1].bias.grad
    if clamp == "always":
        assert x_hat.min() >= 0 and x_hat.max() <= 1
        assert bias_grad[0] == 0 and bias_grad[2] == 0 and bias_grad[1] > 0
    else:
        assert x_hat.max() > 1 and x_hat.min() < 0 and (bias_grad != 0).all()
    assert model.eval()()["x_hat"].max() <= 1  # the decoder's output is clamped either way
    with pytest.raises(ValueError, match="clamp"):
        tiny(clamp="train")


def test_levels_follow_the_image_size():
    assert num_levels(512, 768) == 7  # Kodak, as Cool-chic and C3
    assert num_levels(1080, 1920) == 8
    assert num_levels(64, 96) == 4
    assert num_levels(5, 5) == 1
    assert tiny().latents.shapes == [(64, 96), (32, 48), (16, 24), (8, 12)]


PROXIES = {
    "noise": Noise,
    "ste": STE,
    "mixed": Mixed,
    "universal": Universal,
    "soft_round": functools.partial(SoftRound, alpha_start=1.0, alpha_end=4.0),
    "kumaraswamy": KumaraswamyNoise,
    "gaussian": GaussianNoise,
    "soft_round_kumaraswamy": SoftRoundNoise,
    "soft_round_gaussian": functools.partial(SoftRoundNoise, noise=GaussianNoise()),
}


@pytest.mark.parametrize("proxy", PROXIES)
def test_every_proxy_trains_and_lowers_the_rounded_loss(proxy):
    q = PROXIES[proxy]()
    schedule = Schedule(main=Phase(iterations=12, lr=1e-2, quantizer=q), validate_every=12)
    result = fit(image(), tiny_at_size, 1e-3, schedule, log_every=1000)
    start = next(r for r in result.history if r["kind"] == "start")["loss"]
    assert result.stats["loss"] < 0.8 * start
    assert result.stats["iterations"] == 12


def tiny_at_size(size):
    assert tuple(size) == SIZE
    return tiny()


def warmup_schedule(candidates: list[int], main: int, validate_every: int) -> Schedule:
    """A warm-up of 3 iterations per candidate, then ``main`` iterations."""
    q = SoftRoundNoise(t_end=0.3, noise=KumaraswamyNoise(a_end=2.0))
    return Schedule(
        warmup=Warmup(candidates=candidates, phase=Phase(iterations=3, lr=1e-2, quantizer=q)),
        main=Phase(iterations=main, lr=1e-2, quantizer=q),
        validate_every=validate_every,
    )


def test_warmup_keeps_the_best_candidates_and_counts_their_iterations():
    schedule = warmup_schedule([3, 2], main=2, validate_every=3)
    result = fit(image(), tiny_at_size, 1e-3, schedule, log_every=1000)
    assert result.stats["iterations"] == schedule.iterations == 3 * 3 + 2 * 3 + 2
    kept = {r["phase"]: r["loss"] for r in result.history if r["kind"] == "kept"}
    starts = {r["phase"]: r["loss"] for r in result.history if r["kind"] == "start"}
    round1 = sorted(v for k, v in kept.items() if k.startswith("warm-up 1."))
    round2 = [v for k, v in starts.items() if k.startswith("warm-up 2.")]
    assert sorted(round2) == round1[:2]  # the two best of three go on
    final_round = [v for k, v in kept.items() if k.startswith("warm-up 2.")]
    assert starts["main"] == min(final_round)  # and the best of those is trained


def test_a_warm_start_skips_the_warm_up_and_gives_its_iterations_to_the_main_phase():
    schedule = warmup_schedule([2, 1], main=4, validate_every=2)
    cold = fit(image(), tiny_at_size, 1e-3, schedule, log_every=1000)
    state = cold.model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    warm = fit(image(), tiny_at_size, 4e-3, schedule, log_every=1000, init=state)
    assert warm.stats["iterations"] == cold.stats["iterations"] == schedule.iterations
    phases = [r["phase"] for r in warm.history if r["kind"] == "start"]
    assert phases == ["main"]
    # it starts where the cold fit ended: that state's rounded loss at the new λ
    start = warm.history[0]["loss"]
    assert start == pytest.approx(cold.stats["mse"] + 4e-3 * cold.stats["bpp"], rel=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in state.items())  # trained on a copy
    other = {k: v for k, v in state.items() if not k.startswith("arm.")}
    with pytest.raises(ValueError, match="warm start is not a state of this model"):
        fit(image(), tiny_at_size, 1e-3, schedule, init=other)


@pytest.mark.parametrize("hold", [1, 4])
def test_a_phase_holds_its_learning_rate_and_proxy_per_stretch(hold, monkeypatch):
    from liclab.overfit.encode import Fitter

    seen = []  # (learning rate, temperature) of every optimiser step
    step = Fitter.step

    def recording(self, q, opt):
        seen.append((opt.param_groups[0]["lr"], q.t))
        return step(self, q, opt)

    monkeypatch.setattr(Fitter, "step", recording)
    q = SoftRoundNoise(t_start=0.3, t_end=0.1, noise=GaussianNoise())
    phase = Phase(iterations=10, lr=1e-2, quantizer=q, lr_min=1e-5, hold=hold)
    fit(image(), tiny_at_size, 1e-3, Schedule(main=phase), log_every=1000)
    assert len(seen) == 10
    for i, (lr, t) in enumerate(seen):
        start = i - i % hold  # each stretch runs on the values of its first iteration
        cosine = 0.5 * (1 + math.cos(math.pi * start / 10))
        assert lr == pytest.approx(1e-5 + (1e-2 - 1e-5) * cosine)
        assert t == pytest.approx(0.3 + (0.1 - 0.3) * start / 10)
    assert seen[0][0] == pytest.approx(1e-2)
    assert len(set(seen)) == (10 if hold == 1 else 3)


def test_a_phase_gives_the_latents_their_own_learning_rate_and_adam_its_betas(monkeypatch):
    """``latent_lr`` scales the latents' learning rate (0: they stay where the phase found
    them while the networks train) through the cosine; ``betas`` reach Adam."""
    from liclab.overfit.encode import Fitter

    seen = []  # (networks' lr, latents' lr, betas) at every step
    step = Fitter.step

    def recording(self, q, opt):
        nets, latents = opt.param_groups
        seen.append((nets["lr"], latents["lr"], nets["betas"]))
        return step(self, q, opt)

    monkeypatch.setattr(Fitter, "step", recording)
    q = SoftRoundNoise(t_start=0.3, t_end=0.1, noise=GaussianNoise())
    phase = Phase(iterations=6, lr=1e-2, quantizer=q, lr_min=1e-5, latent_lr=0.0, betas=[0.8, 0.9])
    result = fit(image(), tiny_at_size, 1e-3, Schedule(main=phase), log_every=1000)
    assert [s[0] for s in seen] == pytest.approx(
        [1e-5 + (1e-2 - 1e-5) * 0.5 * (1 + math.cos(math.pi * i / 6)) for i in range(6)]
    )
    assert {s[1:] for s in seen} == {(0.0, (0.8, 0.9))}
    with pytest.raises(ValueError, match="latent_lr must be ≥ 0"):
        Phase(iterations=6, lr=1e-2, quantizer=q, latent_lr=-1.0)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        Phase(iterations=6, lr=1e-2, quantizer=q, betas=(0.9, 1.0))
    latents = list(result.model.latents.parameters())  # zero at the start, and still
    assert latents and all(torch.count_nonzero(p) == 0 for p in latents)
    (start,) = [r["loss"] for r in result.history if r["kind"] == "start"]
    assert result.stats["loss"] < start  # while the networks trained


def test_cool_chic_5_schedule_trains_networks_by_soap_and_latents_by_adam(monkeypatch):
    """The ``coolchic5`` schedule: SOAP with its preconditioners on the networks (weight
    decay 0.01), Adam on the latents (no preconditioner, no decay, their own betas), the
    gradient clip on the networks alone, and a final phase whose rounding leaves the latents
    where the main phase left them while the networks still learn."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from liclab.overfit.encode import Fitter
    from liclab.overfit.soap import SOAP

    plan = instantiate(
        OmegaConf.load(config_dir("eval") / "overfit" / "schedule" / "coolchic5.yaml")
    )
    plan = plan.scaled(40)
    seen, clipped = [], []
    step, phase = Fitter.step, Fitter.phase
    ends = []  # (name, latents, networks) as each phase ends

    def recording_step(self, q, opt):
        seen.append(opt)
        clipped.append({id(p) for p in self.clipped})
        return step(self, q, opt)

    def recording_phase(self, state, plan_, name):
        best = phase(self, state, plan_, name)
        latents = {k: v for k, v in best[1].items() if k.startswith("latents")}
        ends.append((name, latents, {k: v for k, v in best[1].items() if k not in latents}))
        return best

    monkeypatch.setattr(Fitter, "step", recording_step)
    monkeypatch.setattr(Fitter, "phase", recording_phase)
    result = fit(image(), tiny_at_size, 1e-3, plan, log_every=1000)
    opt = seen[-1]
    assert all(isinstance(o, SOAP) for o in seen)
    nets, latents = opt.param_groups
    assert nets["weight_decay"] == 0.01 and latents["weight_decay"] == 0.0
    assert latents["max_precond_dim"] == 0 and latents["betas"] == (0.9, 0.999)
    assert nets["betas"] == (0.95, 0.95) and nets["max_precond_dim"] > 0
    assert any(f is not None for p in nets["params"] for f in opt.state[p]["factors"])
    assert all(f is None for p in latents["params"] for f in opt.state[p]["factors"])
    assert clipped[-1] == {id(p) for p in nets["params"]}
    (main_name, main_lat, main_net), (final_name, final_lat, final_net) = ends[-2:]
    assert (main_name, final_name) == ("main", "final")
    assert all(torch.equal(main_lat[k], final_lat[k]) for k in main_lat)
    (start,) = [r["loss"] for r in result.history if r["kind"] == "start" and r["phase"] == "main"]
    assert result.stats["loss"] < start


@pytest.mark.parametrize("carry", [False, True])
def test_warmup_can_carry_the_arm_through_its_first_round(carry, monkeypatch):
    from liclab.overfit.encode import Fitter

    entered, left = [], []  # the first ARM layer's weights as each phase starts and ends
    phase = Fitter.phase

    def recording(self, state, plan, name):
        entered.append(state["arm.layers.0.weight"].clone())
        best = phase(self, state, plan, name)
        left.append(self.model.arm.layers[0].weight.detach().clone())
        return best

    monkeypatch.setattr(Fitter, "phase", recording)
    schedule = warmup_schedule([3, 2], main=2, validate_every=3)
    schedule.warmup.carry_arm = carry
    fit(image(), tiny_at_size, 1e-3, schedule, log_every=1000)
    assert len(entered) == 3 + 2 + 1
    for c in (1, 2):  # round one: the ARM as the candidate before left it, or a fresh one
        if carry:
            assert torch.equal(entered[c], left[c - 1])
        else:
            assert not entered[c].any()  # hidden layers start at zero
    assert left[0].any()


@pytest.mark.parametrize("path", OVERFIT_CONFIGS, ids=lambda p: p.stem)
def test_overfit_configs_instantiate(path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    obj = instantiate(OmegaConf.load(path))
    if isinstance(obj, Schedule):
        assert obj.iterations == 2000  # Cool-chic's --n_itr 2000 and C3's at that budget
        return
    model = obj(size=(512, 768))
    assert model.latents.levels == 7
    macs = model.macs_per_pixel()["total"]
    expected = {
        "coolchic_lop": (400, 700),
        "coolchic_hop": (1300, 1600),
        "coolchic5_hop": (1850, 2000),  # Cool-chic counts 1943 for its own
        "coolchic5_lop": (400, 550),  # Cool-chic calls its own ~500
        "c3": (1800, 2600),
    }
    low, high = expected[path.stem]
    assert low < macs < high
    small = obj(size=SIZE)
    assert small()["x_hat"].shape == (1, 3, *SIZE)


def _preset(name: str):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.load(config_dir("eval") / "overfit" / "model" / f"{name}.yaml"))


@pytest.mark.parametrize(
    "name", ["coolchic_lop", "coolchic_hop", "coolchic5_lop", "coolchic5_hop", "c3"]
)
def test_preset_models_own_their_networks_initialised_from_the_random_state(name):
    factory = _preset(name)
    models = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        models.append(factory(size=SIZE))
    a, b, again = models
    assert not any(p is q for p, q in zip(a.parameters(), b.parameters(), strict=True))
    arm = [dict(m.arm.named_parameters()) for m in models]
    assert all(torch.equal(arm[0][k], arm[2][k]) for k in arm[0])  # the seed decides
    assert any(not torch.equal(arm[0][k], arm[1][k]) for k in arm[0])  # and each has its own


def test_a_fit_is_reproduced_by_its_seed_whatever_came_before():
    schedule = warmup_schedule([2, 1], main=4, validate_every=2)
    results = []
    for disturb in (1, 5):
        torch.rand(disturb)  # the global random state differs between the two fits
        results.append(fit(image(), _preset("coolchic_lop"), 1e-3, schedule, seed=3, log_every=99))
    first, second = results
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]
    state = second.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in first.model.state_dict().items())


def test_fit_refuses_a_model_factory_that_shares_modules_between_models():
    arm = ARM(context=8, hidden_layers=1)  # one instance for every model: candidates would
    up = functools.partial(LearnedUpsampling, kernel_size=4)  # train the same ARM in turn
    syn = functools.partial(Synthesis, hidden=[8], residual_layers=1)
    schedule = Schedule(main=Phase(iterations=2, lr=1e-2, quantizer=STE()))
    with pytest.raises(ValueError, match="shared between its models"):
        fit(image(), lambda size: CoolChic(size, arm, up, syn), 1e-3, schedule)


def test_bilinear_upsampling_is_interpolation_to_full_size():
    y = [torch.randn(1, 1, 64 // 2**i, 96 // 2**i) for i in range(3)]
    out = BilinearUpsampling(levels=3)(y)
    assert torch.equal(out[:, 0:1], y[0])
    ref = F.interpolate(y[2], size=SIZE, mode="bilinear", align_corners=False)
    assert torch.equal(out[:, 2:3], ref)


def _layer_by_layer(residual, relu, x, *params):
    """The MLP of :func:`liclab.overfit.mlp.pointwise_mlp` as plain layers (weights, then
    biases, in ``params``)."""
    n, a = len(residual), x
    for w, b, res, act in zip(params[:n], params[n:], residual, relu, strict=True):
        a = a @ w.t() + b + (a if res else 0)
        a = a.relu() if act else a
    return a


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("columns", [False, True])
@pytest.mark.parametrize("narrow", [0, 8])
def test_pointwise_mlp_equals_the_layer_by_layer_network_with_its_gradients(
    monkeypatch, keep, columns, narrow
):
    """With the activations kept for the backward pass, and recomputed there (past
    KEEP_BYTES); on rows and on a transposed view of columns (the output and the input's
    gradient laid out as the input); with the products of fewer than 8 result columns
    computed transposed (NARROW = 8) and not (0)."""
    from liclab.overfit import mlp

    monkeypatch.setattr(mlp, "CHUNK", 16)  # several chunks and a ragged last one of 5 rows
    monkeypatch.setattr(mlp, "KEEP_BYTES", 2**20 if keep else 0)
    monkeypatch.setattr(mlp, "NARROW", narrow)
    transposed = []
    narrow_product = mlp._narrow

    def spy(*args):
        transposed.append(narrow_product(*args))
        return transposed[-1]

    monkeypatch.setattr(mlp, "_narrow", spy)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 5, generator=g, dtype=torch.float64)
    x = (x.t().contiguous().t() if columns else x).requires_grad_()
    shapes = [(5, 5), (3, 5), (2, 3)]
    weights = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    biases = [
        torch.randn(s[0], generator=g, dtype=torch.float64, requires_grad=True) for s in shapes
    ]
    residual, relu = [True, False, False], [True, True, False]
    reference = functools.partial(_layer_by_layer, residual, relu)

    out = mlp.pointwise_mlp(x, weights, biases, residual, relu)
    assert torch.allclose(out, reference(x, *weights, *biases))
    assert torch.autograd.gradcheck(
        lambda x, *p: mlp.pointwise_mlp(x, p[:3], p[3:], residual, relu), (x, *weights, *biases)
    )
    with torch.no_grad():  # nothing kept where no gradient will come
        assert torch.equal(mlp.pointwise_mlp(x, weights, biases, residual, relu), out.detach())
    calls = []
    forward_chunk = mlp._forward_chunk
    monkeypatch.setattr(mlp, "_forward_chunk", lambda *a: calls.append(1) or forward_chunk(*a))
    out = mlp.pointwise_mlp(x, weights, biases, residual, relu)
    out.sum().backward()
    assert len(calls) == (3 if keep else 6)  # 3 chunks forward, again backward if not kept
    assert out.stride() == ((1, 37) if columns else (2, 1))
    assert x.grad.stride() == x.stride()
    assert any(transposed) == (narrow == 8)  # every width here is narrow


def test_whole_model_gradients_match_finite_differences():
    """The custom backward passes (the ARM's context gather, its chunked MLP, the
    pre-concatenation filters) composed in the model: autograd against central differences
    of the rate-distortion loss, in float64, on coordinates of every parameter tensor."""
    torch.manual_seed(0)
    h, w = 20, 28
    model = CoolChic(
        (h, w),
        ARM(context=16, hidden_layers=2),
        functools.partial(LearnedUpsampling, kernel_size=8, preconcat=7),
        functools.partial(Synthesis, hidden=[12], residual_layers=2, init="coolchic"),
        levels=4,
    ).double()
    with torch.no_grad():  # away from the initial zeros, which hide mistakes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for grid in model.latents.grids:
            grid.copy_(torch.randn_like(grid) * 0.3)
    target = torch.rand(1, 3, h, w, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]

    def loss(params):
        state = dict(zip(names, params, strict=True))
        out = torch.func.functional_call(model, state, (lambda y, _: (y, y),))
        bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
        return ((out["x_hat"] - target) ** 2).mean() + 1e-3 * bits / (h * w)

    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    grads = torch.autograd.grad(loss(params), params)
    g = torch.Generator().manual_seed(1)
    eps = 1e-6
    for k, (p, grad) in enumerate(zip(params, grads, strict=True)):
        for i in torch.randperm(p.numel(), generator=g)[:4].tolist():
            shifted = [q.detach().clone() for q in params]
            shifted[k].view(-1)[i] += eps
            up = loss(shifted)
            shifted[k].view(-1)[i] -= 2 * eps
            numeric = (up - loss(shifted)) / (2 * eps)
            assert torch.isclose(grad.reshape(-1)[i], numeric, rtol=1e-5, atol=1e-9), names[k]


_FAULTS = """
import resource, sys, torch
from liclab.overfit.encode import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(4 << 20)  # 16 MB written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if not keep_freed_memory(False):
    sys.exit(3)
faults()
default = faults()
keep_freed_memory(True)
faults()
# the first blocks may land on fresh pages of the padded heap (64 MB, untouched yet)
kept = min(faults() for _ in range(12))  # before they settle on pages already touched
print(default, kept)
"""


def test_keep_freed_memory_spares_the_page_faults_of_reallocating():
    """A fit's iterations free and reallocate the same large tensors: kept, their pages are
    not faulted in again (glibc; elsewhere the function does nothing and says so). Measured
    in a fresh process: in this one, earlier tests' freed blocks may serve the allocation."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _FAULTS], capture_output=True, text=True, timeout=120, check=False
    )
    if run.returncode == 3:
        pytest.skip("the C library is not glibc")
    assert run.returncode == 0, run.stderr
    default, kept = map(int, run.stdout.split())
    if default < 1000:  # transparent huge pages for every mapping: nothing to spare
        pytest.skip(f"{default} page faults for 16 MB with glibc's defaults")
    assert kept < default / 20


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("columns", [False, True])
def test_mlp_kernel_equals_the_network_with_its_gradients(monkeypatch, threads, columns):
    """The C kernel's training passes (float32, eight rows per vector, a ragged tail, rows
    split between threads) against the layer-by-layer network in float64."""
    from liclab.overfit import mlp

    if mlp._kernel() is None:
        pytest.skip("liclab.overfit._mlp is not built here")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(0)
    rows, shapes = 8192 + 13, [(9, 9), (12, 9), (3, 12)]  # residual, ReLU; ReLU; linear
    x64 = torch.randn(rows, 9, generator=g, dtype=torch.float64)
    w64 = [torch.randn(s, generator=g, dtype=torch.float64) / s[1] ** 0.5 for s in shapes]
    b64 = [torch.randn(s[0], generator=g, dtype=torch.float64) for s in shapes]
    grad_out = torch.randn(rows, 3, generator=g, dtype=torch.float64)
    residual, relu = [True, False, False], [True, True, False]
    network = functools.partial(_layer_by_layer, residual, relu)
    leaves64 = [t.clone().requires_grad_() for t in (x64, *w64, *b64)]
    reference = network(*leaves64)
    expected = torch.autograd.grad(reference, leaves64, grad_out)
    x32 = x64.float().t().contiguous().t() if columns else x64.float()
    leaves = [x32.requires_grad_(), *(t.float().requires_grad_() for t in (*w64, *b64))]
    calls = []
    forward, backward = mlp._kernel_forward, mlp._kernel_backward
    monkeypatch.setattr(mlp, "_kernel_forward", lambda *a: calls.append("f") or forward(*a))
    monkeypatch.setattr(mlp, "_kernel_backward", lambda *a: calls.append("b") or backward(*a))
    out = mlp.pointwise_mlp(leaves[0], leaves[1:4], leaves[4:], residual, relu)
    grads = torch.autograd.grad(out, leaves, grad_out.float())
    assert calls == ["f", "b"] and len(mlp._row_ranges(rows)) == threads
    assert out.stride() == ((1, rows) if columns else (3, 1))
    assert torch.allclose(out.double(), reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max())
    assert grads[0].stride() == x32.stride()
    with torch.no_grad():  # no gradient to come (a decoder): PyTorch's products, as before
        calls.clear()
        mlp.pointwise_mlp(leaves[0], leaves[1:4], leaves[4:], residual, relu)
        assert not calls


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [(37, 53), (5, 7), (40, 16)])
def test_conv3x3_kernel_equals_pytorchs_convolution_with_its_gradients(monkeypatch, threads, size):
    """The synthesis's 3×3 residual layers through the C kernel (float32, eight columns per
    vector and a ragged tail, rows split between threads) against PyTorch's replicate-padded
    convolution in float64; the synthesis uses it where gradients are wanted, not without."""
    from liclab.overfit import mlp

    if mlp._kernel() is None:
        pytest.skip("liclab.overfit._mlp is not built here")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(0)
    leaves64 = [
        torch.randn(1, 3, *size, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True),
    ]
    x, w, b = leaves64
    reference = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, b)
    grad_out = torch.randn(reference.shape, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad(reference, leaves64, grad_out)
    leaves = [t.detach().float().requires_grad_() for t in leaves64]
    assert mlp.conv3x3_fits(leaves[0], [leaves[1]])
    assert len(mlp._conv_ranges(size[0])) == min(threads, max(1, size[0] // 16))
    out = mlp.conv3x3(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_out.float())
    assert torch.allclose(out.double(), reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max())
    # the synthesis: the kernel in training passes only, the same output either way
    syn = Synthesis(7, hidden=[12], residual_layers=2)
    with torch.no_grad():
        for conv in syn.residual:
            conv.weight.normal_(0, 0.2, generator=g)
    y = torch.randn(1, 7, *size, generator=g)
    calls = []
    monkeypatch.setattr(
        mlp, "_valid_conv3", lambda *a, f=mlp._valid_conv3: calls.append(1) or f(*a)
    )
    trained = syn(y)
    assert len(calls) == 2
    with torch.no_grad():
        plain = syn(y)
    assert len(calls) == 2 and torch.allclose(trained, plain, atol=1e-5)


def test_mlp_kernel_is_built_where_the_decoder_kernel_is():
    """Both C extensions build under the same conditions: one without the other is a
    packaging fault, not a missing compiler."""
    from liclab.overfit import mlp, wavefront

    assert (mlp._kernel() is not None) == (wavefront._wavefront is not None)


def test_cool_chic_5_lambda_rules_set_the_warm_up_noise_and_the_latents_gain(monkeypatch):
    """Cool-chic 5.0's λ rules: the warm-up's Gaussian σ = (0.747 − 0.432·log10 λ) / 10 and
    the gain 24 below λ = 2e-4, 20 below 5e-4, else 16; a fit uses them, and a warm start from
    another λ's fit keeps gain·y (what is rounded) by rescaling the latents."""
    from liclab.codecs.overfit import _regained
    from liclab.overfit.encode import Fitter

    noise = GaussianNoise(0.3, 0.3, lambda_rule=(0.0747, -0.0432))
    for lmbda in (4e-4, 1e-3, 2e-2):
        noise.set_lambda(lmbda)
        assert noise.std == pytest.approx((0.747 - 0.432 * math.log10(lmbda)) / 10)
    with pytest.raises(ValueError, match="σ = "):
        noise.set_lambda(1e3)
    model = _preset("coolchic5_hop")(size=SIZE)
    assert [model.gain_at(x) for x in (1e-4, 4e-4, 5e-4, 1e-3)] == [24.0, 20.0, None, None]
    seen = []  # (gain, σ) as each step runs
    step = Fitter.step

    def recording(self, q, opt):
        seen.append((self.model.latents.gains, q.noise.std))
        return step(self, q, opt)

    monkeypatch.setattr(Fitter, "step", recording)
    q = SoftRoundNoise(0.35, 0.35, GaussianNoise(0.1, 0.1, lambda_rule=(0.0747, -0.0432)))
    plan = Schedule(main=Phase(iterations=2, lr=1e-2, quantizer=q))
    fit(image(), _preset("coolchic5_hop"), 4e-4, plan, log_every=1000)
    gains, std = seen[-1]
    assert set(gains) == {20.0} and len(gains) == len(model.latents.shapes)
    assert std == pytest.approx(0.0747 - 0.0432 * math.log10(4e-4))
    state = {"latents.grids.0": torch.ones(2), "arm.layers.0.bias": torch.ones(2)}
    moved = _regained(state, model, 1e-3, 4e-4)  # gain 16 → 20: y scaled by 16 / 20
    assert torch.allclose(moved["latents.grids.0"], torch.full((2,), 0.8))
    assert torch.equal(moved["arm.layers.0.bias"], state["arm.layers.0.bias"])
    assert _regained(state, model, 1e-3, 4e-3) is state
