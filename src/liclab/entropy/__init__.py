"""Entropy models that own their coding, and why liclab's decoding is deterministic.

Two kinds of entropy model, each computing its likelihoods *and* writing its bytes:

* :class:`~liclab.entropy.bottleneck.EntropyBottleneck` — the factorized prior of z (or of y
  in the factorized-prior model): ``likelihood(z)``, ``medians()``,
  ``compress(z, centre)`` / ``decompress(strings, centre)``, CompressAI's rANS.
* Conditional models of y given entropy parameters —
  :class:`~liclab.entropy.gaussian.GaussianConditional` (and its zero-mean variant) and
  :class:`~liclab.entropy.mixture.GaussianMixtureConditional`, a Gaussian being the mixture
  with K = 1. One interface, so a model swaps one for the other with one config line:

  * ``n_params`` — parameters per latent element (1 or 2 for a Gaussian, 3K for a mixture);
  * ``likelihood(y, params)`` — probability mass of the unit bin around each ``y``;
  * ``mean(params)`` — the rounding centre the quantizer uses;
  * ``encoder(batch)`` / ``decoder(strings)`` — one stream per image that any number of
    passes (checkerboard halves, channel groups, raster positions) write to and read from
    in the same order: ``encode(symbols, params, centre)``, ``finish() -> [bytes]``;
    ``decode(params, centre) -> symbols``; per-element CDFs and a range coder
    (:mod:`liclab.entropy.coder`).

Determinism (the one place liclab explains it)
----------------------------------------------
A decoder must rebuild every CDF the encoder used to the last count: one count off and it
decodes garbage from there on. Three things could make two machines (or two thread counts)
disagree, and each is removed:

1. **Entropy parameters.** Float32 convolutions give different last bits with another thread
   count or CPU (the order of summation changes), and a different σ or μ selects another
   CDF. So when coding (eval mode), decoder-side networks run either in float64 or in
   integer arithmetic exact in any order of summation (:mod:`liclab.models.arithmetic`).
2. **Grids.** The float64 parameters are then snapped to fixed grids (means and mixture
   logits 1/256, log2 σ 1/64, :func:`~liclab.entropy.mixture.snap`), so a CDF is a function
   of grid points: two float64 results disagree on a grid point only if they straddle its
   rounding boundary, ~1e-12 per element (integer networks: never). In eval mode the
   conditional models compute likelihoods and means on the same grids, so the eval
   ``forward`` of a model is exactly what ``decompress(compress(x))`` returns. Training
   runs in float32 without grids.
3. **Tables.** CompressAI rebuilds its tables on each machine in float32 (a float32 ``exp``
   for its scale table, a float32 density network for the bottleneck), and vectorised
   float32 kernels differ in the last bit between CPUs (AVX2 and AVX-512 builds of one
   function are not bit-identical): a pmf one ulp off moves a quantised frequency with
   probability ~1e-3. liclab computes every pmf in float64 and quantises it with one
   rounding (conditionals: ⌊p·(2¹⁶ − L − 1)⌋, then integer arithmetic; bottleneck: the
   float32 value CompressAI's quantisation takes): two float64 implementations, a few ulps
   of 1e-16 apart, then agree unless a value lies within ~1e-16 of a rounding boundary
   (``tests/test_mixture.py`` rebuilds frequencies with the C library's erfc).

The reconstruction x̂ follows the same rule: g_s runs in float64 when decoding unless the
user trades bit-exactness across machines for speed
(``CompressionModel.exact_synthesis``). ``tests/test_learned.py`` and the model tests
decode in other processes and thread counts and compare bit for bit.
"""
