"""fMRLRec: a nested-width (Matryoshka) LRU recommender over frozen multimodal item features.

Notation (paper §3, DESIGN.md):
  widths m_1 < m_2 < ... < m_K = D, chunk j = dims [m_{j-1}, m_j) with m_0 = 0.
  E = proj(features) in R^{(N+1) x D}          item table, row 0 = padding; tied for input and output
  block:  x = x + LRU(LN(x));  x = x + FFN(LN(x)),   FFN(x) = W2(SiLU(Wg x) * W1 x)
  LRU:    h_t = lambda * h_{t-1} + gamma * (B x_t),  y_t = Re(C h_t)
          lambda = exp(-exp(nu_log) + i exp(theta_log)),  gamma = exp(gamma_log)
  scores at width m: x[..., :m] @ E[:, :m]^T

Every square weight is block lower triangular (output chunk j reads inputs [:m_j]), every LayerNorm is
per chunk and lambda is diagonal, so dims [:m] of every activation depend only on weights [:m, :m]:
the width-m model is literally the top-left corner of the full one (`slice_width`).
Complex numbers are kept as separate real / imaginary float tensors (no exporter takes complex dtypes).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def chunk_bounds(widths) -> list[tuple[int, int]]:
    """[(0, m_1), (m_1, m_2), ...]"""
    return list(zip((0,) + tuple(widths[:-1]), widths))


class NestedLinear(nn.Module):
    """Block lower-triangular D x D linear: output chunk j = W_j x[..., :m_j] + b_j.

    Stored as one [m_j - m_{j-1}, m_j] matrix per chunk: sum_j m_j (m_j - m_{j-1}) weights, about 2/3
    of a dense D x D (paper-notes §1).
    """

    def __init__(self, widths, bias: bool = True):
        super().__init__()
        self.widths = tuple(widths)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(hi - lo, hi)) for lo, hi in chunk_bounds(widths))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(hi - lo)) for lo, hi in chunk_bounds(widths)) if bias else None
        for w in self.weights:  # fan-in of chunk j is m_j
            nn.init.normal_(w, std=1.0 / math.sqrt(w.shape[1]))

    def forward(self, x):  # x: [..., D] -> [..., D]
        # one dense matmul with the block lower-triangular matrix beats K small ones on sliced (copied)
        # inputs; the zeros above the diagonal are constants, so they get no gradient
        W, b = self.dense()
        return F.linear(x, W, b if self.biases is not None else None)

    def dense(self, m: int | None = None):
        """The equivalent dense [m, m] weight (zeros above the block diagonal) and bias [m]."""
        m = m or self.widths[-1]
        rows = [F.pad(w, (0, m - w.shape[1])) for w in self.weights if w.shape[1] <= m]
        W = torch.cat(rows, dim=0)
        b = torch.cat(list(self.biases))[:m] if self.biases is not None else W.new_zeros(m)
        return W, b


def chunked_layer_norm(x, bounds, weight, bias, eps: float):
    """LayerNorm applied separately to each chunk [lo, hi) of the last dim (keeps every prefix self-contained)."""
    parts = [F.layer_norm(x[..., lo:hi], (hi - lo,), weight[lo:hi], bias[lo:hi], eps) for lo, hi in bounds]
    return torch.cat(parts, dim=-1)


class NestedLayerNorm(nn.Module):
    def __init__(self, widths, eps: float = 1e-5):
        super().__init__()
        self.bounds = chunk_bounds(widths)
        self.weight = nn.Parameter(torch.ones(widths[-1]))
        self.bias = nn.Parameter(torch.zeros(widths[-1]))
        self.eps = eps

    def forward(self, x):
        return chunked_layer_norm(x, self.bounds, self.weight, self.bias, self.eps)


def lambda_re_im(nu_log, theta_log):
    """lambda = exp(-exp(nu_log)) * (cos theta, sin theta), theta = exp(theta_log)."""
    mod, theta = torch.exp(-torch.exp(nu_log)), torch.exp(theta_log)
    return mod * torch.cos(theta), mod * torch.sin(theta)


def lambda_powers(nu_log, theta_log, T: int):
    """lambda^k for k = 0..T-1 as (re, im), each [T, D]; computed in polar form, stable for any T."""
    k = torch.arange(T, dtype=nu_log.dtype, device=nu_log.device)[:, None]
    mod = torch.exp(-k * torch.exp(nu_log))
    ang = k * torch.exp(theta_log)
    return mod * torch.cos(ang), mod * torch.sin(ang)


def lru_scan_doubling(u_re, u_im, nu_log, theta_log):
    """Parallel form of h_t = lambda h_{t-1} + u_t (h_0 = 0) by recursive doubling (paper-notes §1).

    After pass k, h_t = sum_{s = t-2^k+1..t} lambda^{t-s} u_s; pass k adds lambda^(2^k) h_{t-2^k}.
    ceil(log2 T) passes of elementwise work on [B, T, D]: O(T D log T), no T x T kernel.
    """
    h_re, h_im = u_re, u_im
    T, shift = u_re.shape[1], 1
    while shift < T:
        mod = torch.exp(-shift * torch.exp(nu_log))                 # |lambda|^shift, [D]
        ang = shift * torch.exp(theta_log)
        p_re, p_im = mod * torch.cos(ang), mod * torch.sin(ang)
        prev_re = F.pad(h_re[:, :-shift], (0, 0, shift, 0))         # h_{t - shift}, zeros before t = 0
        prev_im = F.pad(h_im[:, :-shift], (0, 0, shift, 0))
        h_re, h_im = h_re + p_re * prev_re - p_im * prev_im, h_im + p_re * prev_im + p_im * prev_re
        shift *= 2
    return h_re, h_im


class LRU(nn.Module):
    """Linear recurrent unit with nested complex B (with bias) and C; hidden size D (not 2D)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, w = cfg.dim, cfg.widths
        self.B_re, self.B_im = NestedLinear(w), NestedLinear(w)      # B x + b, complex
        self.C_re, self.C_im = NestedLinear(w), NestedLinear(w, bias=False)  # y = Re(C h) + c
        # |lambda| uniform on the ring [r_min, r_max], phase uniform in [0, 2 pi) (paper-notes §1).
        u1, u2 = torch.rand(D), torch.rand(D)
        nu = -0.5 * torch.log(u1 * (cfg.r_max ** 2 - cfg.r_min ** 2) + cfg.r_min ** 2)
        self.nu_log = nn.Parameter(torch.log(nu.clamp(min=1e-8)))
        self.theta_log = nn.Parameter(torch.log(2 * math.pi * u2.clamp(min=1e-4)))
        lam_mod = torch.exp(-nu)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt((1 - lam_mod ** 2).clamp(min=1e-8))))
        for lin in (self.B_re, self.B_im, self.C_re, self.C_im):  # complex init keeps E|Bx|^2 ~ |x|^2
            for p in lin.weights:
                p.data /= math.sqrt(2)

    def inputs(self, x, mask=None):
        """u_t = gamma * (B x_t + b); zero at padding so left padding leaves h untouched."""
        g = torch.exp(self.gamma_log)
        u_re, u_im = g * self.B_re(x), g * self.B_im(x)
        if mask is not None:
            u_re, u_im = u_re * mask[..., None], u_im * mask[..., None]
        return u_re, u_im

    def output(self, h_re, h_im):
        return self.C_re(h_re) - self.C_im(h_im)      # Re(C h) = C_re h_re - C_im h_im

    def forward(self, x, mask=None):  # x: [B, T, D] -> y: [B, T, D], final state (h_re, h_im): [B, D]
        u_re, u_im = self.inputs(x, mask)
        h_re, h_im = lru_scan_doubling(u_re, u_im, self.nu_log, self.theta_log)
        return self.output(h_re, h_im), (h_re[:, -1], h_im[:, -1])

    def step(self, x, h_re, h_im):  # one item: x [B, D], state [B, D] each
        u_re, u_im = self.inputs(x)
        lam_re, lam_im = lambda_re_im(self.nu_log, self.theta_log)
        h_re, h_im = lam_re * h_re - lam_im * h_im + u_re, lam_re * h_im + lam_im * h_re + u_im
        return self.output(h_re, h_im), (h_re, h_im)


