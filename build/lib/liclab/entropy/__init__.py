"""Conditional entropy models of y: what a context model's parameters mean, and real coding.

A conditional entropy model turns the ``n_params · C`` channels an entropy-parameter network
predicts for a C-channel latent into a density and a coder. Both implementations share one
interface, so a model swaps a Gaussian for a mixture with one config line:

* ``n_params`` — parameters per latent element (2 for a Gaussian, 3K for a K-mixture);
* ``likelihood(y, params)`` — probability mass of the unit bin around each ``y``;
* ``mean(params)`` — the rounding centre the quantizer uses;
* ``encoder(batch)`` / ``decoder(strings)`` — one stream per image that any number of
  passes (checkerboard halves, channel groups, raster positions) write to and read from in
  the same order: ``encode(symbols, params, centre)``, ``finish() -> [bytes]``;
  ``decode(params, centre) -> symbols``.

``params`` in float64 mean *coding* (see :mod:`liclab.models.base`): the parameters are then
snapped to fixed grids, so encoder and decoder build the same CDFs bit for bit.

:mod:`liclab.entropy.gaussian` wraps CompressAI's ``GaussianConditional`` (scale table, rANS);
:mod:`liclab.entropy.mixture` is liclab's own discretized Gaussian mixture with per-element
CDFs, which CompressAI lacks.
"""
