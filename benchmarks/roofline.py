"""Roofline for one `step`: the work a step needs at width m with N items, against this CPU's measured limit.

A step is one item through L blocks (B: 2m x m, C: m x 2m, three m x m FFN matrices, per-chunk LayerNorms, the
complex recurrence) and then the scoring matmul x[1, m] @ E[m, N]^T, which dominates for N >> m. The limit is
what a plain torch matmul of exactly the step's shapes takes on one thread here (weights already in memory),
so each runtime's step latency is shown as a fraction of it (1.0 = as fast as the bare matmuls).

  python benchmarks/roofline.py --run runs/ml100k --export exports/ml100k --widths 64,256
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from fmrlrec_edge.checkpoint import SPLIT, load_eval_split, load_run
from fmrlrec_edge.manifest import Manifest
from fmrlrec_edge.runtime import open_runner

from runtime_latency import cpu_name, timeit


def step_work(m: int, n_items: int, n_layers: int) -> dict:
    per_layer_macs = 2 * m * m + m * 2 * m + 3 * m * m          # B, C, W1, Wg, W2
    macs = n_layers * per_layer_macs + n_items * m                # + scoring
    weight_bytes = 4 * (n_layers * per_layer_macs + (n_items + 1) * m)
    return {"flops": 2 * macs, "bytes_fp32": weight_bytes, "scoring_share": n_items * m / macs}


def bare_matmuls(m: int, n_items: int, n_layers: int, calls: int) -> float:
    """p50 us of the step's matmuls done by torch alone, one thread, fp32."""
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(o, i, generator=g) for _ in range(n_layers)
            for (o, i) in ((2 * m, m), (m, 2 * m), (m, m), (m, m), (m, m))]
    E = torch.randn(n_items, m, generator=g)
    x, x2 = torch.randn(1, m), torch.randn(1, 2 * m)

    def run():
        for W in mats:
            (x2 if W.shape[1] == 2 * m else x) @ W.T
        torch.topk(x @ E.T, 50)

    with torch.no_grad():
        return timeit(run, calls)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--widths", default="64,256")
    ap.add_argument("--targets", default="onnx,executorch,litert")
    ap.add_argument("--calls", type=int, default=500)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_run(a.run)
    N, L = model.cfg.n_items, model.cfg.n_layers
    hist, _ = load_eval_split(os.path.join(a.run, SPLIT), "test")
    stream = hist[hist > 0].astype(np.int64)
    man = Manifest.load(a.export)
    # a large square matmul gives the compute peak; a GEMV the bandwidth-bound regime a step lives in
    A = torch.randn(1024, 1024)
    peak_gflops = 2 * 1024 ** 3 / timeit(lambda: A @ A, 20, 3)[0] / 1e3
    print(f"Machine: {cpu_name()}, 1 thread. Peak fp32 GEMM (1024^3): {peak_gflops:.1f} GFLOP/s. "
          f"N = {N} items, L = {L} layers.\n")
    print("| width | MFLOP / step | weights MB (fp32) | scoring share | bare matmuls p50 us | runtime | quant | step p50 us | fraction of limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in [int(w) for w in a.widths.split(",")]:
        w = step_work(m, N, L)
        limit = bare_matmuls(m, N, L, a.calls)
        head = f"| {m} | {w['flops'] / 1e6:.2f} | {w['bytes_fp32'] / 1e6:.2f} | {w['scoring_share']:.0%} | {limit:.0f} "
        for e in man.artifacts:
            if e["width"] != m or e["target"] not in a.targets.split(","):
                continue
            try:
                r = open_runner(a.export, m, e["target"], e["quantization"], threads=1)
            except Exception as exc:  # a runtime missing on this host: say so in the table
                print(head + f"| {e['target']} | {e['quantization']} | not run ({str(exc)[:60]}) | - |")
                continue
            st = r.zero_state()
            it = iter(np.tile(stream, 50))
            p50, _ = timeit(lambda: r.step(int(next(it)), st), a.calls)
            print(head + f"| {e['target']} | {e['quantization']} | {p50:.0f} | {limit / p50:.2f} |")


if __name__ == "__main__":
    main()
