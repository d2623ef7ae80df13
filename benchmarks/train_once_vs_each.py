"""Train once (one nested run for every width) vs train each width independently, same data and budget.

Reports total wall time, total parameters (stored, and counted the paper's way: every nested matrix as a dense
D x D, paper §4 / Fig. 4), the parameter saving rate R_s = (independent - nested) / nested, and per-width test
quality of both.

  python benchmarks/train_once_vs_each.py --dataset ml-100k --epochs 10 --out runs/once_vs_each
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from fmrlrec_edge.config import TrainConfig
from fmrlrec_edge.model import NestedLinear
from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.train import train

WIDTHS = (8, 16, 32, 64, 128, 256)


def param_counts(model) -> tuple[int, int]:
    """(stored, paper-way) parameters of the encoder blocks (the item projection/table are left out, as in
    the paper's Fig. 4); paper-way counts every nested matrix as a dense D x D."""
    stored = paper = 0
    for mod in model.blocks.modules():
        if isinstance(mod, NestedLinear):
            D = mod.widths[-1]
            stored += sum(w.numel() for w in mod.weights)
            paper += D * D
    return stored, paper


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs/once_vs_each")
    ap.add_argument("--id-embedding", action="store_true")
    a = ap.parse_args()
    quiet = Console(stderr=True)
    out = Path(a.out)
    common = dict(n_layers=2, dropout=0.3, id_embedding=a.id_embedding)

    def run(name, widths):
        tcfg = TrainConfig(dataset=a.dataset, epochs=a.epochs, patience=a.epochs)  # same budget: no early stop
        t0 = time.perf_counter()
        res = train(tcfg, out / name, {"widths": widths, **common}, force=True, console=quiet, quiet=True)
        model, _ = load_run(out / name)
        return res, time.perf_counter() - t0, param_counts(model)

    nested, t_nested, p_nested = run("nested", WIDTHS)
    indep = {m: run(f"only{m}", (m,)) for m in WIDTHS}
    t_indep = sum(v[1] for v in indep.values())
    s_indep = sum(v[2][0] for v in indep.values())
    d_indep = sum(v[2][1] for v in indep.values())
    print(f"Dataset {a.dataset}, {a.epochs} epochs each, 2 layers; encoder parameters only (projection/ID table excluded).\n")
    print("| | wall time s | stored params | paper-way params (dense) |")
    print("|---|---|---|---|")
    print(f"| one nested run (all widths) | {t_nested:.0f} | {p_nested[0]:,} | {p_nested[1]:,} |")
    print(f"| {len(WIDTHS)} independent runs | {t_indep:.0f} | {s_indep:,} | {d_indep:,} |")
    print(f"| saving rate R_s = (indep - nested) / nested | {(t_indep - t_nested) / t_nested:.1%} (time) | "
          f"{(s_indep - p_nested[0]) / p_nested[0]:.1%} | {(d_indep - p_nested[1]) / p_nested[1]:.1%} |\n")
    print("| width | nested R@10 | nested N@10 | independent R@10 | independent N@10 |")
    print("|---|---|---|---|---|")
    for m in WIDTHS:
        a_ = nested["widths"][str(m)]["test"]["unmasked"]
        b_ = indep[m][0]["widths"][str(m)]["test"]["unmasked"]
        print(f"| {m} | {a_['recall@10']:.4f} | {a_['ndcg@10']:.4f} | {b_['recall@10']:.4f} | {b_['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
