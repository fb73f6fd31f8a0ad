"""Every command line of README.md and results/*/README.md composes, and the cheap ones run.

A documented command rots silently when a config key or a flag changes: here each one is
taken from the text, its placeholders (``<run>``, ``/my/images``, ``$LIC_DATA``, …) are
replaced with tiny stand-ins, its config is composed with the same overrides and resolved, and
the cheap ones run in-process at tiny sizes (2 training steps, 96×128 images). A command that
this module does not recognise fails, so a new kind of command gets a check too.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from liclab import configs

from conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "results").glob("**/README.md"))]
TOOLS = (
    "liclab-",
    "python -m liclab",
    "python scripts/",
    "python results/",
    "python -c",
    "pip install",
)
SKIPPED = ("python -m pytest", "pip install")  # CI runs these itself
# Tiny sizes appended to every training command that is run.
TINY_TRAIN = [
    "model.N=16", "model.M=24", "data.crop_size=64", "data.batch_size=2",
    "data.val_crop_size=64", "data.samples_per_epoch=4", "data.num_workers=0",
    "trainer.max_steps=2", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
    "logger=csv", "eval.limit=2",
    "+trainer.enable_progress_bar=false", "callbacks.last.every_n_train_steps=1",
]  # fmt: skip


def _statements(block: str) -> list[str]:
    """Shell statements of a code block: lines joined at ``\\`` and inside quotes, comments
    dropped, split at ``&&`` and ``;`` outside quotes."""
    out, current, quote, i = [], "", None, 0
    text = block.replace("\\\n", " ")
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
            current += ch
        elif ch in "'\"":
            quote = ch
            current += ch
        elif ch == "#" and (not current or current[-1].isspace()):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch == "\n" or ch == ";" or text.startswith("&&", i):
            out.append(current.strip())
            current = ""
            i += 2 if ch == "&" else 1
            continue
        else:
            current += ch
        i += 1
    return [s for s in [*out, current.strip()] if s]


def _commands(path: Path) -> list[tuple[str, str]]:
    """``(where, command)`` for each command line of a Markdown file: the statements of its
    shell blocks (``for`` loops at their first value, variables substituted) and inline code
    that starts like a command and has arguments."""
    text = path.read_text()
    found = []
    for match in re.finditer(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        where = f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 2}"
        env: dict[str, str] = {}
        for part in _statements(match.group(1)):
            loop = re.match(r"for (\w+) in (\S+)", part)
            assign = re.match(r"(?:export )?([A-Z_]+)=(\S+)$", part)
            if loop:
                env[loop.group(1)] = loop.group(2)
            elif assign:
                env[assign.group(1)] = assign.group(2)
            elif part.startswith(TOOLS) or re.match(r"[A-Z_]+=\S+ python", part):
                for var, value in env.items():
                    part = part.replace(f"${var}", value)
                found.append((where, part))
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(match.group(1).split())
        if span.startswith(TOOLS) and " " in span:
            found.append(
                (f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}", span)
            )
    return found


COMMANDS = [c for doc in DOCS for c in _commands(doc)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_ckpt):
    """Stand-ins for the placeholders: a data root, a trained run, a sweep, published curves."""
    root = tmp_path_factory.mktemp("world")
    data = root / "data"
    # the 24 names that make a Kodak folder (tiny images), photos big enough for MS-SSIM
    for folder, count, size in (("kodak", 24, (96, 128)), ("photos40", 6, (176, 192))):
        (data / folder).mkdir(parents=True)
        for i in range(count):
            name = f"kodim{i + 1:02d}.png" if folder == "kodak" else f"{i}.png"
            Image.fromarray(smooth_image(*size, seed=30 + i)).save(data / folder / name)
    run = trained_ckpt.parent.parent
    sweep = root / "sweep"
    for i in range(2):
        shutil.copytree(run, sweep / f"{i}_run", ignore=shutil.ignore_patterns("eval", "csv"))
    return {
        "$LIC_DATA": str(data),
        "/path/to/data": str(data),
        "/my/images": str(data / "kodak"),
        "/path/to/images": str(data / "kodak"),
        "/data/train": str(data / "photos40"),
        "/data/val": str(data / "kodak"),
        "/path/to/train/set": str(data / "photos40"),
        "outputs/train/<run>": str(run),
        "multirun/train/<time>": str(sweep),
        "<sweep dir>": str(sweep),
        "run/checkpoints/best.ckpt": str(trained_ckpt),
        "<run>/checkpoints/best.ckpt": str(trained_ckpt),
        "runs/gmm/checkpoints/last.ckpt": str(trained_ckpt),
        # results/perceptual-cpu: the MSE run, the adversarial run started from it
        "runs/mse/checkpoints/last.ckpt": str(trained_ckpt),
        "runs/gan/checkpoints/last.ckpt": str(trained_ckpt),
        "runs/quickstart/checkpoints/best.ckpt": str(trained_ckpt),
        "runs/hific-1/checkpoints/last.ckpt": str(trained_ckpt),
        "ckpt=runs/mse": f"ckpt={run}",
        "ckpt=runs/gan": f"ckpt={run}",
        "kodim01.png": str(data / "kodak" / "kodim01.png"),
        **{
            f"{root_spec}/kodak/{name}": str(data / "kodak" / name)
            for root_spec in ("$LIC_DATA", "/path/to/data")
            for name in ("kodim01.png", "kodim23.png")
        },
        "<p>": "cpu",
        "root": root,
    }


def _substitute(command: str, world: dict) -> list[str]:
    """Placeholders replaced in one pass, longest first (a stand-in is never rewritten)."""
    keys = sorted((k for k in world if k != "root"), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return shlex.split(pattern.sub(lambda m: world[m.group(0)], command))


def _overrides(args: list[str]) -> tuple[list[str], bool]:
    """Hydra overrides of a command line, sweeps reduced to their first value."""
    multirun = "-m" in args or "--multirun" in args
    out = []
    for a in args:
        if a in ("-m", "--multirun"):
            continue
        key, _, value = a.partition("=")
        if multirun and "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]
        out.append(f"{key}={value}")
    return out, multirun


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w} {c[:60]}" for w, c in COMMANDS])
def test_documented_command(where, command, world, tmp_path, monkeypatch, random_weights):
    if command.startswith(SKIPPED):
        return
    monkeypatch.setenv("LIC_DATA", world["$LIC_DATA"])
    monkeypatch.setenv("LIC_CACHE", str(world["root"] / "cache"))
    monkeypatch.setenv("LICLAB_WEIGHTS", str(random_weights))  # LPIPS, DISTS, VGG: random
    monkeypatch.chdir(tmp_path)
    if command.startswith("pip install") or " && " in command:
        return
    args = [_from_root(a) for a in _substitute(command, world)]
    while re.match(r"[A-Z_]+=", args[0]):  # VAR=value before the program
        args = args[1:]
    program, args = args[0], args[1:]
    if program == "liclab-train":
        _train(args, tmp_path)
    elif program in ("liclab-eval", "liclab-anchors", "liclab-rd"):
        _eval_tool(program, args, tmp_path)
    elif program in ("liclab-compress", "liclab-decompress", "liclab-verify"):
        _codec_tool(program, args, tmp_path, world)
    elif program == "liclab-weights":  # downloads: its flags are checked
        from liclab.cli import weights

        weights.parser().parse_args(args)
    elif program == "python" and args[0] == "-m":
        module = importlib.import_module(args[1])
        module.parser().parse_args(args[2:])
    elif program == "python" and args[0].startswith(("scripts/", "results/")):
        spec = importlib.util.spec_from_file_location("script", ROOT / args[0])
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        if getattr(script, "EVAL_WRAPPER", False):  # liclab-eval's arguments: composed
            overrides, _ = _overrides(args[1:])
            cfg = configs.compose("eval", "eval", [*overrides, "hydra.run.dir=."])
            OmegaConf.to_container(cfg, resolve=True)
        else:
            script.parser().parse_args(args[1:])
    elif program == "python" and args[0] == "-c":
        _check_snippet(args[1])
    else:
        pytest.fail(f"{where}: no check knows the command {program!r}; add one here")


def _from_root(arg: str) -> str:
    """A config file of the repository named relative to its root (``key=results/….yaml`` or
    the path alone), made absolute: the commands run from the root, the test elsewhere."""
    key, eq, value = arg.rpartition("=")
    if value.endswith(".yaml") and not Path(value).is_absolute() and (ROOT / value).is_file():
        return f"{key}{eq}{ROOT / value}"
    return arg


def _train(args: list[str], tmp_path: Path) -> None:
    from liclab.cli.train import run

    overrides, multirun = _overrides(args)
    overrides = [o for o in overrides if not o.startswith("hydra.run.dir")]
    full = [*overrides, f"paths.output_dir={tmp_path / 'run'}"]
    cfg = configs.compose("train", "train", full)
    OmegaConf.to_container(cfg, resolve=True)
    runnable = cfg.trainer.accelerator in ("cpu", "auto") and not any(
        o.startswith(("hydra/launcher", "trainer.devices", "trainer.num_nodes")) for o in full
    )
    if not runnable or str(cfg.model.get("init_from")).startswith("compressai:"):
        return  # needs GPUs, a cluster or CompressAI's download: composed and resolved only
    extra = [] if cfg.task_name == "quickstart" else ["eval.data=null"]
    if cfg.loss._target_.endswith("MSSSIM"):  # MS-SSIM needs 161 px
        extra += ["data.crop_size=176", "data.val_crop_size=176"]
    cfg = configs.compose("train", "train", [*full, *TINY_TRAIN, *extra])
    result = run(cfg)
    assert result["global_step"] == (1 if cfg.trainer.get("fast_dev_run") else 2)
    if cfg.task_name == "quickstart" and cfg.eval.data:  # the first command: its output
        out = Path(result["run_dir"]) / "eval"
        for name in ("quickstart.json", "anchors/jpeg.json", "rd-psnr.png", "bd-rate.md"):
            assert (out / name).exists(), name


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _eval_tool(program: str, args: list[str], tmp_path: Path) -> None:
    from liclab.cli import anchors, evaluate, rd

    name = {"liclab-eval": "eval", "liclab-anchors": "anchors", "liclab-rd": "rd"}[program]
    overrides, _ = _overrides(args)
    cfg = configs.compose("eval", name, [*overrides, "hydra.run.dir=."])
    OmegaConf.to_container(cfg, resolve=True)
    if cfg.get("fid"):  # FID needs 256² patches (the stand-ins are smaller): composed only
        overrides.append("fid=false")
    codec = next((o.split("=", 1)[1] for o in overrides if o.startswith("codec=")), None)
    out = {"eval": f"out={tmp_path / 'eval'}", "anchors": f"out_dir={tmp_path / 'anchors'}"}
    if codec and "OverfitCodec" in str(cfg.codec.get("_target_")):
        if str(cfg.codec.device).startswith("cuda") and not _has_cuda():
            return  # a GPU command where there is none: composed and resolved only
        overrides.append("codec.iterations=8")  # a fit of a few steps per image
    if name == "eval" and (cfg.get("ckpt") or codec):
        anchors = sorted({"jpeg", *([cfg.baseline] if cfg.baseline in ("hevc", "webp") else [])})
        fast = [*overrides, "limit=2", f"anchors=[{','.join(anchors)}]", out[name]]
        cfg = configs.compose("eval", name, fast)
        assert evaluate.run(cfg, codec)["rows"]
    elif name == "anchors":
        codec = codec or "jpeg"
        cfg = configs.compose("eval", name, [*overrides, "limit=2", "workers=1", out[name]])
        assert len(anchors.run(cfg, codec)) >= 2
    elif name == "rd" and all(Path(p).exists() for p in [*cfg.inputs, *cfg.references]):
        assert rd.run(configs.compose("eval", name, [*overrides, f"out={tmp_path}"]))["rows"]


def _codec_tool(program: str, args: list[str], tmp_path: Path, world: dict) -> None:
    from liclab.cli import codec

    args = [str(tmp_path / a) if a.endswith((".lic", ".png")) and "/" not in a else a for a in args]
    fast = ["iterations=8"]  # an overfitted codec's fit, cut to a few steps
    if program == "liclab-compress":
        codec.compress_main(args + (fast if any(a.startswith("codec=") for a in args) else []))
    elif program == "liclab-decompress":
        data = tmp_path / Path(args[0]).name
        if not data.exists():  # a file to decode: the checkpoint's, or an overfitted codec's
            maker = args[3:] if "--ckpt" in args else ["codec=coolchic_lop", *fast]
            codec.compress_main([world["kodim01.png"], "-o", str(data), *maker])
        codec.decompress_main(args)
    else:  # liclab-verify decodes in fresh processes: too slow here; its flags are checked
        codec.verify_parser().parse_args(args)


def _check_snippet(code: str) -> None:
    """A ``python -c`` snippet: it compiles and every name it imports from liclab exists."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("liclab"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
