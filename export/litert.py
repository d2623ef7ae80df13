"""LiteRT (TFLite) export: one `model.tflite` per width/quantization holding two signatures, `step` and
`prefill`, that share their weights. fp32 / fp16 weights / int8 dynamic range.

LiteRT conversion cannot take a dynamic T, so `prefill` is exported at max_len: `item_ids[max_len]`
left-padded with 0 plus `length[1]` (padding is masked, so it changes nothing); the manifest says
prefill="padded" and the runner pads for the caller. The converter downcasts int64 I/O to int32; the
real signature dtypes are recorded in the entry's `extra` and the runner casts both ways.

Two things differ from converting `DeployableWidth` as it stands, both for file size, not math:
- the recurrence over the padded history is a log-step (Hillis-Steele) scan, h_t += lambda^k h_{t-k}
  for k = 1, 2, 4, ... < max_len. The [T, T, m] decay kernel of `DeployLayer.sequence` is constant at a
  fixed T, so the converter folds it into four T*T*m float tensors per layer (2.5 MB at width 64, 10 MB
  at 256: most of the file). The scan needs only log2(T) lambda powers and far fewer multiplies.
- the item table is stored once: scores are `x @ E^T` over all rows, then row 0 (padding) is dropped,
  instead of `x @ E[1:]^T`, which the converter folds into a second copy of the table.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmrlrec_edge.deploy import DeployableWidth, ItemTable, QuantizedItemTable
from fmrlrec_edge.errors import UserError

from .base import Exporter, register

MODEL_FILE = "model.tflite"
STEP_IO = (("item_id", "state"), ("top_scores", "top_ids", "next_state"))
PREFILL_IO = (("item_ids", "length"), ("top_scores", "top_ids", "state"))


# -- the graph LiteRT converts ---------------------------------------------------------------------------
def _embed(items, ids):
    if isinstance(items, QuantizedItemTable):
        return items.q[ids].float() * items.scale[ids][:, None]
    return items.weight[ids]


def _top(dw: DeployableWidth, x_last):
    """top-K over items 1..N from one table constant (see module doc); x_last: [1, m]."""
    items = dw.items
    if isinstance(items, QuantizedItemTable):
        scores = (x_last @ items.q.float().T) * items.scale
    else:
        scores = x_last @ items.weight.T
    top_scores, idx = torch.topk(scores[0, 1:], dw.top_k)
    return top_scores, idx + 1


class LitertStep(nn.Module):
    """`DeployableWidth.step` with named outputs (they become the signature's output names)."""

    def __init__(self, dw: DeployableWidth):
        super().__init__()
        self.dw = dw

    def forward(self, item_id, state):
        x = _embed(self.dw.items, item_id)
        new_states = []
        for l, layer in enumerate(self.dw.layers):
            x, h_re, h_im = layer.step(x, state[l, 0], state[l, 1])
            new_states.append(torch.stack([h_re, h_im]))
        top_scores, top_ids = _top(self.dw, x)
        return {"top_scores": top_scores, "top_ids": top_ids, "next_state": torch.stack(new_states)}


class LitertPrefillPadded(LitertStep):
    """`DeployableWidth.prefill_padded` (item_ids[max_len] left-padded with 0, length[1]) as a log-step scan."""

    def forward(self, item_ids, length):
        T = item_ids.shape[0]
        mask = (torch.arange(T) >= T - length).to(torch.float32)          # 1 = real item
        x = _embed(self.dw.items, item_ids)                                # [T, m]
        states = []
        for layer in self.dw.layers:
            m = layer.m
            u = layer.B(layer.ln(x, layer.ln1_w, layer.ln1_b)) * mask[:, None]   # [T, 2m]; zero at padding
            h_re, h_im = u[:, :m], u[:, m:]
            k = 1
            while k < T:   # after this pass h_t = sum over the last 2k inputs of lambda^(t-s) u_s
                a_re, a_im = layer.pow_re[k], layer.pow_im[k]
                p_re, p_im = F.pad(h_re[:-k], (0, 0, k, 0)), F.pad(h_im[:-k], (0, 0, k, 0))   # h_{t-k}
                h_re, h_im = h_re + a_re * p_re - a_im * p_im, h_im + a_re * p_im + a_im * p_re
                k *= 2
            x = layer.ffn_residual(x + layer.C(torch.cat([h_re, h_im], dim=-1)))
            states.append(torch.stack([h_re[-1], h_im[-1]]))
        top_scores, top_ids = _top(self.dw, x[-1:])
        return {"top_scores": top_scores, "top_ids": top_ids, "state": torch.stack(states)}
