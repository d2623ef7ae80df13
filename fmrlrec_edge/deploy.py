"""The deployable width-m module: what every exporter converts and every runner runs.

Contract (DESIGN.md, "Slicing and the deployable module"):

  prefill(item_ids: int64[T])                    -> top_scores f32[K], top_ids i64[K], state f32[L, 2, m]
  step(item_id: int64[1], state: f32[L, 2, m])   -> top_scores f32[K], top_ids i64[K], state f32[L, 2, m]
  prefill_padded(item_ids: int64[max_len], length: int64[1])  (same outputs; for runtimes without dynamic T)

state[l, 0] / state[l, 1] are layer l's real / imaginary LRU state; zeros = a new user. Padding (id 0)
is never returned in top_ids. All per-call constants are precomputed here: lambda (re, im), its powers for
prefill, and gamma folded into B, so no exp/sin/cos runs on device. Complex products are written out on
real tensors. Every matrix is a plain `nn.Linear`, which is what the quantizers of every runtime look for.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import FMRLRec, chunk_bounds, chunked_layer_norm, lambda_powers, lambda_re_im, slice_width

DEFAULT_TOP_K = 50


def _linear(W, b) -> nn.Linear:
    lin = nn.Linear(W.shape[1], W.shape[0])
    lin.weight.data.copy_(W)
    lin.bias.data.copy_(b)
    return lin


class ItemTable(nn.Module):
    """E_m [N+1, m], tied: `embed` looks items up, `score` ranks items 1..N (padding row excluded)."""

    def __init__(self, E: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", E.detach().clone().contiguous())

    def embed(self, ids):        # ids: int64[n] -> [n, m]
        # an embedding lookup, not a gather: the LiteRT/ExecuTorch recipes quantize it, and it is a row copy
        return F.embedding(ids, self.weight)

    def score(self, x):          # x: [n, m] -> [n, N]
        # score every row and drop padding after: `x @ E[1:]^T` makes converters store a second table copy
        return (x @ self.weight.T)[:, 1:]


class QuantizedItemTable(nn.Module):
    """E_m stored as int8 with one fp32 scale per item (symmetric, per row): E ~= q * scale[:, None].

    The item table is most of a small model's bytes, and onnxruntime's quantizer skips it (it feeds a gather
    *and* a transposed matmul), so the ONNX int8 recipe swaps this in (ExecuTorch uses it for its lookup
    copy; LiteRT and Core ML quantize the table with their own recipes). Both uses dequantize the same way:
    embed = q[ids] * scale[ids]; score = (x @ q[1:]^T) * scale[1:].
    """

    def __init__(self, E: torch.Tensor):
        super().__init__()
        E = E.detach()
        scale = E.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("q", torch.round(E / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().contiguous())

    def dequantized(self) -> torch.Tensor:
        return self.q.float() * self.scale[:, None]

    def embed(self, ids):
        return self.q[ids].float() * self.scale[ids][:, None]

    def score(self, x):
        return (x @ self.q[1:].float().T) * self.scale[1:]


class DeployLayer(nn.Module):
    def __init__(self, block, bounds, max_len: int, eps: float):
        super().__init__()
        lru, ffn = block.lru, block.ffn
        m = lru.nu_log.shape[0]
        self.bounds, self.eps = bounds, eps
        self.register_buffer("ln1_w", block.ln1.weight.detach().clone())
        self.register_buffer("ln1_b", block.ln1.bias.detach().clone())
        self.register_buffer("ln2_w", block.ln2.weight.detach().clone())
        self.register_buffer("ln2_b", block.ln2.bias.detach().clone())
        with torch.no_grad():
            g = torch.exp(lru.gamma_log)
            (Br, br), (Bi, bi) = lru.B_re.dense(m), lru.B_im.dense(m)
            self.B = _linear(torch.cat([g[:, None] * Br, g[:, None] * Bi]), torch.cat([g * br, g * bi]))  # [2m, m]
            (Cr, cr), (Ci, _) = lru.C_re.dense(m), lru.C_im.dense(m)
            self.C = _linear(torch.cat([Cr, -Ci], dim=1), cr)                                             # [m, 2m]
            self.W1, self.Wg, self.W2 = (_linear(*lin.dense(m)) for lin in (ffn.W1, ffn.Wg, ffn.W2))
            lam_re, lam_im = lambda_re_im(lru.nu_log, lru.theta_log)
            self.shifts = [2 ** k for k in range(max(1, (max_len - 1).bit_length()))]    # 1, 2, 4, ... < max_len
            pow_re, pow_im = lambda_powers(lru.nu_log, lru.theta_log, max_len)
            pow_re, pow_im = pow_re[self.shifts], pow_im[self.shifts]
        self.register_buffer("lam_re", lam_re.detach().clone())
        self.register_buffer("lam_im", lam_im.detach().clone())
        self.register_buffer("pow_re", pow_re.detach().clone())   # [log2 max_len, m]: lambda^shift per scan pass
        self.register_buffer("pow_im", pow_im.detach().clone())
        self.m = m

    def ln(self, x, w, b):
        return chunked_layer_norm(x, self.bounds, w, b, self.eps)

    def ffn_residual(self, x):
        h = self.ln(x, self.ln2_w, self.ln2_b)
        return x + self.W2(F.silu(self.Wg(h)) * self.W1(h))

    def scan(self, u_re, u_im):
        """h_t = lambda h_{t-1} + u_t over a whole history by recursive doubling: pass k adds
        lambda^shift_k h_{t - shift_k}. log2(max_len) passes of [T, m] work, one dynamic dim (what XNNPACK
        and the converters accept), and only log2(max_len) rows of lambda powers stored."""
        T = u_re.shape[0]
        h_re, h_im = u_re, u_im
        for k, shift in enumerate(self.shifts):
            zeros = u_re.new_zeros(shift, self.m)
            p_re, p_im = torch.cat([zeros, h_re])[:T], torch.cat([zeros, h_im])[:T]     # h_{t-shift}, 0 before 0
            a_re, a_im = self.pow_re[k], self.pow_im[k]
            h_re, h_im = h_re + a_re * p_re - a_im * p_im, h_im + a_re * p_im + a_im * p_re
        return h_re, h_im

    def sequence(self, x, mask):
        """Parallel form over a whole history. x: [T, m], mask: [T] (1 = real item) -> x', h_T (re, im) [m]."""
        m = self.m
        u = self.B(self.ln(x, self.ln1_w, self.ln1_b)) * mask[:, None]    # [T, 2m]; zero at padding
        h_re, h_im = self.scan(u[:, :m], u[:, m:])
        x = x + self.C(torch.cat([h_re, h_im], dim=-1))
        return self.ffn_residual(x), h_re[-1], h_im[-1]

    def step(self, x, h_re, h_im):
        """One item. x: [1, m], h: [m] -> x', h' (re, im)."""
        m = self.m
        u = self.B(self.ln(x, self.ln1_w, self.ln1_b))[0]                  # [2m]
        h_re, h_im = (self.lam_re * h_re - self.lam_im * h_im + u[:m],
                      self.lam_re * h_im + self.lam_im * h_re + u[m:])
        x = x + self.C(torch.cat([h_re, h_im])[None])
        return self.ffn_residual(x), h_re, h_im


