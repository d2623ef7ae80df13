"""Quantization cost per (target, quantization): size ratio and Recall@10 change vs the fp32 eager model,
read from an export's manifest (every number there was measured through the runtime at export time).

  python benchmarks/quantization_cost.py --export exports/ml100k --widths 64,256
"""

from __future__ import annotations

import argparse

from fmrlrec_edge.manifest import Manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True)
    ap.add_argument("--widths", default="64,256")
    a = ap.parse_args()
    man = Manifest.load(a.export)
    widths = [int(w) for w in a.widths.split(",")]
    size = {(e["target"], e["width"], e["quantization"]): sum(f["bytes"] for f in e["files"]) for e in man.artifacts}
    print("| width | target | quant | size MB | size / fp32 | Recall@10 (runtime) | Recall@10 eager fp32 | change | parity max abs diff | gate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e in sorted(man.artifacts, key=lambda e: (e["width"], e["target"], e["quantization"])):
        if e["width"] not in widths:
            continue
        t, m, q = e["target"], e["width"], e["quantization"]
        base = size.get((t, m, "fp32")) or size.get((t, m, "fp16"))
        basename = "fp32" if (t, m, "fp32") in size else "fp16"
        ratio = f"{size[(t, m, q)] / base:.2f}" + ("" if basename == "fp32" else " (of fp16)") if base else "-"
        checks = e.get("checks", {})
        qual, par = checks.get("quality"), checks.get("parity")
        ref = e.get("eager_quality", {}).get("recall@10")
        if isinstance(qual, dict):
            r10 = qual["recall@10"]
            change = f"{(r10 - ref) / ref:+.1%}" if ref else "-"
            r10s = f"{r10:.4f}"
        else:
            r10s, change = str(qual or "-"), "-"
        pars = f"{par['max_abs_diff']:.1e}" if isinstance(par, dict) else str(par or "-")
        gate = checks.get("gate", {})
        gs = "passed" if gate.get("passed") else ("not run" if gate.get("passed") is None else "FAILED")
        print(f"| {m} | {t} | {q} | {size[(t, m, q)] / 1e6:.2f} | {ratio} | {r10s} | {ref:.4f} | {change} | {pars} | {gs} |")


if __name__ == "__main__":
    main()
