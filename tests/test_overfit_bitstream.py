"""The overfitted codec's bitstream: exact decoding, parameter coding, rates, bad files."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from liclab import LiclabError
from liclab.bitstream import Bitstream, pack, unpack
from liclab.codecs.overfit import OverfitCodec
from liclab.configs import config_dir
from liclab.overfit import coding, exact, laplace, params
from liclab.overfit.arm import ARM, LOG_SCALE_RANGE, bits
from liclab.overfit.encode import Phase, Schedule, fit
from liclab.overfit.model import CoolChic
from liclab.overfit.synthesis import Synthesis
from liclab.overfit.upsampling import BilinearUpsampling, LearnedUpsampling, upsample2
from liclab.overfit.wavefront import Wavefront
from liclab.quantizers import STE, GaussianNoise, SoftRoundNoise

from conftest import smooth_image

SIZE = (64, 96)
LMBDA = 1e-3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (and on a busy machine, ~50×
    the time); the subprocess test decodes with another thread count on purpose."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(kind: str = "coolchic") -> CoolChic:
    """Cool-chic-like (learned upsampling with pre-concatenation filters, ReLU; "coolchic-4"
    without the filters, "coolchic-zeros" with them zero-padded, "coolchic-5" with Cool-chic
    5's stabilisers, inter-grid features and hyperlatents) or C3-like (bilinear, GELU, coarse
    context)."""
    if kind.startswith("coolchic"):
        preconcat = 0 if kind == "coolchic-4" else 7
        padding = "zeros" if kind == "coolchic-zeros" else "replicate"
        up = functools.partial(
            LearnedUpsampling, kernel_size=8, preconcat=preconcat, preconcat_padding=padding
        )
        five = kind == "coolchic-5"
        syn = {"init": "coolchic", "stabiliser": five}
        arm = ARM(context=14 if five else 24, hidden_layers=2, stabiliser=five, features=6 * five)
    else:
        up, syn = BilinearUpsampling, {"activation": torch.nn.GELU()}
        arm = ARM(context=8, hidden_layers=1, coarse=4)
    synthesis = functools.partial(Synthesis, hidden=[12, 8], residual_layers=2, **syn)
    return CoolChic(SIZE, arm, up, synthesis, hyperlatents=2 if kind == "coolchic-5" else 0)


def image() -> torch.Tensor:
    return torch.from_numpy(smooth_image(*SIZE)).permute(2, 0, 1).float()[None] / 255


SCHEDULE = Schedule(
    main=Phase(25, 1e-2, SoftRoundNoise(noise=GaussianNoise())),
    final=Phase(5, 1e-4, STE()),
    validate_every=10,
)


@functools.cache
def fitted(kind: str):
    """(model with quantised networks, groups, encoded file, float PSNR) of a brief fit."""
    torch.manual_seed(0)
    model = fit(image(), lambda size: tiny(kind), LMBDA, SCHEDULE, log_every=1000).model
    float_psnr = _psnr(model()["x_hat"], image())
    groups, _ = params.search(model, image(), LMBDA, model.rounded_latents())
    return model, groups, coding.encode(model, groups), float_psnr


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    x8 = torch.round(x_hat.detach().clamp(0, 1) * 255)
    return float(10 * torch.log10(255**2 / torch.mean((x8 - torch.round(x * 255)) ** 2)))


@pytest.mark.parametrize("kind", ["coolchic", "coolchic-4", "coolchic-zeros", "coolchic-5", "c3"])
def test_the_decoder_returns_exactly_the_encoders_reconstruction(kind):
    model, _, encoded, float_psnr = fitted(kind)
    decoded = coding.decode(encoded.data, "x.lic")
    assert np.array_equal(decoded, encoded.image)
    arch = coding.Architecture.of(model)  # the file names the pre-concatenation padding
    assert arch.preconcat_zeros == (kind == "coolchic-zeros")
    assert arch.synthesis_stabiliser == (kind == "coolchic-5")
    assert coding.Architecture.parse(tuple(arch.ints()))[0] == arch
    # the exact arithmetic is the quantised float network's, to ~1e-4 of a pixel level
    with torch.no_grad():
        x_hat = model()["x_hat"]  # eval forward: quantised networks, rounded latents
    reference = torch.round(x_hat[0].clamp(0, 1) * 255).permute(1, 2, 0).byte().numpy()
    diff = np.abs(decoded.astype(int) - reference)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # and quantising the networks cost little
    assert _psnr(torch.from_numpy(decoded).permute(2, 0, 1)[None] / 255.0, image()) > (
        float_psnr - 0.2
    )


@pytest.mark.parametrize("kind", ["coolchic", "coolchic-5", "c3"])
def test_real_bytes_are_within_two_percent_of_the_estimate_per_part(kind):
    model, _, encoded, _ = fitted(kind)
    for part, est in encoded.bits.items():  # ideal code lengths under the coding tables
        assert abs(8 * encoded.bytes[part] - est) <= 0.02 * est + 64, part
    # the latents against the float Laplace of the model with quantised networks
    with torch.no_grad():
        out = model()
    estimate = sum(float(bits(p)) for p in out["likelihoods"].values())
    assert abs(8 * encoded.bytes["latents"] - estimate) <= 0.02 * estimate + 64
    assert sum(encoded.bytes.values()) == len(encoded.data)
    assert encoded.bytes["header"] < 70


def test_network_parameter_coding_round_trips_exactly():
    rng = np.random.default_rng(0)
    groups = params.groups(tiny())
    spreads = [0.0, 0.3, 3.0, 40.0, 3000.0, 1e5]  # zeros, small, escapes, raw low bits
    for i, g in enumerate(groups):
        ints = np.round(rng.laplace(0, spreads[i % len(spreads)], g.size)).astype(np.int64)
        ints[: min(3, g.size)] = [7, -(2**20), 2**20][: min(3, g.size)]  # far outliers
        g.ints = ints
        g.exponent = i
        g.scale, g.raw, _ = params.coding(ints)
    data = params.encode(groups)
    fresh = params.groups(tiny())
    for g, f in zip(groups, fresh, strict=True):
        f.exponent, f.scale, f.raw = g.exponent, g.scale, g.raw
    params.decode(data, fresh)
    assert all(np.array_equal(g.ints, f.ints) for g, f in zip(groups, fresh, strict=True))
    est = sum(params.bits(g) for g in groups)
    assert abs(8 * len(data) - est) <= 0.02 * est + 64
    assert any(g.raw > 0 for g in groups)


@pytest.mark.parametrize("kind", ["coolchic", "coolchic-5"])
def test_a_fresh_process_with_other_thread_counts_decodes_identically(tmp_path, kind):
    _, _, encoded, _ = fitted(kind)
    path = tmp_path / "x.lic"
    path.write_bytes(encoded.data)
    threads = 3 if torch.get_num_threads() != 3 else 1
    code = (
        "import hashlib, sys, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from liclab.overfit import coding\n"
        f"image = coding.decode(open({str(path)!r}, 'rb').read())\n"
        "print(hashlib.sha256(image.tobytes()).hexdigest())\n"
    )
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split()[-1] == hashlib.sha256(encoded.image.tobytes()).hexdigest()


def _one_line_error(data: bytes, match: str) -> None:
    with pytest.raises(LiclabError, match=match) as info:
        coding.decode(data, "kodim01.lic")
    message = str(info.value)
    assert message.startswith("kodim01.lic: ") and "\n" not in message


def test_corrupt_truncated_and_foreign_files_give_one_line_naming_the_file():
    _, _, encoded, _ = fitted("coolchic")
    data = encoded.data
    _one_line_error(data[:-7], "CRC|truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    _one_line_error(bytes(flipped), "CRC")
    bs = unpack(data)
    other = pack(Bitstream("ScaleHyperprior", bs.model_hash, bs.size, bs.shape, bs.strings))
    _one_line_error(other, "ScaleHyperprior")
    # CRC-valid files with a wrong descriptor, a damaged string, a missing part
    for shape, strings in [
        ((99, *bs.shape[1:]), bs.strings),
        (bs.shape[:-3], bs.strings),
        (bs.shape, [*bs.strings[:-1], bs.strings[-1][: len(bs.strings[-1]) // 2]]),
        (bs.shape, [*bs.strings[:-2], b"\x01\x02\x03\x04", bs.strings[-1]]),
        (bs.shape, bs.strings[:-1]),
    ]:
        damaged = pack(Bitstream(bs.model_id, bs.model_hash, bs.size, shape, strings))
        _one_line_error(damaged, "corrupt|differs")
    _one_line_error(b"\x89LIC", "truncated")
    _one_line_error(b"not a file at all", "not a liclab bitstream")


def randomised_arm(context: int = 24, hidden: int = 2, coarse: int = 0, seed: int = 0):
    """A float ARM with dyadic weights (steps 2^−7, biases 2^−10) and the same ARM exactly."""
    g = torch.Generator().manual_seed(seed)
    arm = ARM(context, hidden, coarse)
    with torch.no_grad():
        for name, p in arm.named_parameters():
            step = 2.0**-10 if name.endswith("bias") else 2.0**-7
            p.copy_(torch.round(torch.randn(p.shape, generator=g) * 0.1 / step) * step)
    weights = [layer.weight.detach().double().numpy() for layer in arm.layers]
    biases = [layer.bias.detach().double().numpy() for layer in arm.layers]
    return arm, exact.ExactARM(weights, biases)


FEATURE_SHAPES = [(16, 24), (8, 12), (4, 6), (8, 12), (4, 6)]  # 3 grids, 2 hyperlatent grids
FEATURE_RESOLUTIONS = [0, 1, 2, 1, 2]


def feature_arm(context: int = 8, seed: int = 0, rounding=None):
    """Cool-chic 5's ARM (stabiliser, 4 inter-grid features on the finest 2 of 3 grids, 2
    hyperlatent grids) with dyadic weights, the same ARM exactly (its feature maps folded into
    the first product) and its wavefront."""
    g = torch.Generator().manual_seed(seed)
    arm = ARM(context, 2, stabiliser=True, features=4)
    arm.attach(3, FEATURE_RESOLUTIONS)
    with torch.no_grad():
        for name, p in arm.named_parameters():
            step = 2.0**-10 if name.endswith("bias") else 2.0**-7
            p.copy_(torch.round(torch.randn(p.shape, generator=g) * 0.1 / step) * step)

    def np_(t):
        return t.detach().double().numpy()

    maps = [(np_(m.weight), np_(m.bias)) for m in arm.ifce]
    exact_arm = exact.ExactARM(
        [np_(layer.weight) for layer in arm.layers],
        [np_(layer.bias) for layer in arm.layers],
        rounding,
        (np_(arm.stabiliser.weight), np_(arm.stabiliser.bias)),
        exact.feature_fold(context, maps),
    )
    wavefront = Wavefront(
        FEATURE_SHAPES,
        context,
        levels=3,
        resolutions=FEATURE_RESOLUTIONS,
        feature_inputs=[arm.coarser(i) for i in range(len(arm.ifce))],
    )
    return arm, exact_arm, wavefront


def random_latents(shapes, seed: int = 0, spread: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.round(rng.laplace(0, spread * (1 + i), s)) for i, s in enumerate(shapes)]


def test_the_integer_arm_equals_the_float_arm_within_two_to_the_minus_ten():
    arm, exact_arm = randomised_arm(coarse=4)
    shapes = [(16, 24), (8, 12)]
    y = random_latents(shapes)
    ctx = arm.contexts(
        torch.from_numpy(y[0])[None, None].float(), torch.from_numpy(y[1])[None, None].float()
    )
    with torch.no_grad():
        mu, scale = arm.mlp(ctx)
    o = exact_arm(np.concatenate([np.ones((len(ctx), 1)), ctx.double().numpy()], axis=1))
    mu_exact = (o[:, 0] - laplace.MU_OFFSET) / laplace.MU_STEPS
    log_scale = (o[:, 1] - laplace.SCALE_ORIGIN) / laplace.SCALE_STEPS
    inside = (log_scale > LOG_SCALE_RANGE[0]) & (log_scale < LOG_SCALE_RANGE[1])
    assert np.abs(mu_exact - mu.double().numpy()).max() < 2.0**-10
    assert np.abs(log_scale - np.log(scale.double().numpy()))[inside].max() < 2.0**-10
    assert inside.mean() > 0.5


def test_the_folded_arm_with_features_and_stabiliser_equals_the_float_arm():
    """Inter-grid features folded into the first product, the stabiliser a second product:
    the exact ARM's outputs are the float ARM's (features from the coarser grids and the
    hyperlatents, zeros on the coarsest grid and the hyperlatents) within 2^-10."""
    arm, exact_arm, wavefront = feature_arm()
    y = random_latents(FEATURE_SHAPES, seed=2)
    with torch.no_grad():
        params = arm([torch.from_numpy(a)[None, None].float() for a in y])
    mu = torch.cat([m.reshape(-1) for m, _ in params]).double().numpy()[wavefront.order]
    scale = torch.cat([s.reshape(-1) for _, s in params]).double().numpy()[wavefront.order]
    canvas = wavefront.canvas(y)
    o = exact_arm(wavefront.contexts(canvas, 0, len(wavefront.pos)), verify=True)
    mu_exact = (o[:, 0] - laplace.MU_OFFSET) / laplace.MU_STEPS
    log_scale = (o[:, 1] - laplace.SCALE_ORIGIN) / laplace.SCALE_STEPS
    inside = (log_scale > LOG_SCALE_RANGE[0]) & (log_scale < LOG_SCALE_RANGE[1])
    assert np.abs(mu_exact - mu).max() < 2.0**-10
    assert np.abs(log_scale - np.log(scale))[inside].max() < 2.0**-10
    assert inside.mean() > 0.5
    # the features matter: without them (zero maps) the outputs of the finest grid change
    with torch.no_grad():
        for m in arm.ifce:
            m.weight.zero_()
            m.bias.zero_()
        plain = arm([torch.from_numpy(a)[None, None].float() for a in y])
    assert not torch.allclose(plain[0][0], params[0][0])
    assert torch.equal(plain[2][0], params[2][0])  # the coarsest grid has none


@pytest.mark.parametrize("coarse", [0, 4, "features"])
def test_a_later_latent_never_changes_an_earlier_ones_coding_distribution(coarse):
    if coarse == "features":
        _, exact_arm, wavefront = feature_arm()
        shapes = FEATURE_SHAPES
    else:
        _, exact_arm = randomised_arm(context=24 if not coarse else 8, coarse=coarse)
        shapes = [(16, 24), (8, 12), (4, 6)]
        wavefront = Wavefront(shapes, 24 if not coarse else 8, coarse)
    y = random_latents(shapes)
    before = wavefront.parameters(y, exact_arm)
    rank = np.empty_like(wavefront.order)
    rank[wavefront.order] = np.arange(len(rank))  # decoding position of every latent
    perturbed = [(0, 8 * 24 + 11), (1, 4 * 12 + 5)] + [(3, 4 * 12 + 5)] * (coarse == "features")
    for level, pos in perturbed:  # (3: a hyperlatent, which reaches the finer grids' features)
        first = sum(h * w for h, w in shapes[:level])  # the grid's first latent
        changed = [a.copy() for a in y]
        changed[level].reshape(-1)[pos] += 9
        after = wavefront.parameters(changed, exact_arm)
        moved = (before[0] != after[0]) | (before[1] != after[1])  # in decoding order
        assert not moved[: rank[first + pos] + 1].any()  # nothing decoded before it, nor it
        assert moved.any()
        same_grid = wavefront.order[moved] - first
        same_grid = same_grid[(same_grid >= 0) & (same_grid < len(y[level].reshape(-1)))]
        assert (same_grid > pos).all()  # in raster order too


@pytest.mark.parametrize(
    ("context", "coarse"), [(24, 0), (8, 4), (1, 0), (12, 9), (14, "features")]
)
def test_every_context_value_is_decoded_at_an_earlier_wavefront_step(context, coarse):
    shapes = [(9, 13), (5, 7), (3, 4)]
    if coarse == "features":  # and two hyperlatent grids
        arm = ARM(context, 1, features=2)
        arm.attach(3, [0, 1, 2, 1, 2])
        inputs = [arm.coarser(g) for g in range(len(arm.ifce))]
        assert inputs == [[(1, 1), (2, 2), (3, 1), (4, 2)], [(2, 1), (4, 1)]]
        wavefront = Wavefront(
            [*shapes, (5, 7), (3, 4)], context, 0, 3, [0, 1, 2, 1, 2], feature_inputs=inputs
        )
    else:
        wavefront = Wavefront(shapes, context, coarse)
    step = np.empty(len(wavefront.order), dtype=np.int64)
    step[wavefront.order] = np.repeat(np.arange(wavefront.steps), np.diff(wavefront.bounds))
    canvas_step = np.full(wavefront.size, -1)
    canvas_step[wavefront.pos] = step[wavefront.order]
    for i in range(wavefront.steps):
        start, stop = wavefront.bounds[i], wavefront.bounds[i + 1]
        ctx = wavefront.contexts(canvas_step.astype(np.float64), start, stop)
        assert (ctx < i).all()  # margins read −1, decoded neighbours an earlier step
    assert wavefront.steps == 13 + wavefront.k * 8 + (2 * (wavefront.k + 2) if coarse else 0)


@pytest.mark.parametrize("step", ["c", "numpy"])
@pytest.mark.parametrize(
    ("context", "coarse", "rounding"),
    [(24, 0, None), (8, 4, None), (8, 0, 12), (8, "features", None), (8, "features", 12)],
)
def test_wavefront_coding_round_trips_with_escapes(context, coarse, rounding, step, monkeypatch):
    """Both implementations of a decoding step (the C extension, numpy) read what the
    encoder (numpy, one pass) wrote."""
    from liclab.overfit import wavefront as module

    if step == "numpy":
        monkeypatch.setattr(module, "_wavefront", None)
    else:
        assert module._wavefront is not None, "liclab.overfit._wavefront was not built"
    if coarse == "features":  # Cool-chic 5's: features, stabiliser, hyperlatents
        _, exact_arm, wavefront = feature_arm(context, rounding=rounding)
        shapes = FEATURE_SHAPES
    else:
        arm, _ = randomised_arm(context=context, hidden=2 if context == 24 else 1, coarse=coarse)
        weights = [layer.weight.detach().double().numpy() for layer in arm.layers]
        biases = [layer.bias.detach().double().numpy() for layer in arm.layers]
        exact_arm = exact.ExactARM(weights, biases, rounding)
        shapes = [(12, 20), (6, 10), (3, 5)]
        wavefront = Wavefront(shapes, context, coarse)
    y = random_latents(shapes, spread=3.0)
    y[0][2, 3], y[0][5, 5], y[1][1, 1], y[2][0, 0] = 5000, 40, -70000, 3  # past the tables
    data = wavefront.encode(y, exact_arm)
    decoded = wavefront.decode(data, exact_arm)
    assert all(np.array_equal(a, b) for a, b in zip(y, decoded, strict=True))
    mq, s = wavefront.parameters(y, exact_arm)
    est = laplace.bits(wavefront.symbols(y), mq, s)
    assert abs(8 * len(data) - est) <= 0.02 * est + 64


@pytest.mark.parametrize(
    ("context", "coarse", "rounding"),
    [(24, 0, None), (8, 4, None), (8, 0, 12), (3, 0, None), (14, "features", None)],
)
def test_the_c_step_gives_every_latent_the_numpy_arms_distribution(context, coarse, rounding):
    from liclab.overfit import wavefront as module

    assert module._wavefront is not None, "liclab.overfit._wavefront was not built"
    if coarse == "features":
        _, exact_arm, wavefront = feature_arm(context, seed=3, rounding=rounding)
        shapes = FEATURE_SHAPES
    else:
        arm, _ = randomised_arm(context=context, hidden=2, coarse=coarse, seed=3)
        weights = [layer.weight.detach().double().numpy() for layer in arm.layers]
        biases = [layer.bias.detach().double().numpy() for layer in arm.layers]
        exact_arm = exact.ExactARM(weights, biases, rounding)
        shapes = [(13, 21), (7, 11), (4, 6)]
        wavefront = Wavefront(shapes, context, coarse)
    y = random_latents(shapes, seed=4, spread=3.0)
    mq, s = wavefront.parameters(y, exact_arm)
    bank = laplace.window_bank()
    stepper, table, lo, scale = wavefront.c_stepper(wavefront.canvas(y), exact_arm)
    got_lo, got_s, got_rows = [], [], []
    for i in range(wavefront.steps):
        n = stepper.prepare(i)
        got_lo.append(lo[:n].copy())
        got_s.append(scale[:n].copy())
        got_rows.append(table[:n].copy())
    assert np.array_equal(np.concatenate(got_s), s)
    assert np.array_equal(np.concatenate(got_lo), mq >> laplace.MU_BITS)
    key = (s << laplace.MU_BITS) + (mq & (laplace.MU_STEPS - 1))
    assert np.array_equal(np.concatenate(got_rows), bank[key])
    assert len(np.unique(s)) > 10  # the ARM spreads its scales: the test sees many rows
    with pytest.raises(IndexError):
        stepper.prepare(wavefront.steps)


def test_the_c_step_refuses_feature_inputs_outside_the_canvas_grids():
    _, exact_arm, wavefront = feature_arm(14, seed=3, rounding=None)
    canvas = wavefront.canvas(random_latents(FEATURE_SHAPES, seed=4, spread=3.0))
    wavefront.c_stepper(canvas, exact_arm)  # as built: accepted
    wavefront.feature_inputs[0] = [(len(FEATURE_SHAPES), 1)]  # a grid that does not exist
    with pytest.raises(ValueError, match="inconsistent feature inputs"):
        wavefront.c_stepper(canvas, exact_arm)


def test_laplace_tables_do_not_depend_on_the_last_bits_of_exp():
    scales = np.arange(laplace.NUM_SCALES)
    s = np.repeat(scales, laplace.MU_STEPS)
    m = np.tile(np.arange(-laplace.MU_STEPS // 2, laplace.MU_STEPS // 2), len(scales))
    tails = {c: laplace.tail_bank(c) for c in np.unique(laplace.CLASSES).tolist()}
    for factor in (1 + 2.0**-49, 1 - 2.0**-49):  # off by a few ulps wherever e^x is inexact

        def exp(x, f=factor):
            return np.where(x == 0, 1.0, np.exp(x) * f)

        assert np.array_equal(laplace.window_table(s, m, exp) / 2**16, laplace.window_bank())
        for cls, (_, probs) in tails.items():
            scales = np.flatnonzero(laplace.CLASSES == cls)
            assert np.array_equal(laplace.tail_table(scales, cls, exp) / 2**16, probs), cls
    for probs in [laplace.window_bank(), *(p for _, p in tails.values())]:
        assert (probs > 0).all() and (probs.sum(1) == 1).all()


def test_gelu_table_entries_are_far_from_rounding_ties_and_vanish_at_its_ends():
    top = exact.GELU_RANGE << exact.SYN_BITS
    x = torch.arange(-top, top + 1, dtype=torch.float64) * 2.0**-exact.SYN_BITS
    scaled = x * 0.5 * (1 + torch.erf(x / 2**0.5)) * 2**exact.SYN_BITS
    distance = (scaled - scaled.floor() - 0.5).abs()
    assert distance.min() > 1e-7  # float64 erf errors are ~1e-16 relative, < 1e-11 here
    table = exact.gelu_table()
    assert table[0] == 0 and table[-1] == 0 and table.abs().max() < 0.2 * 2**exact.SYN_BITS
    # beyond the table GELU rounds to ReLU: what the clamped lookup gives
    far = torch.tensor([-40.0, -8.0, -5.0, 5.0, 8.0, 40.0], dtype=torch.float64)
    gelu = far * 0.5 * (1 + torch.erf(far / 2**0.5))
    h = far * 2**exact.SYN_BITS
    assert torch.equal(exact.gelu(h.clone()), torch.round(gelu * 2**exact.SYN_BITS))


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_exact_upsampling_equals_the_models_on_dyadic_values(padding):
    g = torch.Generator().manual_seed(0)
    y = [
        torch.randint(-9, 9, (1, 1, -(-13 // 2**i), -(-21 // 2**i)), generator=g).double()
        for i in range(3)
    ]
    learned = LearnedUpsampling(3, kernel_size=8, preconcat=7, preconcat_padding=padding)
    learned = learned.double()
    zeros = padding == "zeros"
    with torch.no_grad():
        for k in learned.kernels:  # three fraction bits: nothing to round on the 2^-12 grid
            k.copy_(torch.round(k * 8) / 8)
        for f in learned.filters:
            f.copy_(torch.randint(-4, 5, f.shape, generator=g) / 8)
    kernels = [k.detach() for k in learned.kernels]
    filters = [f.detach() for f in learned.filters]
    size = tuple(y[0].shape[-2:])
    up = exact.upsampled(y[1:], size, kernels, filters=filters, zeros=zeros)
    assert torch.equal(up, learned(y)[:, 1:])
    y0 = exact.prefiltered(y[0], filters[0], zeros=zeros) / 2**exact.UP_BITS
    assert torch.equal(y0, learned(y)[:, :1])
    # a band of rows is what the whole grid gives there (the decoder works band by band)
    for a, b in [(4, 9), (0, 2), (10, 13)]:
        band = exact.prefiltered(y[0][0, 0], filters[0], a, b, zeros=zeros) / 2**exact.UP_BITS
        assert torch.equal(band, y0[0, 0, a:b])
    learned.preconcat = 0
    assert torch.equal(exact.upsampled(y[1:], size, kernels), learned(y)[:, 1:])
    assert torch.equal(exact.upsample2(y[1].clone(), kernels[0]), upsample2(y[1], kernels[0]))
    reference = BilinearUpsampling(levels=3)(y)[:, 1:]
    assert (exact.upsampled(y[1:], size, None) - reference).abs().max() < 2e-3


@pytest.mark.parametrize(("preconcat", "zeros"), [(7, False), (7, True), (0, False)])
@pytest.mark.parametrize("size", [(37, 53), (64, 96), (9, 5)])
def test_upsampling_row_by_row_reads_only_decoded_rows_and_equals_the_whole_pass(
    size, preconcat, zeros
):
    """The decoder's worker upsamples rows while the grids decode (rows of every grid arriving
    in order, at their own pace): rows not decoded yet hold NaN here, so a premature read
    would show."""
    g = torch.Generator().manual_seed(1)
    levels = 4
    shapes = [(-(-size[0] // 2**i), -(-size[1] // 2**i)) for i in range(levels)]
    y = [torch.randint(-9, 9, s, generator=g).double() for s in shapes]
    learned = LearnedUpsampling(levels=levels, kernel_size=8, preconcat=preconcat).double()
    kernels = [torch.round(k.detach() * 64) / 64 for k in learned.kernels]
    filters = [torch.randint(-4, 5, (4,), generator=g) / 8 for _ in range(levels - 1)]
    filters = filters if preconcat else None
    coarse = [t[None, None] for t in y[1:]]
    whole = exact.upsampled(coarse, size, kernels, filters=filters, zeros=zeros)[0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        grids = [torch.full(s, float("nan"), dtype=torch.float64) for s in shapes]
        stream = exact.UpsamplingStream(grids, kernels, filters, zeros)
        decoded = [0] * levels
        while stream.done < size[0]:
            for level, (h, _) in enumerate(shapes):
                new = min(h, decoded[level] + int(rng.integers(0, 4)))
                grids[level][decoded[level] : new] = y[level][decoded[level] : new]
                decoded[level] = new
            before = stream.done
            stream.advance(decoded)
            assert not stream.rows(0, stream.done).isnan().any()
            assert torch.equal(stream.rows(before, stream.done), whole[:, before : stream.done])


@pytest.mark.parametrize(
    ("size", "levels", "kind"),
    [((37, 53), None, "coolchic"), ((37, 53), None, "c3"), ((12, 20), 1, "coolchic")],
)
def test_odd_sizes_and_a_single_grid_decode_exactly(size, levels, kind):
    model = tiny(kind)
    model = CoolChic(
        size,
        model.arm,
        functools.partial(
            type(model.upsampling),
            **({"kernel_size": 8, "preconcat": 7} if kind == "coolchic" else {}),
        ),
        functools.partial(
            Synthesis, hidden=[12, 8], residual_layers=2, activation=model.synthesis.activation
        ),
        levels=levels,
    )
    encoded = randomised_round_trip(model, seed=1)
    assert encoded.image.shape == (*size, 3)


def randomised_round_trip(model: CoolChic, seed: int) -> coding.Encoded:
    """Perturb every network weight and latent of ``model`` at random, code it for a random
    image, and check that the decoder rebuilds the encoder's reconstruction exactly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
        for y in model.latents.grids:
            y.copy_(torch.randn(y.shape, generator=g) / 4)
    x = torch.rand(1, 3, *model.latents.size, generator=g)
    groups, _ = params.search(model.eval(), x, LMBDA, model.rounded_latents())
    encoded = coding.encode(model, groups)
    assert np.array_equal(coding.decode(encoded.data), encoded.image)
    return encoded


