"""The per-latent overhead of the coder before this change (commit fcd31d3): y coded with a
table of 64 scales and CompressAI's rANS. Runs against that commit's package only:

    git archive fcd31d3 | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src python results/coding-overhead/before_fcd31d3.py <ckpt> 24

Columns as in ``scripts/bench_overhead.py``, plus ``y_table``: the estimate with each σ
replaced by the scale-table entry the old coder used (the cost of the table).
"""

import math
import sys

import torch

from liclab.codecs.learned import LearnedCodec
from liclab.datasets import resolve_images
from liclab.images import load_rgb
from liclab.models.base import bottleneck_medians, gaussian_likelihood


def table_bits(sym, idx, cdfs, lengths, offsets):
    """Ideal bits of integer symbols under rANS tables (escape: tail + 4-bit bypass)."""
    bits, escapes = 0.0, 0
    for s, i in zip(sym.flatten().tolist(), idx.flatten().tolist(), strict=True):
        cdf, length, offset = cdfs[i], lengths[i], offsets[i]
        v, top, raw = s - offset, length - 2, None
        if v < 0:
            raw, v = -2 * v - 1, top
        elif v >= top:
            raw, v = 2 * (v - top), top
        bits -= math.log2((cdf[v + 1] - cdf[v]) / 65536)
        if raw is not None:
            escapes += 1
            n = 0
            while raw >> (4 * n):
                n += 1
            bits += 4 * (n // 15 + 1 + n)
    return bits, escapes


def main():
    ckpt, n = sys.argv[1], int(sys.argv[2])
    codec = LearnedCodec.from_checkpoint(ckpt)
    m = codec.model
    keys = ["y_est", "y_table", "y_q", "y_real", "z_est", "z_q", "z_real", "header", "file"]
    tot = dict.fromkeys(keys, 0.0)
    with torch.no_grad():
        for path in resolve_images("kodak")[:n]:
            img, _ = load_rgb(path)
            x = codec._to_tensor(img)
            out = m(x)
            tot["y_est"] += float(-torch.log2(out["likelihoods"]["y"]).sum())
            tot["z_est"] += float(-torch.log2(out["likelihoods"]["z"]).sum())
            data = codec.encode(img)
            c = m.compress(x)
            y_bytes, z_bytes = len(c["strings"][0][0]), len(c["strings"][1][0])
            tot["y_real"] += 8 * y_bytes
            tot["z_real"] += 8 * z_bytes
            tot["file"] += 8 * len(data)
            tot["header"] += 8 * (len(data) - y_bytes - z_bytes)
            y = m.g_a(m._pad(x))
            z = m.h_a(m.hyper_input(y))
            eb = m.entropy_bottleneck
            med = bottleneck_medians(eb)
            zs = torch.round(z - med)
            channel = torch.arange(z.shape[1]).reshape(1, -1, 1, 1).expand_as(z)
            tables = (eb._quantized_cdf.tolist(), eb._cdf_length.tolist(), eb._offset.tolist())
            tot["z_q"] += table_bits(zs.long(), channel, *tables)[0]
            scales, means = m.entropy_parameters(zs + med)
            gc = m.gaussian_conditional
            centre = torch.zeros_like(y) if means is None else means.expand_as(y)
            idx, tables = gc.coding_indexes(scales, means, centre)
            ys = torch.round(y - centre)
            tot["y_q"] += table_bits(ys.long(), idx, *tables)[0]
            sigma = gc.scale_table[idx.flatten()].reshape(y.shape)  # σ rounded up to the table
            table_lik = gaussian_likelihood(gc, ys + centre, sigma, means)
            tot["y_table"] += float(-torch.log2(table_lik).sum())
    est = tot["y_est"] + tot["z_est"]
    print(f"{type(m).__name__}, {n} Kodak images; bytes/image (% of the estimate)")
    for k in keys:
        print(f"  {k:8s} {tot[k] / 8 / n:10.1f}  ({100 * tot[k] / est:7.3f} %)")
    print(
        f"  y: scale table {100 * (tot['y_table'] - tot['y_est']) / est:+.3f} %, quantised CDFs "
        f"{100 * (tot['y_q'] - tot['y_table']) / est:+.3f} %, termination "
        f"{100 * (tot['y_real'] - tot['y_q']) / est:+.3f} %\n"
        f"  z: tables {100 * (tot['z_q'] - tot['z_est']) / est:+.3f} %, termination "
        f"{100 * (tot['z_real'] - tot['z_q']) / est:+.3f} %; header + CRC "
        f"{100 * tot['header'] / est:+.3f} %\n"
        f"  total: real bytes {100 * (tot['file'] / est - 1):+.3f} % over the estimate"
    )


if __name__ == "__main__":
    main()
