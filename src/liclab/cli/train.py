"""``liclab-train``: train a codec from the Hydra config (see ``configs/train.yaml``)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from liclab import LiclabError
from liclab.cli import config_dir

log = logging.getLogger("liclab")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from liclab.train import train

    _log_once()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        train(cfg)
    except LiclabError as exc:
        print(f"liclab: {exc}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except Exception:
        if not multirun:
            raise
        # One failing λ must not take the rest of a sweep down with it.
        log.exception("liclab: run %s failed; the sweep goes on", HydraConfig.get().job.num)


def _log_once() -> None:
    """Lightning adds its own stderr handlers on import; Hydra's (console + train.log) suffice."""
    import lightning  # noqa: F401  (import first so that its handlers exist)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
