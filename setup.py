"""The one compiled part of liclab (the rest is in pyproject.toml): the exact ARM of the
overfitted codec's decoding steps, ``liclab.overfit._wavefront``. Optional: where no C
compiler is at hand the install goes on and the decoder uses numpy (the same bits, slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "liclab.overfit._wavefront",
            ["src/liclab/overfit/_wavefront.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
