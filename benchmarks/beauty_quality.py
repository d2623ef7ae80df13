"""Quality on Amazon Beauty for every width from ONE training run, next to the paper's curve.

Reads ../shared/data/amazon-beauty (never copied into the repo). Text features only (MiniLM), as the
paper's text-only ablation; leave-one-out, full ranking, both protocols (unmasked = paper, masked = LRURec).

  python benchmarks/beauty_quality.py --data ../shared/data/amazon-beauty --out runs/beauty --minutes 40
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console

from fmrlrec_edge.config import TrainConfig
from fmrlrec_edge.train import train

# paper-notes.md: Beauty per-size curve (read off the paper's Fig. 3, approximate) and Table 2 / Table 3
PAPER_R10 = {8: 0.015, 64: 0.036, 256: 0.072, 512: 0.089, 1024: 0.094}
PAPER_TABLE2 = {"ndcg@10": 0.0520, "recall@10": 0.0939, "ndcg@5": 0.0415, "recall@5": 0.0613}
PAPER_TEXT_ONLY_D1024 = {"ndcg@10": 0.0449, "recall@10": 0.0859}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/amazon-beauty"))
    ap.add_argument("--out", default="runs/beauty")
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock training budget")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--id-embedding", action="store_true", help="add a learned ID table (not text-only)")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    tcfg = TrainConfig(dataset=f"amazon:{a.data}", epochs=a.epochs, batch_size=256, lr=3e-3, patience=3,
                       max_minutes=a.minutes, warmup_steps=200)
    res = train(tcfg, a.out, {"widths": (8, 16, 32, 64, 128, 256), "dropout": 0.3, "id_embedding": a.id_embedding},
                resume=a.resume, force=not a.resume, console=Console(stderr=True))
    print(f"Training: {res['train_seconds']:.0f} s, {res['epochs_run']} epochs (best {res['best_epoch']}), "
          f"{os.cpu_count()} CPU cores; features: MiniLM text{' + ID table' if a.id_embedding else ' only'}.\n")
    print("| width | R@5 | N@5 | R@10 | N@10 | R@20 | N@20 | R@10 masked | N@10 masked | paper R@10 (Fig. 3) | ratio to paper |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, v in res["widths"].items():
        u, k = v["test"]["unmasked"], v["test"]["masked"]
        p = PAPER_R10.get(int(m))
        print(f"| {m} | {u['recall@5']:.4f} | {u['ndcg@5']:.4f} | {u['recall@10']:.4f} | {u['ndcg@10']:.4f} | "
              f"{u['recall@20']:.4f} | {u['ndcg@20']:.4f} | {k['recall@10']:.4f} | {k['ndcg@10']:.4f} | "
              f"{p if p else '-'} | {u['recall@10'] / p:.2f} |" if p else
              f"| {m} | {u['recall@5']:.4f} | {u['ndcg@5']:.4f} | {u['recall@10']:.4f} | {u['ndcg@10']:.4f} | "
              f"{u['recall@20']:.4f} | {u['ndcg@20']:.4f} | {k['recall@10']:.4f} | {k['ndcg@10']:.4f} | - | - |")
    pop = res["popularity"]["test"]["unmasked"]
    print(f"| popularity | {pop['recall@5']:.4f} | {pop['ndcg@5']:.4f} | {pop['recall@10']:.4f} | {pop['ndcg@10']:.4f} | "
          f"{pop['recall@20']:.4f} | {pop['ndcg@20']:.4f} | - | - | - | - |")
    print(f"\nPaper Table 2 (D=1024, text+image): {json.dumps(PAPER_TABLE2)}; "
          f"text-only ablation: {json.dumps(PAPER_TEXT_ONLY_D1024)}")


if __name__ == "__main__":
    main()
