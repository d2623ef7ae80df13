"""Metrics against hand-computed values; history masking does what it says."""

import math

import numpy as np
import torch

from fmrlrec_edge.metrics import mask_history, metrics_from_ranks, metrics_from_topk, ranks_from_scores


def test_ranks_and_metrics_by_hand():
    ninf = float("-inf")
    scores = torch.tensor([[ninf, 0.9, 0.5, 0.7, 0.1],     # target 3: one item above (1) -> rank 1
                           [ninf, 0.2, 0.2, 0.9, 0.2],     # target 2 ties with 1 (lower id wins) and 4 -> rank 2
                           [ninf, 0.1, 0.2, 0.3, 0.4]])    # target 1: last of 4 -> rank 3
    ranks = ranks_from_scores(scores, torch.tensor([3, 2, 1]))
    assert ranks.tolist() == [1, 2, 3]
    m = metrics_from_ranks(ranks, ks=(1, 2, 3))
    assert m["recall@1"] == 0 and math.isclose(m["recall@2"], 1 / 3) and math.isclose(m["recall@3"], 2 / 3)
    assert math.isclose(m["ndcg@3"], (1 / math.log2(3) + 1 / math.log2(4)) / 3)


def test_history_masking():
    ninf = float("-inf")
    scores = torch.tensor([[ninf, 0.9, 0.8, 0.1, 0.5]])
    hist = torch.tensor([[0, 0, 1, 2]])                    # left-padded history: items 1, 2
    masked = mask_history(scores, hist)
    assert masked[0, 1] == ninf and masked[0, 2] == ninf and masked[0, 4] == 0.5
    assert ranks_from_scores(scores, torch.tensor([4])).item() == 2
    assert ranks_from_scores(masked, torch.tensor([4])).item() == 0   # masking lifted the target to the top


def test_metrics_from_topk_equal_full_ranking():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.normal(size=(50, 101)))
    scores[:, 0] = float("-inf")
    targets = torch.from_numpy(rng.integers(1, 101, 50))
    full = metrics_from_ranks(ranks_from_scores(scores, targets))
    top = torch.topk(scores, 30).indices.numpy()
    assert metrics_from_topk(top, targets.numpy()) == full