@pytest.mark.parametrize("name", ["coolchic5_lop", "coolchic5_hop"])
def test_the_cool_chic_5_presets_decode_exactly_as_configured(name):
    """Cool-chic 5.0's presets as their configs build them (inter-grid features on 3 grids,
    3 hyperlatent grids, stabilisers; the lop's single residual layer and 8-wide ARM), with
    random weights and latents: the decoder rebuilds the encoder's image exactly."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = config_dir("eval") / "overfit" / "model" / f"{name}.yaml"
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(path))(size=SIZE)
    assert len(model.latents.twins) == 3 and model.arm.features
    randomised_round_trip(model, seed=2)


def test_the_codec_is_picklable_and_writes_a_self_contained_file():
    codec = OverfitCodec("coolchic_lop", "c3", LMBDA)
    codec.schedule["main"]["iterations"], codec.schedule["final"]["iterations"] = 8, 2
    clone = pickle.loads(pickle.dumps(codec))
    assert clone.version() == codec.version()
    from hydra.utils import instantiate

    config = {
        "_target_": "liclab.codecs.overfit.OverfitCodec",
        "_recursive_": False,
        "model": codec.model,
        "schedule": codec.schedule,
        "lmbda": LMBDA,
    }
    assert instantiate(config).version() == codec.version()
    with pytest.raises(LiclabError, match="no_such_preset"):
        OverfitCodec("no_such_preset", "c3", LMBDA)
    assert OverfitCodec(codec.model, codec.schedule, 4e-3).version() != codec.version()
    img = smooth_image(*SIZE)
    data = codec.encode(img)
    decoded = OverfitCodec("c3", "c3", 2e-2).decode(data)  # any codec
    assert decoded.shape == img.shape and decoded.dtype == np.uint8
    details = codec.details(img, data)
    parts = ["header", "arm", "upsampling", "synthesis", "latents"]
    assert sum(details[f"bytes_{p}"] for p in parts) == len(data)
    assert {"est_bpp", "est_bits_latents", "est_bits_arm", "quantize_s"} <= details.keys()
    assert details["bpp_latents"] == 8 * details["bytes_latents"] / (SIZE[0] * SIZE[1])
    assert clone.details(img, data) == {f"bytes_{p}": details[f"bytes_{p}"] for p in parts}
    decoded_psnr = 10 * np.log10(255**2 / np.mean((decoded.astype(float) - img) ** 2))
    assert abs(decoded_psnr - details["fit_psnr"]) < 0.5


def test_a_model_config_with_an_arm_instance_gets_one_arm_per_candidate_like_the_presets():
    codec = OverfitCodec("coolchic_lop", "coolchic", LMBDA, iterations=12)
    arm = {k: v for k, v in codec.model["arm"].items() if k != "_partial_"}
    shared = dict(codec.model, arm=arm)
    assert "_partial_" in codec.model["arm"] and "_partial_" not in shared["arm"]
    img = smooth_image(*SIZE)
    # an older config (the ARM an instance) encodes, and as the preset does: own seeded ARMs
    assert OverfitCodec(shared, "coolchic", LMBDA, iterations=12).encode(img) == codec.encode(img)


def test_the_command_line_encodes_with_a_codec_config_and_decodes_without_a_checkpoint(
    tmp_path, capsys
):
    from liclab.cli import codec as cli
    from liclab.images import load_rgb, save_rgb

    img = smooth_image(*SIZE)
    save_rgb(img, tmp_path / "x.png")
    lic, png = tmp_path / "x.lic", tmp_path / "y.png"
    cli.compress_main(
        [str(tmp_path / "x.png"), "-o", str(lic), "codec=coolchic_lop", "lmbda=2e-2",
         "iterations=8"]
    )  # fmt: skip
    assert f"{lic}: {lic.stat().st_size} bytes" in capsys.readouterr().out
    cli.decompress_main([str(lic), "-o", str(png)])  # no --ckpt
    decoded, _ = load_rgb(png)
    assert np.array_equal(decoded, coding.decode(lic.read_bytes()))
    assert decoded.shape == img.shape
    # a bad argument, an anchor codec, or neither a checkpoint nor a codec: one line, exit 2
    for args in (["codec=coolchic_lop", "lmbda=abc"], ["codec=jpeg"], [], ["codec=nope"]):
        with pytest.raises(SystemExit) as exc:
            cli.compress_main([str(tmp_path / "x.png"), "-o", str(tmp_path / "z.lic"), *args])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[1].startswith("liclab: "), err  # the banner, the reason
    assert not (tmp_path / "z.lic").exists()


def test_a_schedule_file_that_cannot_be_built_is_one_line_naming_it(tmp_path, capsys):
    """A schedule YAML with a bad value fails when the codec is made (before any fit), as
    one line naming the file and the reason: from the codec, liclab-eval's operating points
    and liclab-compress."""
    from omegaconf import OmegaConf

    from liclab.cli import codec as cli
    from liclab.configs import config_dir
    from liclab.evaluate import codecs_at_points
    from liclab.images import save_rgb

    schedule = OmegaConf.load(config_dir("eval") / "overfit" / "schedule" / "coolchic.yaml")
    bad = {
        "hold": (0, "hold ≥ 1"),
        "latent_lr": (-1.0, "latent_lr must be ≥ 0"),
        "optimizer": ("sgd", "optimizer is 'adam' or 'soap'"),
    }
    save_rgb(smooth_image(*SIZE), tmp_path / "x.png")
    for key, (value, reason) in bad.items():
        path = tmp_path / f"bad_{key}.yaml"
        OmegaConf.save(OmegaConf.merge(schedule, {"main": {key: value}}), path)
        match = f"{path}: not a valid overfitted-codec schedule .*{reason}"
        with pytest.raises(LiclabError, match=match):
            OverfitCodec("coolchic_lop", str(path), LMBDA)
        config = {"_target_": "liclab.codecs.overfit.OverfitCodec", "_recursive_": False,
                  "model": "coolchic_lop", "schedule": str(path)}  # fmt: skip
        with pytest.raises(LiclabError, match=match):
            codecs_at_points(config, {"lmbda": [1e-3, 4e-3]})
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            cli.compress_main(
                [str(tmp_path / "x.png"), "-o", str(tmp_path / "z.lic"), "codec=coolchic_lop",
                 f"schedule={path}", "iterations=2"]
            )  # fmt: skip
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and str(path) in err[1] and reason in err[1], err
    assert not (tmp_path / "z.lic").exists()


def test_a_device_this_machine_lacks_is_one_line_before_any_fit(tmp_path, capsys, monkeypatch):
    import torch

    from liclab.cli import codec as cli
    from liclab.images import save_rgb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also where a GPU is
    with pytest.raises(LiclabError, match="device=cuda, but this machine has no CUDA device"):
        OverfitCodec("coolchic_lop", "coolchic", LMBDA, device="cuda")
    with pytest.raises(LiclabError, match="device='gpu0' is not a device"):
        OverfitCodec("coolchic_lop", "coolchic", LMBDA, device="gpu0")
    save_rgb(smooth_image(*SIZE), tmp_path / "x.png")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.compress_main(
            [str(tmp_path / "x.png"), "-o", str(tmp_path / "z.lic"), "codec=coolchic_lop",
             "device=cuda", "iterations=2"]
        )  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no CUDA device" in err[1], err
    assert not (tmp_path / "z.lic").exists()


def test_a_schedule_scales_to_a_budget_keeping_its_proportions():
    from hydra.utils import instantiate

    codec = OverfitCodec("coolchic_hop", "coolchic", LMBDA)
    schedule = instantiate(codec.schedule)
    assert schedule.iterations == 2000
    half = schedule.scaled(1000)
    assert half.iterations == 1000
    assert (half.warmup.phase.iterations, half.main.iterations, half.final.iterations) == (
        25, 775, 50,
    )  # fmt: skip
    assert schedule.scaled(3).main.iterations >= 1 and schedule.scaled(3).final.iterations >= 1


def test_the_ablation_proxy_replaces_the_warm_up_and_main_ones_only(monkeypatch):
    from liclab.overfit import encode
    from liclab.quantizers import Noise

    seen = []

    def record(image, model, lmbda, schedule, **kw):
        seen.append(schedule)
        raise RuntimeError("stop")

    monkeypatch.setattr(encode, "fit", record)
    codec = OverfitCodec("coolchic_lop", "coolchic", LMBDA, iterations=100,
                         quantizer={"_target_": "liclab.quantizers.Noise"})  # fmt: skip
    with pytest.raises(RuntimeError, match="stop"):
        codec.fit(smooth_image(*SIZE))
    (schedule,) = seen
    assert isinstance(schedule.warmup.phase.quantizer, Noise)
    assert isinstance(schedule.main.quantizer, Noise)
    assert isinstance(schedule.final.quantizer, STE)
    assert schedule.iterations == 100
    assert codec.version() != OverfitCodec("coolchic_lop", "coolchic", LMBDA, 100).version()


@pytest.mark.parametrize(("show", "workers"), [(True, 1), (False, 1), (True, 2)])
def test_the_evaluator_logs_the_fits_progress_to_a_log_file_naming_each_encode(
    tmp_path, capfd, show, workers
):
    """An overfitted encode takes minutes: where stderr is a file, the evaluator passes on
    the fit's own lines, each naming its image and setting, from its worker processes too;
    and leaves logging as it was."""
    import logging

    from liclab.evaluate import evaluate_codec
    from liclab.images import save_rgb

    names = [f"x{i}.png" for i in range(workers)]
    for name in names:
        save_rgb(smooth_image(*SIZE), tmp_path / name)
    codec = OverfitCodec("coolchic_lop", "coolchic", LMBDA, iterations=8)
    logger = logging.getLogger("liclab.overfit")
    before = logger.level, logger.propagate, list(logger.handlers)
    evaluate_codec(codec, [tmp_path / n for n in names], workers=workers, show=show)
    err = capfd.readouterr().err.splitlines()
    lines = [line for line in err if "MAC/pixel" in line or "done:" in line]
    if show:
        for name in names:
            tag = f"  [{name} {codec.setting}] "
            assert sum(line.startswith(tag) for line in lines) == 2, lines
        assert len(lines) == 2 * workers
    else:
        assert lines == []
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


WARM_SWEEP = {
    "_target_": "liclab.codecs.overfit.OverfitCodec",
    "_recursive_": False,
    "model": "coolchic_lop",
    "schedule": "coolchic",
    "lmbda": LMBDA,
    "iterations": 10,
    "warm_start": True,
}


def _two_images(folder) -> list:
    from liclab.images import save_rgb

    paths = []
    for i, (h, w) in enumerate([SIZE, (SIZE[1], SIZE[0])]):
        paths.append(folder / f"x{i}.png")
        save_rgb(smooth_image(h, w), paths[-1])
    return paths


def test_a_warm_started_sweep_fits_each_point_from_the_previous_ones_fit_of_the_image(
    tmp_path, monkeypatch
):
    """``warm_start``: the evaluator runs one image's points in turn, each fit after the
    first starting from its predecessor's fitted state; the chain is in the cache key."""
    from liclab.evaluate import codecs_at_points, evaluate_codecs

    paths, config = _two_images(tmp_path), WARM_SWEEP
    codecs = codecs_at_points(config, {"lmbda": [1e-3, 4e-3, 2e-2]})
    assert codecs[0].warm_from is None
    assert codecs[1].warm_from is codecs[0] and codecs[2].warm_from is codecs[1]
    cold = codecs_at_points({**config, "warm_start": False}, {"lmbda": [1e-3, 4e-3, 2e-2]})
    assert codecs[0].version() == cold[0].version()
    assert codecs[1].version() != cold[1].version()  # the chain is part of the cache key

    seen = []  # (image shape, λ, the state it started from or None, the state it ended in)
    original = OverfitCodec.fit

    def recording(self, image, init=None):
        fitted = original(self, image, init)
        state = {k: v.clone() for k, v in fitted.model.state_dict().items()}
        seen.append((image.shape, self.lmbda, init, state))  # before its networks are quantised
        return fitted

    monkeypatch.setattr(OverfitCodec, "fit", recording)
    records = evaluate_codecs(codecs, paths, workers=1, cache_dir=tmp_path / "cache", show=False)
    assert [(shape[:2], lmbda) for shape, lmbda, *_ in seen] == [
        (size, lmbda) for size in (SIZE, SIZE[::-1]) for lmbda in (1e-3, 4e-3, 2e-2)
    ]
    for k, (_, lmbda, init, _) in enumerate(seen):
        if lmbda == 1e-3:
            assert init is None
        else:  # exactly the previous point's fitted state, on the same image
            previous = seen[k - 1][3]
            assert init.keys() == previous.keys()
            assert all(torch.equal(init[n], previous[n]) for n in init)
    assert [[r["file"] for r in per_point] for per_point in records] == [["x0.png", "x1.png"]] * 3
    seen.clear()
    again = evaluate_codecs(codecs, paths, workers=1, cache_dir=tmp_path / "cache", show=False)
    assert seen == [] and again == records


