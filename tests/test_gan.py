"""Perceptual and adversarial training: the loss's terms, the discriminator, and LitCodec's
two-optimiser step (gradients kept apart, resume, non-finite discriminator losses)."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from liclab import LiclabError
from liclab.checkpoint import load_model
from liclab.codecs.learned import LearnedCodec
from liclab.discriminators import ConditionalPatchDiscriminator
from liclab.lit import LitCodec
from liclab.losses import Hinge, NonSaturating, PerceptualLoss
from liclab.models.hyperprior import MeanScaleHyperprior
from liclab.perceptual import LPIPS, GramStyle
from liclab.quantizers import Mixed
from liclab.train import train

from conftest import TINY, compose, smooth_image, tiny_train_overrides


@pytest.fixture
def weights(random_weights, monkeypatch):
    monkeypatch.setenv("LICLAB_WEIGHTS", str(random_weights))


def gan_overrides(folder, out, steps: int) -> list[str]:
    """Tiny HiFiC-style adversarial training (random-weight LPIPS)."""
    return tiny_train_overrides(folder, out, "meanscale", steps) + [
        "quantizer=mixed",
        "loss=hific",
        "lmbda=0.01",
        "discriminator=hific",
        "discriminator.width=8",
        "module.lr=1e-3",
    ]


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_gan_formulations_on_known_logits():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    ns = NonSaturating()
    expected_d = (math.log1p(math.exp(-2)) + math.log(2)) / 2
    expected_d += (math.log1p(math.exp(-1)) + math.log1p(math.exp(0.5))) / 2
    assert float(ns.discriminator(real, fake)) == pytest.approx(expected_d)
    expected_g = (math.log1p(math.exp(1)) + math.log1p(math.exp(-0.5))) / 2
    assert float(ns.generator(fake)) == pytest.approx(expected_g)
    hinge = Hinge()
    assert float(hinge.discriminator(real, fake)) == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    assert float(hinge.generator(fake)) == pytest.approx(0.25)  # −mean(fake)


def test_perceptual_loss_terms_on_known_inputs():
    torch.manual_seed(0)
    x = _images(1, 32)
    out = {"x_hat": x.clone(), "likelihoods": {"y": torch.full((1, 4, 2, 2), 0.5)}}
    bpp = 16 / (32 * 32)  # 16 elements at one bit each over 32² pixels
    lpips = LPIPS("alex")
    for head in lpips.heads:  # as the published heads: non-negative
        head.weight.data.abs_()
    loss = PerceptualLoss(
        lmbda=2.0,
        lpips=lpips,
        lpips_weight=3.0,
        charbonnier_weight=5.0,
        charbonnier_eps=1e-3,
        style=GramStyle(),
        style_weight=7.0,
    )
    terms = loss(out, x)
    assert float(terms["bpp"]) == pytest.approx(bpp)
    assert float(terms["lpips"]) == 0 and float(terms["style"]) == 0
    assert float(terms["charbonnier"]) == pytest.approx(1e-3)  # √(0 + ε²)
    assert float(terms["loss"]) == pytest.approx(bpp + 2.0 * 5.0 * 1e-3)
    out["x_hat"] = _images(1, 32, seed=1)
    terms = loss(out, x)
    mse = float(torch.mean((out["x_hat"] - x) ** 2))
    parts = 255**2 * mse + 3 * terms["lpips"] + 5 * terms["charbonnier"] + 7 * terms["style"]
    assert float(terms["style"]) > 0 and float(terms["lpips"]) > 0
    assert float(terms["loss"]) == pytest.approx(bpp + 2.0 * float(parts), rel=1e-6)
    # HiFiC's rate constraint: full weight above the target, rate_weight_below at or under it
    for target, weight in ((0.01, 1.0), (0.02, 0.25)):
        constrained = PerceptualLoss(lmbda=2.0, target_bpp=target, rate_weight_below=0.25)
        terms = constrained(out, x)
        assert float(terms["loss"]) == pytest.approx(weight * bpp + 2 * 255**2 * mse, rel=1e-6)


def test_a_weight_without_its_network_is_refused():
    with pytest.raises(ValueError, match="lpips_weight=1.0 needs a lpips object"):
        PerceptualLoss(lmbda=1.0, lpips_weight=1.0)


def test_lpips_gradient_reaches_the_decoder():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(**TINY)
    loss = PerceptualLoss(lmbda=1.0, mse_weight=0.0, lpips=LPIPS("alex"), lpips_weight=1.0)
    x = _images(2)
    terms = loss(model(x, Mixed()), x)
    assert float(terms["distortion"].detach()) == pytest.approx(float(terms["lpips"].detach()))
    decoder = list(model.g_s.parameters())
    grads = torch.autograd.grad(terms["lpips"], decoder)
    assert all(g.abs().sum() > 0 for g in grads)
    assert not any(p.requires_grad for p in loss.lpips.parameters())


def test_discriminator_sees_the_latent_where_it_sits_in_the_image():
    torch.manual_seed(0)
    d = ConditionalPatchDiscriminator(latent_channels=8, width=8).eval()
    x, y_hat = _images(1, 256), torch.randn(1, 8, 16, 16)
    logits = d(x, y_hat)
    assert logits.shape == (1, 1, 32, 32)  # one logit per 8×8 patch
    moved = y_hat.clone()
    moved[..., 0, 0] += 10  # the latent of the top-left 16×16 pixels
    changed = (d(x, moved) != logits)[0, 0]
    assert changed[0, 0] and not changed[16:, 16:].any()
    unconditional = ConditionalPatchDiscriminator(8, projected=0, width=8).eval()
    assert torch.equal(unconditional(x, y_hat), unconditional(x, moved))


def test_discriminator_weights_are_spectrally_normalised():
    torch.manual_seed(0)
    d = ConditionalPatchDiscriminator(latent_channels=8, width=8)
    for _ in range(50):  # one power iteration per training forward
        d(_images(1, 32), torch.randn(1, 8, 2, 2))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.02)


class _GradientLedger(L.Callback):
    """Records, around every optimiser step, what each network's gradients hold."""

    def __init__(self):
        self.failures, self.codec_steps, self.discriminator_steps = [], 0, 0
        self._codec, self._discriminator = {}, {}

    def on_train_start(self, trainer, module):
        codec, disc = trainer.optimizers
        codec.register_step_pre_hook(lambda *a: self._before(module, "codec"))
        codec.register_step_post_hook(lambda *a: self._after(module, "codec"))
        disc.register_step_pre_hook(lambda *a: self._before(module, "discriminator"))
        disc.register_step_post_hook(lambda *a: self._after(module, "discriminator"))

    def _grads(self, net):
        return {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}

    def _before(self, module, which):
        # the other network's gradients are what its own last step left: nothing added
        other = module.discriminator if which == "codec" else module.model
        saved = self._discriminator if which == "codec" else self._codec
        for name, grad in self._grads(other).items():
            old = saved.get(name)
            if (grad is None) != (old is None) or (grad is not None and not torch.equal(grad, old)):
                self.failures.append(f"{which} step: {name} gradient changed by the other loss")
        if which == "codec":
            self.codec_steps += 1
        else:
            self.discriminator_steps += 1

    def _after(self, module, which):
        if which == "codec":
            self._codec = self._grads(module.model)
        else:
            self._discriminator = self._grads(module.discriminator)


