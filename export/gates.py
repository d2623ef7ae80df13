"""Export-time checks, run through the real runtime (not eager PyTorch):

- parity: the artifact vs the eager width-m deployable module on test histories (max |diff| of top scores,
  top-K overlap), and a 200-step chain where each side is fed its own state;
- quality: Recall/NDCG@5/10/20 on the test split (unmasked, the paper's protocol), compared with the eager
  fp32 module; a quantized artifact more than `bound` (relative) below it on Recall@10 fails the export.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.metrics import metrics_from_topk

PARITY_USERS = 64
CHAIN_STEPS = 200
FP32_MAX_DIFF = 1e-4       # fp32 artifacts must match eager to this (absolute, on top scores)
FP32_MIN_OVERLAP = 1.0


def trim(history_row: np.ndarray) -> np.ndarray:
    return history_row[history_row > 0].astype(np.int64)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / max(len(a), 1)


def eager_prefill(dw: DeployableWidth, ids: np.ndarray):
    with torch.no_grad():
        s, i, st = dw.prefill(torch.from_numpy(ids))
    return s.numpy(), i.numpy(), st.numpy()


def eager_step(dw: DeployableWidth, item: int, state: np.ndarray):
    with torch.no_grad():
        s, i, st = dw.step(torch.tensor([item]), torch.from_numpy(state))
    return s.numpy(), i.numpy(), st.numpy()


def chain_items(histories: np.ndarray, n: int) -> np.ndarray:
    """A long, realistic interaction stream: test histories concatenated."""
    flat = histories[histories > 0].astype(np.int64)
    reps = int(np.ceil(n / max(flat.size, 1)))
    return np.tile(flat, reps)[:n]


def parity(runner, dw: DeployableWidth, histories: np.ndarray, n_users: int = PARITY_USERS,
           chain_steps: int = CHAIN_STEPS) -> dict:
    diffs, overlaps, state_diffs = [], [], []
    for row in histories[:n_users]:
        ids = trim(row)
        if ids.size == 0:
            continue
        got, ref = runner.prefill(ids), eager_prefill(dw, ids)
        diffs.append(float(np.abs(got.top_scores - ref[0]).max()))
        overlaps.append(overlap(got.top_ids, ref[1]))
        state_diffs.append(float(np.abs(got.state - ref[2]).max()))
    # the chain: each side threads its own state through `step`, as an app would for one user
    items = chain_items(histories, chain_steps)
    s_run, s_ref = runner.zero_state(), dw.zero_state().numpy()
    chain_diff, chain_overlap = 0.0, []
    for item in items:
        got = runner.step(int(item), s_run)
        ref = eager_step(dw, int(item), s_ref)
        s_run, s_ref = got.state, ref[2]
        chain_diff = max(chain_diff, float(np.abs(got.top_scores - ref[0]).max()))
        chain_overlap.append(overlap(got.top_ids, ref[1]))
    return {
        "users": len(diffs),
        "max_abs_diff": max(diffs),
        "mean_topk_overlap": float(np.mean(overlaps)),
        "min_topk_overlap": float(np.min(overlaps)),
        "state_max_abs_diff": max(state_diffs),
        "chain_steps": int(items.size),
        "chain_max_abs_diff": chain_diff,
        "chain_min_topk_overlap": float(np.min(chain_overlap)),
        "chain_final_topk_overlap": float(chain_overlap[-1]),
    }


def quality(prefill, histories: np.ndarray, targets: np.ndarray) -> dict:
    """Metrics of any prefill callable (ids -> (scores, ids, state)) over the split; also times it."""
    tops, t0 = [], time.perf_counter()
    for row in histories:
        ids = trim(row)
        tops.append(prefill(ids)[1])
    out = metrics_from_topk(np.stack(tops), targets)
    out["users"] = int(len(targets))
    out["protocol"] = "unmasked full ranking (paper)"
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def eager_quality(dw: DeployableWidth, histories, targets) -> dict:
    return quality(lambda ids: eager_prefill(dw, ids), histories, targets)


def judge(quant: str, par: dict | None, qual: dict | None, ref_qual: dict, bound: float) -> dict:
    """The gate verdict: fp32 must match eager; every artifact must hold Recall@10 within `bound`."""
    reasons = []
    if par is not None and quant == "fp32":
        if par["max_abs_diff"] > FP32_MAX_DIFF or par["chain_max_abs_diff"] > FP32_MAX_DIFF:
            reasons.append(f"fp32 parity max |diff| {max(par['max_abs_diff'], par['chain_max_abs_diff']):.2e} "
                           f"> {FP32_MAX_DIFF:.0e}")
        if par["min_topk_overlap"] < FP32_MIN_OVERLAP or par["chain_min_topk_overlap"] < FP32_MIN_OVERLAP:
            reasons.append("fp32 top-K differs from the eager model")
    if qual is not None:
        ref, got = ref_qual["recall@10"], qual["recall@10"]
        if got < ref * (1 - bound):
            drop = (ref - got) / ref if ref else 0.0
            reasons.append(f"Recall@10 {got:.4f} is {drop:.1%} below fp32's {ref:.4f} (bound {bound:.0%})")
    return {"passed": not reasons, "bound_recall_at_10_rel": bound, "reasons": reasons,
            "reference_recall_at_10": ref_qual["recall@10"]}
