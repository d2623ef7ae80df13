"""The model's defining properties: nested slicing is exact, parallel == recurrent, prefill/step agree."""

import pytest
import torch

from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.config import ModelConfig
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.model import FMRLRec, NestedLinear, slice_width


def random_model(widths=(8, 16, 32, 64), r=(0.8, 0.99), layers=2, n_items=200, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=n_items, feature_dim=24, widths=widths, n_layers=layers, r_min=r[0], r_max=r[1],
                      id_embedding=True)
    return FMRLRec(cfg, torch.randn(n_items + 1, 24)).eval()


def test_nested_linear_is_block_lower_triangular():
    lin = NestedLinear((4, 8, 16))
    x = torch.randn(5, 16)
    y = lin(x)
    x2 = x.clone(); x2[:, 8:] = torch.randn(5, 8)        # change inputs beyond width 8
    assert torch.equal(lin(x2)[:, :8], y[:, :8])         # outputs [:8] cannot see them
    W, b = lin.dense()
    assert torch.allclose(x @ W.T + b, y, atol=1e-6) and torch.all(W[:4, 4:] == 0) and torch.all(W[4:8, 8:] == 0)


@pytest.mark.parametrize("m", [8, 16, 32, 64])
def test_slice_equals_full_model_prefix(m):
    model = random_model()
    items = torch.randint(1, 201, (4, 50)); items[0, :20] = 0
    with torch.no_grad():
        x, _ = model.encode(items)
        sub = slice_width(model, m)
        xs, _ = sub.encode(items)
    assert sub.cfg.dim == m and sub.proj.weight.shape[0] == m          # real smaller tensors
    assert all(p.shape[-1] <= m for n, p in sub.named_parameters() if "proj" not in n and "id_table" not in n)
    assert (xs - x[..., :m]).abs().max() < 1e-5
    s_full = model.scores(x[:, -1], m=m)
    s_sub = sub.scores(xs[:, -1])
    assert torch.allclose(s_full, s_sub, atol=1e-4)


def test_slice_of_trained_checkpoint(tiny_run):
    model, _ = load_run(tiny_run)
    items = torch.randint(1, model.cfg.n_items + 1, (3, 30))
    with torch.no_grad():
        x, _ = model.encode(items)
        for m in model.cfg.widths:
            xs, _ = slice_width(model, m).encode(items)
            assert (xs - x[..., :m]).abs().max() < 1e-5


def test_slice_unknown_width_is_a_user_error():
    with pytest.raises(UserError, match="trained widths: 8,16,32,64"):
        slice_width(random_model(), 48)


def test_parallel_equals_recurrent_on_long_sequences():
    model = random_model(r=(0.8, 0.99))   # slow decay: the hard case for T = 200
    items = torch.randint(1, 201, (2, 200))
    with torch.no_grad():
        x, states = model.encode(items)
        state = model.zero_state(2)
        for t in range(200):
            xt, state = model.step(items[:, t], state)
    assert (x[:, -1] - xt).abs().max() < 1e-4
    for (a, b), (c, d) in zip(states, state):
        assert (a - c).abs().max() < 1e-4 and (b - d).abs().max() < 1e-4


@pytest.mark.parametrize("m", [8, 64])
def test_prefill_then_step_equals_prefill_of_longer_history(m):
    dw = DeployableWidth(random_model(r=(0.5, 0.99)), m, top_k=20)
    hist = torch.randint(1, 201, (40,))
    with torch.no_grad():
        full = dw.prefill(hist)
        inc = dw.step(hist[-1:], dw.prefill(hist[:-1])[2])
        chain = dw.zero_state()
        for i in hist:
            out = dw.step(i[None], chain)
            chain = out[2]
    assert torch.equal(full[1], inc[1]) and torch.allclose(full[0], inc[0], atol=1e-4)
    assert torch.allclose(full[2], inc[2], atol=1e-5) and torch.allclose(full[2], chain, atol=1e-4)
    assert 0 not in full[1].tolist()


def test_padded_prefill_equals_prefill():
    dw = DeployableWidth(random_model(), 32, top_k=20)
    hist = torch.randint(1, 201, (7,))
    padded = torch.zeros(50, dtype=torch.long); padded[-7:] = hist
    with torch.no_grad():
        a, b = dw.prefill(hist), dw.prefill_padded(padded, torch.tensor([7]))
    assert torch.equal(a[1], b[1]) and torch.allclose(a[2], b[2], atol=1e-6)


def test_deployable_matches_sliced_model_scores():
    model = random_model()
    hist = torch.randint(1, 201, (25,))
    with torch.no_grad():
        dw = DeployableWidth(model, 16, top_k=10)
        s, ids, _ = dw.prefill(hist)
        x, _ = slice_width(model, 16).encode(hist[None])
        ref = torch.topk(slice_width(model, 16).scores(x[0, -1]), 10)
    assert torch.equal(ids, ref.indices) and torch.allclose(s, ref.values, atol=1e-4)


def test_quantized_item_table_is_close():
    dw = DeployableWidth(random_model(), 64, top_k=20)
    E = dw.items.weight.clone()
    dw.quantize_item_table()
    err = (dw.items.dequantized() - E).abs()
    assert dw.items.q.dtype == torch.int8
    assert torch.all(err <= dw.items.scale[:, None] / 2 + 1e-7)
