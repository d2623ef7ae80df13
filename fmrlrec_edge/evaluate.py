"""Full-ranking evaluation of every width, with and without masking the user's history, and the
popularity baseline. The paper does not mask history; LRURec does: every report says which."""

from __future__ import annotations

import numpy as np
import torch

from .metrics import KS, mask_history, metrics_from_ranks, ranks_from_scores
from .model import FMRLRec

PROTOCOL = {
    "split": "leave-one-out (train seq[:-2], val seq[-2], test seq[-1]; test input includes the val item)",
    "ranking": "full ranking over all items; padding excluded; ties broken by item id",
    "unmasked": "history items stay rankable (the fMRLRec paper's protocol)",
    "masked": "items already in the user's history are removed from the ranking (LRURec's protocol)",
    "ks": list(KS),
}


@torch.no_grad()
def evaluate_model(model: FMRLRec, histories: np.ndarray, targets: np.ndarray, batch_size: int = 256,
                   device: str = "cpu", widths=None) -> dict[int, dict[str, dict[str, float]]]:
    """histories: int [U, T] left-padded with 0; targets: int [U] -> {width: {"masked"|"unmasked": metrics}}."""
    model.eval()
    widths = widths or model.cfg.widths
    E = model.item_table()
    ranks = {m: {"masked": [], "unmasked": []} for m in widths}
    for lo in range(0, len(targets), batch_size):
        h = torch.as_tensor(histories[lo:lo + batch_size], dtype=torch.long, device=device)
        t = torch.as_tensor(targets[lo:lo + batch_size], dtype=torch.long, device=device)
        x, _ = model.encode(h, E)
        for m, s in model.all_width_scores(x[:, -1], E).items():
            if m not in ranks:
                continue
            ranks[m]["unmasked"].append(ranks_from_scores(s, t))
            ranks[m]["masked"].append(ranks_from_scores(mask_history(s, h), t))
    return {m: {k: metrics_from_ranks(torch.cat(v).cpu()) for k, v in r.items()} for m, r in ranks.items()}


def popularity_scores(train_seqs, n_items: int) -> torch.Tensor:
    counts = np.zeros(n_items + 1, dtype=np.float64)
    for s in train_seqs:
        np.add.at(counts, np.asarray(s, dtype=np.int64), 1)
    scores = torch.from_numpy(counts)
    scores[0] = float("-inf")
    return scores


def evaluate_popularity(train_seqs, n_items: int, histories: np.ndarray, targets: np.ndarray) -> dict[str, dict]:
    """Rank items by training-set interaction count (the floor every model must clear)."""
    pop = popularity_scores(train_seqs, n_items)
    s = pop[None].expand(len(targets), -1).clone()
    t = torch.as_tensor(targets, dtype=torch.long)
    h = torch.as_tensor(histories, dtype=torch.long)
    return {"unmasked": metrics_from_ranks(ranks_from_scores(s, t)),
            "masked": metrics_from_ranks(ranks_from_scores(mask_history(s, h), t))}
