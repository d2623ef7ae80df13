"""Ranking metrics for leave-one-out evaluation (one held-out target per user).

rank r (0-based) = number of items ranked above the target; ties are broken by item id, exactly as a
stable sort or `topk` would order them.
  Recall@k = mean[r < k]            (= hit rate, one target per user)
  NDCG@k   = mean[r < k] / log2(r + 2)
"""

from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """scores: [U, N+1] (column 0 = padding, -inf), targets: [U] -> 0-based rank of each target."""
    t = scores.gather(1, targets[:, None])                               # [U, 1]
    ids = torch.arange(scores.shape[1], device=scores.device)[None]
    above = (scores > t) | ((scores == t) & (ids < targets[:, None]))
    return above.sum(1)


def mask_history(scores: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
    """Set the scores of items the user already interacted with to -inf (LRURec's protocol).

    histories: [U, T] left-padded with 0; column 0 is padding and is -inf already.
    """
    return scores.scatter(1, histories.long(), float("-inf"))


def metrics_from_ranks(ranks, ks=KS) -> dict[str, float]:
    r = torch.as_tensor(ranks, dtype=torch.float64)
    out = {}
    for k in ks:
        hit = (r < k).double()
        out[f"recall@{k}"] = float(hit.mean()) if r.numel() else 0.0
        out[f"ndcg@{k}"] = float((hit / torch.log2(r + 2)).mean()) if r.numel() else 0.0
    return out


def ranks_from_topk(top_ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target inside a returned top-K list; K (= beyond the list) where it is absent."""
    top_ids, targets = np.asarray(top_ids), np.asarray(targets)
    K = top_ids.shape[1]
    hit = top_ids == targets[:, None]
    return np.where(hit.any(1), hit.argmax(1), K)


def metrics_from_topk(top_ids, targets, ks=KS) -> dict[str, float]:
    """Metrics from top-K id lists, exact for every k <= K (used to measure artifacts through runtimes)."""
    K = np.asarray(top_ids).shape[1]
    assert max(ks) <= K, f"top-{K} lists cannot give metrics at k={max(ks)}"
    return metrics_from_ranks(ranks_from_topk(top_ids, targets), ks)
