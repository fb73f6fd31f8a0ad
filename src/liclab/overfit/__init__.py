"""Overfitted image codecs (Cool-chic, C3): one small decoder and latent pyramid per image.

::

    latents.py    LatentPyramid: L one-channel grids, gain, quantizer → ŷ
    arm.py        ARM: causal context (CONTEXT_ORDER) → Laplace (μ, b); laplace_likelihood
    upsampling.py LearnedUpsampling (Cool-chic) | BilinearUpsampling (C3) → (1, L, H, W)
    synthesis.py  Synthesis: 1×1 layers, residual 3×3 layers → x̂
    model.py      CoolChic: the four together; macs_per_pixel, decode, rounded_latents
    loss.py       CoolChicMSE: MSE + λ·bpp (Cool-chic's λ)
    encode.py     fit(image, model, lmbda, schedule): warm-up, main, final phases

    params.py     the networks as integers: step search (RD, per module), Laplace coding
    laplace.py    integer Laplace tables (16-bin window + geometric tails), range coding
    exact.py      ExactARM, upsampling, ExactSynthesis in exact (dyadic float64) arithmetic
    wavefront.py  Wavefront: decoding schedule (x + k·y), canvas, latent coding
    decoder.py    Decoder: latents (wavefront) and image (worker thread, bands) side by side
    coding.py     the .lic file: Architecture descriptor, encode(model, groups), decode(data)

Presets are configs of the ``eval`` root: models in ``overfit/model/`` (``coolchic_lop``,
``coolchic_hop``, ``c3``), schedules in ``overfit/schedule/`` (``coolchic``, ``c3``), and the
codecs that pair them in ``codec/`` (``liclab-compress … codec=coolchic_hop``,
``liclab-eval codec=c3``). The codec (fit, quantise, write; read) is
:class:`liclab.codecs.overfit.OverfitCodec`.
"""
