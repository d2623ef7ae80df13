"""Step vs prefill latency per runtime, side by side in one run (1 thread by default).

For each width and runtime: median/p95 latency of `step` (one new interaction, state fed back) and of
`prefill` over a T-item history (what a stateless model must do for every new interaction), plus eager
PyTorch on the same DeployableWidth. Prints a Markdown table for docs/benchmarks.md.

  python benchmarks/runtime_latency.py --run runs/ml100k --export exports/ml100k --widths 64,256
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from fmrlrec_edge.checkpoint import SPLIT, load_eval_split, load_run
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.manifest import Manifest
from fmrlrec_edge.runtime import open_runner


def timeit(fn, calls: int, warmup: int = 30) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        ts.append((time.perf_counter_ns() - t0) / 1e3)
    ts.sort()
    return statistics.median(ts), ts[int(0.95 * (len(ts) - 1))]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder (for the eager PyTorch baseline)")
    ap.add_argument("--export", required=True, help="export root with manifest.json")
    ap.add_argument("--widths", default="64,256")
    ap.add_argument("--targets", default="onnx,executorch,litert")
    ap.add_argument("--quant", default="fp32,int8", help="quantizations to include where exported")
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--history-len", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    model, _ = load_run(a.run)
    hist, _ = load_eval_split(os.path.join(a.run, SPLIT), "test")
    lengths = (hist > 0).sum(1)
    row = hist[np.argmax(lengths)]
    history = row[row > 0][-a.history_len:].astype(np.int64)
    stream = hist[hist > 0].astype(np.int64)
    man = Manifest.load(a.export)
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores; {a.threads} thread(s); {date.today()}; "
          f"history T = {history.size}; {a.calls} timed calls after warm-up.\n")
    print("| width | runtime | quant | step p50 us | step p95 us | prefill(T) p50 us | prefill / step | size MB | export s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in [int(w) for w in a.widths.split(",")]:
        dw = DeployableWidth(model, m)
        th = torch.from_numpy(history)
        state0 = dw.prefill(th)[2]
        with torch.no_grad():
            it = iter(np.tile(stream, 100))
            sp50, sp95 = timeit(lambda: dw.step(torch.tensor([next(it)]), state0), a.calls)
            pp50, _ = timeit(lambda: dw.prefill(th), max(50, a.calls // 5))
        print(f"| {m} | eager PyTorch | fp32 | {sp50:.0f} | {sp95:.0f} | {pp50:.0f} | {pp50 / sp50:.1f}x | - | - |")
        for target in a.targets.split(","):
            for q in a.quant.split(","):
                hits = [e for e in man.artifacts if e["width"] == m and e["target"] == target and e["quantization"] == q]
                if not hits:
                    continue
                r = open_runner(a.export, m, target, q, threads=a.threads)
                st = r.prefill(history).state
                it = iter(np.tile(stream, 100))
                sp50, sp95 = timeit(lambda: r.step(int(next(it)), st), a.calls)
                pp50, _ = timeit(lambda: r.prefill(history), max(50, a.calls // 5))
                size = sum(f["bytes"] for f in hits[0]["files"]) / 1e6
                print(f"| {m} | {target} | {q} | {sp50:.0f} | {sp95:.0f} | {pp50:.0f} | {pp50 / sp50:.1f}x | "
                      f"{size:.2f} | {hits[0].get('export_seconds', float('nan')):.1f} |")
                r.close()


if __name__ == "__main__":
    main()