def _interrupt_fit_at(lmbda: float, monkeypatch) -> list:
    """Makes the first fit at ``lmbda`` raise KeyboardInterrupt (as Ctrl-C would) and
    returns the list each other fit appends (image size, λ, whether it had a state) to."""
    seen, stop = [], [True]
    original = OverfitCodec.fit

    def stopping(self, image, init=None):
        if self.lmbda == lmbda and stop[0]:
            stop[0] = False
            raise KeyboardInterrupt
        seen.append((image.shape[:2], self.lmbda, init is not None))
        return original(self, image, init)

    monkeypatch.setattr(OverfitCodec, "fit", stopping)
    return seen


def test_an_interrupted_warm_started_sweep_resumes_after_its_last_finished_fit(
    tmp_path, monkeypatch
):
    """Each encode's record and fitted state reach the cache as the encode ends: a sweep
    stopped in an image's third fit reruns that fit alone, from the second's kept state,
    and ends with an uninterrupted run's records."""
    from liclab.evaluate import codecs_at_points, evaluate_codecs

    paths, points = _two_images(tmp_path), {"lmbda": [1e-3, 4e-3, 2e-2]}

    def sweep(cache: str) -> list:
        codecs = codecs_at_points(WARM_SWEEP, points)
        return evaluate_codecs(codecs, paths, workers=1, cache_dir=tmp_path / cache, show=False)

    whole = sweep("whole")
    seen = _interrupt_fit_at(2e-2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        sweep("cache")
    assert seen == [(SIZE, 1e-3, False), (SIZE, 4e-3, True)]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    assert len(list((tmp_path / "cache").rglob("*.state.pt"))) == 2
    seen.clear()
    resumed = sweep("cache")
    assert seen == [(SIZE, 2e-2, True)] + [
        (SIZE[::-1], lmbda, lmbda != 1e-3) for lmbda in (1e-3, 4e-3, 2e-2)
    ]
    same = ("file", "bytes", "bpp", "psnr", "ms_ssim")
    for ours, theirs in zip(resumed, whole, strict=True):
        assert [[r[k] for k in same] for r in ours] == [[r[k] for k in same] for r in theirs]


def test_an_unreadable_warm_start_state_reruns_its_chain(tmp_path, monkeypatch, capsys):
    """A kept state that does not load as tensors (damaged, or not this evaluator's) is
    said in one line naming it, and the chain is fitted again from its first λ."""
    from liclab.evaluate import codecs_at_points, evaluate_codecs

    paths = _two_images(tmp_path)

    def sweep() -> list:
        codecs = codecs_at_points(WARM_SWEEP, {"lmbda": [1e-3, 4e-3]})
        return evaluate_codecs(codecs, paths, workers=1, cache_dir=tmp_path / "c", show=False)

    seen = _interrupt_fit_at(4e-3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        sweep()
    (state,) = (tmp_path / "c").rglob("*.state.pt")
    state.write_bytes(b"not a state")
    seen.clear()
    capsys.readouterr()
    sweep()
    assert seen == [(SIZE, 1e-3, False), (SIZE, 4e-3, True)] + [
        (SIZE[::-1], 1e-3, False),
        (SIZE[::-1], 4e-3, True),
    ]
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "warm start" in x]
    assert str(state) in line and "its chain runs again" in line
