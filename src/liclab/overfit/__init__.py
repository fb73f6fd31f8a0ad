"""Overfitted image codecs (Cool-chic, C3): one small decoder and latent pyramid per image.

::

    latents.py    LatentPyramid: L one-channel grids, gain, quantizer → ŷ
    arm.py        ARM: causal context (CONTEXT_ORDER) → Laplace (μ, b); laplace_likelihood
    upsampling.py LearnedUpsampling (Cool-chic) | BilinearUpsampling (C3) → (1, L, H, W)
    synthesis.py  Synthesis: 1×1 layers, residual 3×3 layers → x̂
    model.py      CoolChic: the four together; macs_per_pixel, decode, rounded_latents
    loss.py       CoolChicMSE: MSE + λ·bpp (Cool-chic's λ)
    encode.py     fit(image, model, lmbda, schedule): warm-up, main, final phases

Presets are configs (``configs/overfit/``): ``coolchic_lop``, ``coolchic_hop``, ``c3`` and the
schedules ``schedule_coolchic``, ``schedule_c3``.
"""
