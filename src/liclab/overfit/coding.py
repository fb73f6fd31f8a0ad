"""The self-contained ``.lic`` file of an overfitted codec: architecture, networks, latents.

The container is liclab's (:mod:`liclab.bitstream`); its fields are used so::

    model id     "CoolChic"
    model hash   SHA-256 prefix of the decoded image (uint8 HxWx3) the encoder expects: the
                 decoder checks its own output against it, so an arithmetic that is not
                 bit-exact fails loudly instead of returning a wrong image
    size         H, W
    shape        the descriptor, small integers (one byte each, two for values ≥ 128):
                   L, K + 32 × the ARM's feature grids G, hidden layers + 16 × its
                   features F, C + 16 if it has a stabiliser + 32 × hyperlatent grids,
                   upsampling kernel (0: bilinear) + 128 × taps of
                   its pre-concatenation filters (0: none) + 4096 if they read zeros outside
                   their grid (else its edges),
                   number of synthesis hidden layers, their widths, residual layers,
                   activation (0 ReLU, 1 GELU) + 32 if the synthesis has a stabiliser,
                   the ARM's rounding bits F (0: none; :class:`~liclab.overfit.exact.ExactARM`),
                   then per parameter group (:func:`liclab.overfit.params.groups` order):
                   step exponent e, coding scale index S, raw low bits r
    strings      one range-coded string per network that has parameters (arm, upsampling,
                 synthesis), then the latents (:class:`liclab.overfit.wavefront.Wavefront`)

A Kodak image's header is 66 bytes (0.0013 bpp). The latents' gains are not sent: the
decoder works on the integers ŷ = round(gain·y).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from liclab import LiclabError
from liclab.bitstream import Bitstream, pack, unpack
from liclab.codecs.learned import to_uint8
from liclab.overfit import exact, laplace, params
from liclab.overfit.arm import ARM
from liclab.overfit.decoder import Decoder
from liclab.overfit.model import CoolChic
from liclab.overfit.synthesis import Synthesis
from liclab.overfit.upsampling import BilinearUpsampling, LearnedUpsampling
from liclab.overfit.wavefront import Wavefront

MODEL_ID = "CoolChic"
ACTIVATIONS = ((nn.ReLU, exact.relu), (nn.GELU, exact.gelu))
"""Synthesis activations a bitstream can name (its code is the index): the training module's
class and the exact decoder's function."""
_MAX_PIXELS = 1 << 28


