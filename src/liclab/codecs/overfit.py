"""An overfitted codec (Cool-chic, C3) as a :class:`~liclab.codecs.base.Codec`."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import liclab


class OverfitCodec:
    """Encode = fit a Cool-chic / C3 model to the image (:func:`liclab.overfit.encode.fit`),
    quantise its networks (:func:`liclab.overfit.params.search`) and write the self-contained
    ``.lic`` file (:mod:`liclab.overfit.coding`); decode = read the file, nothing else (no
    checkpoint, no config). Ladune et al. 2023, Cool-chic, arXiv:2212.05458; Leguay et al.
    2023, arXiv:2307.12706; Kim et al. 2024, C3, arXiv:2312.02753.

    Cheap to build and to pickle (the evaluator sends codecs to worker processes): nothing is
    instantiated until :meth:`encode`.

    Args:
        model: the model preset: a name in the ``eval/overfit/model/`` configs
            (``coolchic_lop``, ``coolchic_hop``, ``c3``), a path to such a YAML file, that
            config as a mapping, or a callable building a
            :class:`~liclab.overfit.model.CoolChic` from ``size=(H, W)``.
        schedule: the fit's phases: a name in ``eval/overfit/schedule/`` (``coolchic``,
            ``c3``), a path, a mapping, or a :class:`~liclab.overfit.encode.Schedule`.
        lmbda: λ in Cool-chic's convention (loss = MSE + λ·bpp).
        iterations: scale the schedule's phases to this many optimiser steps in all (as
            Cool-chic's ``--n_itr``); None: the schedule as written.
        quantizer: a proxy (a :mod:`liclab.quantizers` object or its config) that replaces
            the schedule's in the warm-up and the main phase (the final straight-through
            phase stays): the quantizer ablation. None: the schedule's own.
        seed: seeds the fit.
        device: where the fit runs ("cpu", "cuda"); the file is the same kind either way.
        compile: ``torch.compile`` the fit's forward pass (worth it on a GPU).
        name: the curve name.
        warm_start: in a sweep (``liclab-eval``'s operating points), start each fit from the
            previous point's fit of the same image, in the points' order, instead of from
            the warm-up's fresh models (whose iterations go to the main phase): the first
            point is fitted as usual, each later one continues from its neighbour. The
            encodes of one image then run in turn, in one process.
    """

    self_contained = True
    """Its files decode without a checkpoint or a config (``liclab-decompress x.lic``)."""

    def __init__(
        self,
        model: str | Callable[..., Any] | Mapping,
        schedule: str | Any,
        lmbda: float,
        iterations: int | None = None,
        quantizer: Any = None,
        seed: int = 0,
        device: str = "cpu",
        compile: bool = False,
        name: str = "coolchic",
        warm_start: bool = False,
    ):
        self.model, self.schedule = _preset(model, "model"), _preset(schedule, "schedule")
        self._sources = {  # what a bad config's one-line error names
            "model": str(model) if isinstance(model, str | Path) else "codec.model",
            "schedule": str(schedule) if isinstance(schedule, str | Path) else "codec.schedule",
        }
        _built(self.schedule, self._sources["schedule"], "schedule")  # fails before any fit
        self.lmbda, self.iterations, self.seed = float(lmbda), iterations, seed
        self.quantizer = _plain(quantizer)
        self.device, self.compile, self.name = _checked_device(device), compile, name
        self.setting = f"lmbda={self.lmbda:g}"
        self.warm_start = warm_start
        self.warm_from: OverfitCodec | None = None  # set by the sweep (warm_start)
        self._details: dict[str, dict[str, float]] = {}
        self._state: dict | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_details": {}, "_state": None}

    def version(self) -> str:
        key = [
            _fingerprint(self.model),
            _fingerprint(self.schedule),
            self.lmbda,
            self.iterations,
            _fingerprint(self.quantizer),
            self.seed,
            self.device,
            _code_digest(),
        ]
        if self.warm_from is not None:  # the encode depends on the one it starts from
            key.append(["warm_from", self.warm_from.version()])
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return f"overfit-{digest}"

    def encode(self, image: np.ndarray, init=None) -> bytes:
        """The file of ``image``; ``init``: a fitted state to start from (warm start)."""
        fitted = self.fit(image, init)
        self._state = {k: v.detach().clone() for k, v in fitted.model.state_dict().items()}
        return self.write(fitted, image)

    def fitted_state(self) -> dict:
        """The model state (before its networks were quantised) of this process's last
        :meth:`encode`: where a warm-started encode of the same image starts."""
        if self._state is None:
            raise liclab.LiclabError(f"{self.name} ({self.setting}): nothing encoded yet")
        return self._state

    def fit(self, image: np.ndarray, init=None):
        """The optimisation alone: a :class:`liclab.overfit.encode.Fit` of the image (uint8
        HxWx3), its model in eval mode on the CPU; ``init``: a state to start from (see
        :func:`liclab.overfit.encode.fit`)."""
        from liclab.overfit.encode import fit
        from liclab.quantizers import Universal

        model = _built(_own_arm(self.model), self._sources["model"], "model")
        schedule = _built(self.schedule, self._sources["schedule"], "schedule")
        if self.quantizer is not None:
            schedule = _with_proxy(schedule, self.quantizer)
        if self.iterations:
            schedule = schedule.scaled(self.iterations)
        if init is not None and self.warm_from is not None:
            init = _regained(init, model(size=image.shape[:2]), self.warm_from.lmbda, self.lmbda)
        if isinstance(schedule.coding_quantizer, Universal):
            raise liclab.LiclabError(
                "overfitted codec: the bitstream carries round(gain·y); a schedule ending in "
                "universal quantization (a shared dither) cannot be coded"
            )
        result = fit(
            _tensor(image),
            model,
            self.lmbda,
            schedule,
            device=self.device,
            compile=self.compile,
            seed=self.seed,
            init=init,
        )
        result.model = result.model.cpu().eval()
        return result

    def write(self, fitted, image: np.ndarray) -> bytes:
        """The file of a :meth:`fit` of ``image``: its networks quantised
        (:func:`liclab.overfit.params.search`), then everything coded
        (:func:`liclab.overfit.coding.encode`)."""
        from liclab.overfit import coding, params

        model = fitted.model
        cpu = time.process_time()
        groups, search_s = params.search(
            model, _tensor(image)[None], self.lmbda, model.rounded_latents()
        )
        encoded = coding.encode(model, groups)
        pixels = image.shape[0] * image.shape[1]
        details = {
            "est_bpp": fitted.stats["bpp"],
            "fit_psnr": fitted.stats["psnr"],
            "fit_s": fitted.stats["seconds"],
            "s_per_iteration": fitted.stats["s_per_iteration"],
            "quantize_s": search_s,
            "quantize_cpu_s": time.process_time() - cpu,
        }
        for part, n in encoded.bytes.items():
            details[f"bytes_{part}"] = float(n)
        networks = sum(encoded.bytes.get(p, 0) for p in ("arm", "upsampling", "synthesis"))
        details["bpp_latents"] = 8 * encoded.bytes["latents"] / pixels
        details["bpp_networks"] = 8 * networks / pixels
        for part, bits in encoded.bits.items():
            details[f"est_bits_{part}"] = bits
        details["est_bpp_quantized"] = sum(encoded.bits.values()) / pixels
        self._details = {hashlib.sha256(encoded.data).hexdigest(): details}
        return encoded.data

    def decode(self, data: bytes, name: str = "bitstream") -> np.ndarray:
        from liclab.overfit import coding

        return coding.decode(data, name)

    def details(self, image: np.ndarray, data: bytes) -> dict[str, float]:
        """Figures of the encode that made ``data`` (this process's last one): the loss's
        rate estimate ``est_bpp`` (latents, before the networks were quantised), real bytes
        per part (``bytes_header``, ``bytes_arm``, ``bytes_upsampling``,
        ``bytes_synthesis``, ``bytes_latents``; ``bpp_latents`` and ``bpp_networks``),
        ideal bits per part under the coding tables (``est_bits_*``, latents with the
        quantised networks), ``est_bpp_quantized`` (their sum per pixel), the fit's PSNR
        and seconds, and the quantisation search's seconds. Of another encode, only the
        byte counts (read from ``data``)."""
        key = hashlib.sha256(data).hexdigest()
        if key in self._details:
            return dict(self._details[key])
        from liclab.overfit import coding

        return {f"bytes_{k}": float(v) for k, v in coding.part_sizes(data).items()}


@functools.cache
def _code_digest() -> str:
    """Changes with the code of the fit, the quantisation and the bitstream (any of them can
    change an encode's output), so cached results follow it."""
    from liclab import overfit

    files = sorted(Path(overfit.__file__).parent.glob("*.py")) + [Path(__file__)]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def _regained(state: dict, probe, before: float, lmbda: float) -> dict:
    """A fitted state at λ = ``before`` as a start at ``lmbda`` (``probe``: a model of the
    image's size): where the gain depends on λ (``lambda_gains``), its latents rescaled so that
    gain·y, what is rounded, is kept."""
    own = probe.latents.gains

    def gains(lmbda_: float) -> list[float]:
        g = probe.gain_at(lmbda_)
        return own if g is None else [g] * len(own)

    old, new = gains(before), gains(lmbda)
    if old == new:
        return state
    prefix = "latents.grids."
    return {
        k: v * (old[int(k[len(prefix) :])] / new[int(k[len(prefix) :])])
        if k.startswith(prefix)
        else v
        for k, v in state.items()
    }


def _with_proxy(schedule, quantizer):
    """``schedule`` with ``quantizer`` (an object or its config) in its warm-up and main
    phases."""
    proxy = _instantiated(quantizer)
    warm = schedule.warmup
    if warm is not None:
        warm = dataclasses.replace(warm, phase=dataclasses.replace(warm.phase, quantizer=proxy))
    main = dataclasses.replace(schedule.main, quantizer=proxy)
    return dataclasses.replace(schedule, warmup=warm, main=main)


def _preset(obj, kind: str):
    """A preset named by a config (``eval/overfit/<kind>/<name>.yaml``) or a YAML path, as a
    plain mapping; anything else as it is (OmegaConf containers made plain)."""
    if not isinstance(obj, str | Path):
        return _plain(obj)
    from omegaconf import OmegaConf

    from liclab.configs import config_dir

    path = Path(obj)
    if path.suffix not in (".yaml", ".yml"):
        folder = config_dir("eval") / "overfit" / kind
        path = folder / f"{obj}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            raise liclab.LiclabError(f"{obj}: no such overfitted-codec {kind} (known: {known})")
    elif not path.is_file():
        raise liclab.LiclabError(f"{path}: no such overfitted-codec {kind} config")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def _own_arm(model):
    """A model config whose ``arm`` is a plain instance config made a partial, so that every
    model the preset builds (each warm-up candidate) gets its own ARM, initialised under its
    seed, as the shipped presets do; an ARM instance shared by the candidates would be
    trained by each in turn."""
    arm = model.get("arm") if isinstance(model, Mapping) else None
    if isinstance(arm, Mapping) and "_target_" in arm and not arm.get("_partial_"):
        return {**model, "arm": {**arm, "_partial_": True}}
    return model


def _plain(obj):
    """OmegaConf containers (Hydra's ``_recursive_: false``) as plain dicts and lists."""
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    return obj


def _tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255


def _instantiated(obj):
    if isinstance(obj, Mapping):
        from hydra.utils import instantiate

        return instantiate(obj)
    return obj


def _checked_device(device: str) -> str:
    """``device`` if this machine has it; else one line saying so (not PyTorch's traceback
    from the first tensor moved there, after the image was read)."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise liclab.LiclabError(
            f"overfitted codec: device={device!r} is not a device ({exc})"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise liclab.LiclabError(
            f"overfitted codec: device={device}, but this machine has no CUDA device that "
            "PyTorch can use (device=cpu fits on the CPU)"
        )
    return device


def _built(obj, source: str, kind: str):
    """``obj`` instantiated; a config it cannot be built from is one line naming ``source``
    (the preset or file) and the reason, instead of Hydra's chained traceback."""
    try:
        return _instantiated(obj)
    except liclab.LiclabError:
        raise
    except Exception as exc:
        cause = str(exc.__cause__ or exc).strip().splitlines() or [type(exc).__name__]
        raise liclab.LiclabError(
            f"{source}: not a valid overfitted-codec {kind} ({cause[0]})"
        ) from None


def _fingerprint(obj) -> Any:
    """A JSON-able description of a config or object graph (partials, dataclasses, modules
    and their plain attributes), for :meth:`OverfitCodec.version`."""
    if isinstance(obj, Mapping):
        return {str(k): _fingerprint(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_fingerprint(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if isinstance(obj, functools.partial):
        return {
            "partial": _fingerprint(obj.func),
            "args": _fingerprint(list(obj.args)),
            "kwargs": _fingerprint(obj.keywords),
        }
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {type(obj).__qualname__: _fingerprint(fields)}
    if not hasattr(obj, "__dict__"):
        return repr(obj)
    plain = {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"}
    children = getattr(obj, "_modules", {})
    return {type(obj).__qualname__: _fingerprint({**plain, **children})}
