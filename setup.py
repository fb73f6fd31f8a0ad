"""The compiled parts of liclab (the rest is in pyproject.toml), both optional: where no C
compiler is at hand the install goes on without them.

- ``liclab.overfit._wavefront``: the exact ARM of the overfitted codec's decoding steps
  (without it the decoder uses numpy: the same bits, slower);
- ``liclab.overfit._mlp``: the overfitted encoder's MLP training passes on a CPU, and its
  synthesis's 3×3 residual layers (without it PyTorch's products and oneDNN's convolutions:
  the same up to float rounding, 20–30 % and 10–20 % slower per iteration)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "liclab.overfit._wavefront",
            ["src/liclab/overfit/_wavefront.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "liclab.overfit._mlp",
            ["src/liclab/overfit/_mlp.c"],
            depends=["src/liclab/overfit/_mlp_kernel.h", "src/liclab/overfit/_conv3_kernel.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