@dataclass(frozen=True)
class Architecture:
    """What a decoder must know to rebuild the networks (everything but their values)."""

    levels: int
    context: int
    hidden_layers: int
    coarse: int
    upsampling_kernel: int  # 0: bilinear (C3)
    synthesis_hidden: tuple[int, ...]
    residual_layers: int
    activation: int  # index into ACTIVATIONS
    preconcat: int = 0  # taps of the learned upsampling's pre-concatenation filters (0: none)
    preconcat_zeros: bool = False  # they read zeros outside their grid (else its edges)
    synthesis_stabiliser: bool = False  # a 1×1 layer from the dense latents to x̂ (Cool-chic 5)
    arm_stabiliser: bool = False  # a Linear layer from the ARM's context to its outputs
    features: int = 0  # the ARM's inter-grid features F (Cool-chic 5's IFCE)
    feature_grids: int = 0  # the grids that have them (0 without features)
    hyperlatents: int = 0  # hyperlatent grids after the L

    @classmethod
    def of(cls, model: CoolChic) -> Architecture:
        """The architecture of ``model``; ValueError for modules no bitstream describes."""
        arm, up, syn = model.arm, model.upsampling, model.synthesis
        preconcat, zeros = 0, False
        if isinstance(up, LearnedUpsampling):
            kernel, preconcat = up.kernel_size, up.preconcat
            zeros = bool(preconcat) and up.preconcat_padding == "zeros"
        elif isinstance(up, BilinearUpsampling):
            kernel = 0
        else:
            raise ValueError(f"no bitstream describes the upsampling {type(up).__name__}")
        codes = [i for i, (t, _) in enumerate(ACTIVATIONS) if type(syn.activation) is t]
        if not codes or getattr(syn.activation, "approximate", "none") != "none":
            raise ValueError(f"no exact decoder for the synthesis activation {syn.activation}")
        if syn.residual and syn.residual[0].out_channels != 3:
            raise ValueError("the synthesis must output 3 channels")
        return cls(
            levels=model.latents.levels,
            context=len(arm.offsets),
            hidden_layers=len(arm.layers) - 1,
            coarse=len(arm.coarse_offsets),
            upsampling_kernel=kernel,
            synthesis_hidden=tuple(c.out_channels for c in syn.pointwise[:-1]),
            residual_layers=len(syn.residual),
            activation=codes[0],
            preconcat=preconcat,
            preconcat_zeros=zeros,
            synthesis_stabiliser=syn.stabiliser is not None,
            arm_stabiliser=arm.stabiliser is not None,
            features=arm.features,
            feature_grids=len(arm.ifce),
            hyperlatents=len(model.latents.shapes) - model.latents.levels,
        )

    def ints(self) -> list[int]:
        return [
            self.levels,
            self.context + 32 * self.feature_grids,
            self.hidden_layers + 16 * self.features,
            self.coarse + 16 * self.arm_stabiliser + 32 * self.hyperlatents,
            self.upsampling_kernel + 128 * self.preconcat + 4096 * self.preconcat_zeros,
            len(self.synthesis_hidden),
            *self.synthesis_hidden,
            self.residual_layers,
            self.activation + 32 * self.synthesis_stabiliser,
        ]

    @classmethod
    def parse(cls, ints: tuple[int, ...]) -> tuple[Architecture, int]:
        """(architecture, number of integers read) from the start of ``ints``."""
        n_hidden = ints[5]
        kernel, preconcat, zeros = ints[4] % 128, ints[4] // 128 % 32, ints[4] // 4096
        tail = ints[6 + n_hidden : 8 + n_hidden]  # residual layers, activation + flags
        flags = tail[1] // 32 if len(tail) == 2 else 0
        level, context, hidden, coarse = (list(ints[:4]) + [0] * 4)[:4]
        arch = cls(
            level,
            context % 32,
            hidden % 16,
            coarse % 16,
            kernel,
            tuple(ints[6 : 6 + n_hidden]),
            *tail[:1],
            *(t % 32 for t in tail[1:]),
            preconcat=preconcat,
            preconcat_zeros=bool(zeros),
            synthesis_stabiliser=bool(flags % 2),
            arm_stabiliser=bool(coarse // 16 % 2),
            features=hidden // 16,
            feature_grids=context // 32,
            hyperlatents=coarse // 32,
        )
        if len(arch.synthesis_hidden) != n_hidden or not (
            1 <= arch.levels <= 16
            and 1 <= arch.context <= 24
            and arch.hidden_layers <= 8
            and arch.coarse <= 9
            and arch.upsampling_kernel % 4 == 0
            and arch.upsampling_kernel <= 64
            and (arch.preconcat == 0 or (arch.preconcat % 2 == 1 and arch.upsampling_kernel > 0))
            and zeros <= int(arch.preconcat > 0)
            and all(1 <= w <= 1024 for w in arch.synthesis_hidden)
            and arch.residual_layers <= 16
            and arch.activation < len(ACTIVATIONS)
            and flags <= 1
            and arch.features <= 16
            and (arch.features > 0) == (arch.feature_grids > 0)
            and arch.feature_grids < arch.levels
            and arch.hyperlatents <= arch.levels
        ):
            raise ValueError(f"impossible architecture {arch}")
        return arch, 8 + n_hidden

    def build(self, size: tuple[int, int]) -> CoolChic:
        """A model of this architecture for an image of ``size`` (parameters initialised)."""
        if self.upsampling_kernel:
            up = functools.partial(
                LearnedUpsampling,
                kernel_size=self.upsampling_kernel,
                preconcat=self.preconcat,
                preconcat_padding="zeros" if self.preconcat_zeros else "replicate",
            )
        else:
            up = BilinearUpsampling
        activation = ACTIVATIONS[self.activation][0]()
        syn = functools.partial(
            Synthesis,
            hidden=self.synthesis_hidden,
            residual_layers=self.residual_layers,
            activation=activation,
            stabiliser=self.synthesis_stabiliser,
        )
        arm = ARM(
            self.context,
            self.hidden_layers,
            self.coarse,
            stabiliser=self.arm_stabiliser,
            features=self.features,
            feature_grids=max(self.feature_grids, 1),
        )
        model = CoolChic(size, arm, up, syn, levels=self.levels, hyperlatents=self.hyperlatents)
        if len(model.arm.ifce) != self.feature_grids:
            raise ValueError(f"impossible architecture {self} for an image of {size}")
        return model


@dataclass
class Encoded:
    """A bitstream and what the encoder knows of it.

    Args:
        data: the file.
        image: what its decoder returns (uint8 HxWx3).
        bytes: bytes per part: ``header`` (container, descriptor, CRC), each network, ``latents``.
        bits: the ideal code length of each part under its coding tables.
    """

    data: bytes
    image: np.ndarray
    bytes: dict[str, int]
    bits: dict[str, float]


def encode(model: CoolChic, groups: list[params.Group]) -> Encoded:
    """The file of ``model`` (eval mode) with its networks quantised as ``groups``."""
    arch = Architecture.of(model)
    y_hat = [y[0, 0].double().numpy() for y in model.rounded_latents()]
    wavefront = wavefront_of(model)
    for rounding in (0, exact.ARM_BITS):  # no rounding if every sum is exact without
        decoder = _decoder(arch, groups, rounding)
        try:
            latents = wavefront.encode(y_hat, decoder.arm)
            break
        except ValueError:
            if rounding:
                raise
    modules = list(dict.fromkeys(g.module for g in groups))
    strings = [params.encode([g for g in groups if g.module == m]) for m in modules]
    strings.append(latents)
    image = to_uint8(decoder.image([torch.from_numpy(y)[None, None] for y in y_hat], True))
    header = [*arch.ints(), rounding, *(v for g in groups for v in (g.exponent, g.scale, g.raw))]
    digest = hashlib.sha256(image.tobytes()).digest()[:8]
    data = pack(Bitstream(MODEL_ID, digest, model.size, tuple(header), strings))
    mq, s = wavefront.parameters(y_hat, decoder.arm)
    bits = {m: sum(params.bits(g) for g in groups if g.module == m) for m in modules}
    bits["latents"] = laplace.bits(wavefront.symbols(y_hat), mq, s)
    sizes = {m: len(string) for m, string in zip([*modules, "latents"], strings, strict=True)}
    sizes = {"header": len(data) - sum(sizes.values()), **sizes}
    return Encoded(data, image, sizes, bits)


def decode(data: bytes, name: str = "bitstream") -> np.ndarray:
    """The image (uint8 HxWx3) of a file made by :func:`encode`; one-line LiclabError for a
    corrupt, truncated or foreign file."""
    bs = unpack(data, name)
    if bs.model_id != MODEL_ID:
        raise LiclabError(f"{name}: made by {bs.model_id}, not by an overfitted codec")
    try:
        image = _decode(bs)
    except (ValueError, IndexError, OverflowError, RuntimeError, AssertionError) as exc:
        # constriction asserts on data its model cannot have produced
        raise LiclabError(f"{name}: corrupt file ({str(exc).splitlines()[0][:120]})") from None
    if hashlib.sha256(image.tobytes()).digest()[:8] != bs.model_hash:
        raise LiclabError(
            f"{name}: the decoded image differs from the encoder's (checksum mismatch): "
            "this decoder's arithmetic is not the encoder's"
        )
    return image


def part_sizes(data: bytes, name: str = "bitstream") -> dict[str, int]:
    """Bytes per part of a file: ``header`` (everything but the strings), each network,
    ``latents``."""
    bs = unpack(data, name)
    try:
        arch, _ = Architecture.parse(bs.shape)
        _, _, modules, _ = _groups(arch, bs)
    except (ValueError, IndexError) as exc:
        raise LiclabError(f"{name}: corrupt file ({exc})") from None
    sizes = {m: len(s) for m, s in zip([*modules, "latents"], bs.strings, strict=True)}
    return {"header": len(data) - sum(sizes.values()), **sizes}


def _groups(
    arch: Architecture, bs: Bitstream
) -> tuple[CoolChic, list[params.Group], list[str], int]:
    """The model the file describes (parameters initialised), its parameter groups (header
    fields set), the modules with strings and the ARM's rounding bits."""
    h, w = bs.size
    if not 0 < h * w <= _MAX_PIXELS:
        raise ValueError(f"image size {w}x{h}")
    model = arch.build((h, w))
    groups = params.groups(model)
    rounding, *fields = bs.shape[len(arch.ints()) :] or [-1]
    if rounding not in (0, exact.ARM_BITS):
        raise ValueError(f"ARM rounding {rounding}")
    modules = list(dict.fromkeys(g.module for g in groups))
    if len(fields) != 3 * len(groups) or len(bs.strings) != len(modules) + 1:
        raise ValueError("descriptor and parts do not match")
    for i, g in enumerate(groups):
        g.exponent, g.scale, g.raw = fields[3 * i : 3 * i + 3]
        if g.exponent > 30 or g.raw > params.MAX_RAW_BITS or g.scale >= laplace.NUM_SCALES:
            raise ValueError("impossible parameter coding")
    return model, groups, modules, rounding


def _decode(bs: Bitstream) -> np.ndarray:
    arch, _ = Architecture.parse(bs.shape)
    model, groups, modules, rounding = _groups(arch, bs)
    for module, string in zip(modules, bs.strings, strict=False):
        params.decode(string, [g for g in groups if g.module == module])
    wavefront = wavefront_of(model)
    _, x_hat = _decoder(arch, groups, rounding).decode(wavefront, bs.strings[-1])
    return to_uint8(x_hat)


def wavefront_of(model: CoolChic) -> Wavefront:
    """The decoding schedule of a model's latents (its ARM says its context and what the
    features read; a decoder's model is built from the file's architecture)."""
    arm = model.arm
    return Wavefront(
        model.latents.shapes,
        len(arm.offsets),
        len(arm.coarse_offsets),
        levels=model.latents.levels,
        resolutions=arm.resolutions,
        feature_inputs=[arm.coarser(g) for g in range(len(arm.ifce))],
    )


def _decoder(arch: Architecture, groups: list[params.Group], rounding: int) -> Decoder:
    values = {f"{g.module}.{n}": v for g in groups for n, v in g.values().items()}
    return Decoder(
        values,
        arch.hidden_layers,
        arch.levels,
        bool(arch.upsampling_kernel),
        len(arch.synthesis_hidden) + 1,
        arch.residual_layers,
        ACTIVATIONS[arch.activation][1],
        rounding,
        preconcat=bool(arch.preconcat),
        preconcat_zeros=arch.preconcat_zeros,
        synthesis_stabiliser=arch.synthesis_stabiliser,
        arm_stabiliser=arch.arm_stabiliser,
        feature_maps=arch.feature_grids,
    )