def test_gan_steps_change_both_networks_and_keep_their_gradients_apart():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(**TINY)
    disc = ConditionalPatchDiscriminator(TINY["M"], width=8)
    loss = PerceptualLoss(
        lmbda=0.01,
        lpips=LPIPS("alex"),
        lpips_weight=1.0,
        adversarial=NonSaturating(),
        adversarial_weight=1.0,
    )
    module = LitCodec(model, Mixed(), loss, lr=1e-3, discriminator=disc)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    ledger = _GradientLedger()
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        callbacks=[ledger],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, torch.utils.data.DataLoader(list(_images(6)), batch_size=2))
    assert ledger.failures == []
    assert trainer.global_step == 3  # codec steps: the discriminator's are not counted
    assert ledger.codec_steps == ledger.discriminator_steps == 3
    moved = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    for net in ("model.g_a.", "model.g_s.", "model.h_s.", "discriminator."):
        names = {n for n in before if n.startswith(net)}
        assert names and names <= moved, net
    assert not any(n.startswith("loss.") for n in moved)


def test_resume_mid_gan_continues_steps_and_both_optimisers(image_folder, tmp_path, weights):
    out = tmp_path / "run"
    first = train(compose(gan_overrides(image_folder, out, 3)))
    state = torch.load(first["last"], weights_only=False)
    codec, disc = state["optimizer_states"]
    assert [int(s["state"][0]["step"]) for s in (codec, disc)] == [3, 3]
    assert disc["param_groups"][0]["name"] == "discriminator"
    assert any(k.startswith("discriminator.") for k in state["state_dict"])
    assert not any(k.startswith("loss.") for k in state["state_dict"]), "LPIPS is not saved"
    resumed = train(compose(gan_overrides(image_folder, out, 5) + ["ckpt_path=auto"]))
    assert resumed["global_step"] == 5
    again = torch.load(resumed["last"], weights_only=False)
    assert [int(s["state"][0]["step"]) for s in again["optimizer_states"]] == [5, 5]


def test_the_discriminator_is_not_part_of_the_codec(image_folder, tmp_path, weights):
    result = train(compose(gan_overrides(image_folder, tmp_path / "run", 2)))
    model, _ = load_model(result["last"])
    state = torch.load(result["last"], weights_only=False)["state_dict"]
    own = model.state_dict()
    assert set(own) == {k[6:] for k in state if k.startswith("model.")} - {
        k[6:] for k in state if k.startswith("model.") and k[6:] not in own
    }
    codec = LearnedCodec.from_checkpoint(result["last"])
    image = smooth_image(64, 96, seed=3)
    data = codec.encode(image)
    assert codec.decode(data).shape == image.shape
    with torch.no_grad():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        expected = (model(x)["x_hat"].clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0)
    np.testing.assert_array_equal(codec.decode(data), expected.numpy())


class NaNOnDiscriminatorStep(ConditionalPatchDiscriminator):
    """Non-finite logits when its input carries no gradient: during the discriminator's own
    update (x̂ detached), never during the codec's."""

    def forward(self, x, y_hat):
        logits = super().forward(x, y_hat)
        return logits if x.requires_grad else logits * float("nan")


def test_non_finite_discriminator_loss_is_skipped_then_stops(
    image_folder, tmp_path, weights, caplog
):
    overrides = gan_overrides(image_folder, tmp_path / "run", 20) + [
        "discriminator._target_=test_gan.NaNOnDiscriminatorStep",
        "module.max_bad_steps=3",
    ]
    # the codec keeps stepping (step 2 after two skipped discriminator updates), then it stops
    with pytest.raises(
        LiclabError, match="3 consecutive non-finite discriminator losses at step 2"
    ):
        train(compose(overrides))
    assert "non-finite discriminator loss" in caplog.text


def test_a_discriminator_needs_an_adversarial_loss(image_folder, tmp_path):
    overrides = tiny_train_overrides(image_folder, tmp_path / "run") + ["discriminator=hific"]
    with pytest.raises(LiclabError, match="needs a loss with an adversarial term, not MSE"):
        train(compose(overrides))