class FFN(nn.Module):
    """W2(SiLU(Wg x) * W1 x): gated, all three nested D x D (no 4x expansion, as in the paper's code)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W1, self.Wg, self.W2 = NestedLinear(cfg.widths), NestedLinear(cfg.widths), NestedLinear(cfg.widths)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.W2(F.silu(self.Wg(x)) * self.drop(self.W1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.lru = NestedLayerNorm(cfg.widths, cfg.ln_eps), LRU(cfg)
        self.ln2, self.ffn = NestedLayerNorm(cfg.widths, cfg.ln_eps), FFN(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None):
        y, state = self.lru(self.ln1(x), mask)
        x = x + self.drop(y)
        x = x + self.drop(self.ffn(self.ln2(x)))
        return x, state

    def step(self, x, h_re, h_im):
        y, state = self.lru.step(self.ln1(x), h_re, h_im)
        x = x + y
        return x + self.ffn(self.ln2(x)), state


class FMRLRec(nn.Module):
    def __init__(self, cfg: ModelConfig, features: torch.Tensor):
        super().__init__()
        assert features.shape == (cfg.n_items + 1, cfg.feature_dim), (features.shape, cfg)
        self.cfg = cfg
        self.register_buffer("features", features.float().clone(), persistent=True)  # frozen [N+1, F]
        self.proj = nn.Linear(cfg.feature_dim, cfg.dim)        # nested in its output: width m uses rows [:m]
        self.id_table = nn.Embedding(cfg.n_items + 1, cfg.dim) if cfg.id_embedding else None
        if self.id_table is not None:
            nn.init.normal_(self.id_table.weight, std=0.02)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))

    # -- the item table E ------------------------------------------------------------------------------
    def item_table(self, m: int | None = None):
        """E[:, :m] = proj(features)[:, :m] (+ ID table), [N+1, m]."""
        m = m or self.cfg.dim
        E = F.linear(self.features, self.proj.weight[:m], self.proj.bias[:m])
        if self.id_table is not None:
            E = E + self.id_table.weight[:, :m]
        return E

    # -- parallel form (training, evaluation) ----------------------------------------------------------
    def encode(self, items, E=None):
        """items: [B, T] left-padded with 0 -> hidden x: [B, T, D], states: per layer (h_re, h_im) [B, D]."""
        E = self.item_table() if E is None else E
        mask = (items > 0).to(E.dtype)
        x = self.emb_drop(E[items])
        states = []
        for block in self.blocks:
            x, s = block(x, mask)
            states.append(s)
        return x, states

    def scores(self, x, E=None, m: int | None = None):
        """Scores of every item at width m: x[..., :m] @ E[:, :m]^T, padding column set to -inf."""
        E = self.item_table() if E is None else E
        m = m or self.cfg.dim
        s = x[..., :m] @ E[:, :m].T
        s[..., 0] = float("-inf")
        return s

    def width_logits(self, x, E):
        """Training logits over real items 1..N at every width, [P, N] each (column j = item j+1).

        Per-chunk partial products summed cumulatively: one pass over the item table for all widths.
        """
        out, acc = {}, None
        for lo, hi in chunk_bounds(self.cfg.widths):
            part = x[:, lo:hi] @ E[1:, lo:hi].T
            acc = part if acc is None else acc + part
            out[hi] = acc
        return out

    def all_width_scores(self, x, E=None):
        """Scores at every width from per-chunk partial products summed cumulatively: {m: [..., N+1]}.

        One pass over the item table instead of one per width (sum over chunks = the full product).
        """
        E = self.item_table() if E is None else E
        out, acc = {}, None
        for lo, hi in chunk_bounds(self.cfg.widths):
            part = x[..., lo:hi] @ E[:, lo:hi].T
            acc = part if acc is None else acc + part
            s = acc.clone()
            s[..., 0] = float("-inf")
            out[hi] = s
        return out

    # -- recurrent form (inference, one item at a time) -----------------------------------------------
    def zero_state(self, batch: int = 1):
        D = self.cfg.dim
        z = self.features.new_zeros(batch, D)
        return [(z, z) for _ in self.blocks]

    def step(self, item, state, E=None):
        """item: [B] -> x: [B, D] for that position, new state (list of (h_re, h_im))."""
        E = self.item_table() if E is None else E
        x = E[item]
        new_state = []
        for block, (h_re, h_im) in zip(self.blocks, state):
            x, s = block.step(x, h_re, h_im)
            new_state.append(s)
        return x, new_state

    def n_stored_params(self, include_features: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n + (self.features.numel() if include_features else 0)


def slice_width(model: FMRLRec, m: int) -> FMRLRec:
    """A standalone width-m model whose tensors really are width m (paper §3.2): W[:m, :m], 1-d params [:m],
    the projection's rows [:m]. Its outputs equal the full model's first m dimensions."""
    cfg = model.cfg
    if m not in cfg.widths:
        from .errors import UserError
        raise UserError(f"width {m} was not trained; trained widths: {','.join(map(str, cfg.widths))}")
    k = cfg.widths.index(m) + 1
    sub_cfg = ModelConfig(**{**cfg.__dict__, "widths": cfg.widths[:k]})
    sub = FMRLRec(sub_cfg, model.features)
    src = model.state_dict()
    dst = sub.state_dict()
    for name, t in dst.items():
        s = src[name]
        # chunk-list parameters (weights.j / biases.j) keep their shape; everything else is cut to its
        # leading [:m] along each dim that is D-sized in the full model
        if s.shape == t.shape:
            dst[name] = s.clone()
        else:
            idx = tuple(slice(0, n) for n in t.shape)
            dst[name] = s[idx].clone()
    sub.load_state_dict(dst)
    return sub.eval()
