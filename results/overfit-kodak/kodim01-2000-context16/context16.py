"""kodim01 at λ = 1e-3 and 2000 iterations with Cool-chic 5's 16-value ARM context.

liclab's context is the first K of ``CONTEXT_ORDER`` (nearest first); for K = 16 Cool-chic 5's
pattern differs in one position: (dy, dx) = (−1, −3) where liclab has (−3, −1). This swaps the
two in the order (for the encoder and the decoder of this process and of its worker
processes) and runs the evaluator with its own result cache, so that the run is not answered
from the cache of the unmodified preset. Run from the repository root::

    python results/overfit-kodak/kodim01-2000-context16/context16.py \
        codec=coolchic_hop 'lmbda=[1e-3]' data=$LIC_DATA/kodak/kodim01.png \
        out=results/overfit-kodak/kodim01-2000-context16
"""

import os
import sys

import liclab.overfit.arm as arm
import liclab.overfit.wavefront as wavefront

EVAL_WRAPPER = True  # its arguments are liclab-eval's (the documentation tests compose them)


def swap_context() -> None:
    order = list(arm.CONTEXT_ORDER)
    i, j = order.index((-3, -1)), order.index((-1, -3))
    order[i], order[j] = order[j], order[i]
    arm.CONTEXT_ORDER = wavefront.CONTEXT_ORDER = tuple(order)


if __name__ in ("__main__", "__mp_main__"):  # this process and the evaluator's workers
    swap_context()

if __name__ == "__main__":
    os.environ["LIC_CACHE"] = os.path.join(".cache", "liclab-context16")
    from liclab.cli.evaluate import main

    print("ARM context (first 16):", sorted(arm.CONTEXT_ORDER[:16]), flush=True)
    sys.argv = ["liclab-eval", *sys.argv[1:]]
    main()