class DeployableWidth(nn.Module):
    """Standalone width-m recommender with the step-wise state API (see module doc)."""

    def __init__(self, model: FMRLRec, m: int, top_k: int = DEFAULT_TOP_K):
        super().__init__()
        sub = slice_width(model, m) if model.cfg.dim != m else model.eval()
        cfg = sub.cfg
        self.m, self.n_layers, self.max_len = m, cfg.n_layers, cfg.max_len
        self.n_items, self.top_k = cfg.n_items, min(top_k, cfg.n_items)
        with torch.no_grad():
            self.items = ItemTable(sub.item_table(m))
        bounds = chunk_bounds(cfg.widths)
        self.layers = nn.ModuleList(DeployLayer(b, bounds, cfg.max_len, cfg.ln_eps) for b in sub.blocks)
        self.eval()

    def _top(self, x_last):                       # x_last: [1, m]
        scores = self.items.score(x_last)[0]       # [N], item i at column i-1
        top_scores, idx = torch.topk(scores, self.top_k)
        return top_scores, idx + 1

    def _encode(self, item_ids, mask):
        x = self.items.embed(item_ids)                     # [T, m]
        states = []
        for layer in self.layers:
            x, h_re, h_im = layer.sequence(x, mask)
            states.append(torch.stack([h_re, h_im]))
        top_scores, top_ids = self._top(x[-1:])
        return top_scores, top_ids, torch.stack(states)    # state: [L, 2, m]

    def prefill(self, item_ids):
        """item_ids: int64[T], 1 <= T <= max_len, oldest first."""
        return self._encode(item_ids, torch.ones_like(item_ids, dtype=torch.float32))

    def prefill_padded(self, item_ids, length):
        """item_ids: int64[max_len] left-padded with 0; length: int64[1] real items at the end."""
        pos = torch.arange(item_ids.shape[0])
        mask = (pos >= item_ids.shape[0] - length).to(torch.float32)
        return self._encode(item_ids, mask)

    def step(self, item_id, state):
        """item_id: int64[1]; state: f32[L, 2, m] -> the same outputs as prefill of the longer history."""
        x = self.items.embed(item_id)                      # [1, m]
        new_states = []
        for l, layer in enumerate(self.layers):
            x, h_re, h_im = layer.step(x, state[l, 0], state[l, 1])
            new_states.append(torch.stack([h_re, h_im]))
        top_scores, top_ids = self._top(x)
        return top_scores, top_ids, torch.stack(new_states)

    def zero_state(self):
        return torch.zeros(self.n_layers, 2, self.m)

    def quantize_item_table(self) -> "DeployableWidth":
        """Swap the fp32 item table for the int8 per-row one (in place); used by int8/int4 recipes."""
        if isinstance(self.items, ItemTable):
            self.items = QuantizedItemTable(self.items.weight)
        return self

    def signature(self) -> dict:
        L, m, K, T = self.n_layers, self.m, self.top_k, self.max_len
        top = {"top_scores": ["float32", [K]], "top_ids": ["int64", [K]]}
        state = ["float32", [L, 2, m]]
        # a graph cannot use one name for an input and an output, so step's returned state is `next_state`
        return {
            "prefill": {"inputs": {"item_ids": ["int64", ["T"]]}, "outputs": {**top, "state": state}, "T": [1, T]},
            "step": {"inputs": {"item_id": ["int64", [1]], "state": state}, "outputs": {**top, "next_state": state}},
        }


class PrefillModule(nn.Module):
    """`forward` = prefill, for exporters that trace one method per graph (weights shared by reference)."""

    def __init__(self, dw: DeployableWidth):
        super().__init__()
        self.dw = dw

    def forward(self, item_ids):
        return self.dw.prefill(item_ids)


class PrefillPaddedModule(PrefillModule):
    def forward(self, item_ids, length):
        return self.dw.prefill_padded(item_ids, length)


class StepModule(PrefillModule):
    def forward(self, item_id, state):
        return self.dw.step(item_id, state)
