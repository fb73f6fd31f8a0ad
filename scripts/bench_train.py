"""Training-step throughput: liclab (LitCodec + Lightning) vs a plain PyTorch loop.

Both sides train a scale hyperprior of the same N, M on the same batches (liclab's
DataModule), with the same objective (bpp + λ·255²·MSE, Adam, aux loss on the quantiles):

* liclab:   ``liclab.models.hyperprior.ScaleHyperprior`` + ``Noise`` inside ``LitCodec``,
            driven by ``lightning.Trainer`` with its CSV logger and checkpointing off;
* baseline: CompressAI's own ``ScaleHyperprior`` in a hand-written loop.

Runs alternate (baseline, liclab, baseline, liclab, …) and the median steps/s of each is
compared, so both see the same machine state. Prints the ratio liclab / baseline.

    python scripts/bench_train.py --N 128 --M 192 --batch 8 --crop 256 --steps 20

``--compile`` adds a third run, liclab with ``compile=true`` (torch.compile, static shapes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch


def batches(args):
    from liclab.data import ImageDataModule

    dm = ImageDataModule(
        args.data,
        crop_size=args.crop,
        batch_size=args.batch,
        samples_per_epoch=args.batch * (args.steps + args.warmup),
    )
    dm.setup()
    return dm


def run_baseline(args, dm) -> float:
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(args.N, args.M).train()
    main = [p for n, p in net.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam([{"params": main, "lr": 1e-4}, {"params": aux, "lr": 1e-3}])
    times = []
    for i, x in enumerate(dm.train_dataloader()):
        t0 = time.perf_counter()
        out = net(x)
        n = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = sum(torch.log(v).sum() for v in out["likelihoods"].values()) / (-0.6931 * n)
        loss = bpp + 0.013 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + net.aux_loss()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return len(times) / sum(times)


class StepTimer(L.Callback):
    def __init__(self, warmup):
        self.warmup, self.times, self.t0 = warmup, [], 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.t0)


def run_liclab(args, dm, compiled: bool = False) -> float:
    from lightning.pytorch.loggers import CSVLogger

    from liclab.lit import LitCodec
    from liclab.losses import MSE
    from liclab.models.hyperprior import ScaleHyperprior
    from liclab.quantizers import Noise

    torch.manual_seed(0)
    model = ScaleHyperprior(args.N, args.M)
    if compiled:
        from liclab.train import compile_model

        compile_model(model)  # what compile=true does; warm-up steps absorb the compilation
    module = LitCodec(model, Noise(), MSE(0.013))
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps + args.warmup,
        logger=CSVLogger(args.out),
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        log_every_n_steps=10,
    )
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return len(timer.times) / sum(timer.times)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--N", type=int, default=128)
    p.add_argument("--M", type=int, default=192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default="skimage", help="data spec (folder, skimage, kodak …)")
    p.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    p.add_argument("--compile", action="store_true", help="also time liclab with compile=true")
    return p


def main():
    args = parser().parse_args()
    if args.out is None:
        import tempfile

        args.out = tempfile.mkdtemp(prefix="liclab-bench-")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    dm = batches(args)
    base, ours, comp = [], [], []
    for _ in range(args.repeats):
        base.append(run_baseline(args, dm))
        ours.append(run_liclab(args, dm))
        if args.compile:
            comp.append(run_liclab(args, dm, compiled=True))
    b, o = statistics.median(base), statistics.median(ours)
    print(
        f"N={args.N} M={args.M} batch={args.batch} crop={args.crop} "
        f"threads={torch.get_num_threads()} steps={args.steps}x{args.repeats}"
    )
    print(f"baseline (CompressAI ScaleHyperprior, plain loop): {b:.3f} steps/s  {base}")
    print(f"liclab   (LitCodec + Lightning Trainer):           {o:.3f} steps/s  {ours}")
    print(f"throughput ratio liclab / baseline: {o / b:.3f}")
    if comp:
        c = statistics.median(comp)
        print(f"liclab compile=true:                              {c:.3f} steps/s  {comp}")
        print(f"throughput ratio compiled / eager liclab: {c / o:.3f}")


if __name__ == "__main__":
    main()
