"""Android assets (export/android.py) and the JVM-tested core of android_demo/ on the tiny run.

The reference weights binary is read back here with numpy only from its documented layout, so a change on
either side of the format fails loudly; the Java ReferenceEngine is then checked against the golden vectors
by compiling and running android_demo/run_jvm_tests.sh (javac + JUnit 4 from Debian's packages).
"""

import importlib.util
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.export.android import (CHAIN_STEPS, MAGIC, pick_entry, write_android_assets,
                                         write_reference_assets)
from fmrlrec_edge.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
JVM_SCRIPT = REPO / "android_demo" / "run_jvm_tests.sh"
WIDTH = 32


@pytest.fixture(scope="module")
def written(tiny_run, tmp_path_factory):
    """reference_weights.bin, golden.json and catalog.tsv of width 32 (no .pte needed)."""
    assets = tmp_path_factory.mktemp("android") / "assets"
    write_reference_assets(tiny_run, WIDTH, assets)
    return assets


@pytest.fixture(scope="module")
def dw(tiny_run):
    model, _ = load_run(tiny_run)
    return DeployableWidth(model, WIDTH)


# -- a numpy reader written from the docstring alone ------------------------------------------------------
def read_weights(path: Path) -> dict:
    data = path.read_bytes()
    assert data[:8] == MAGIC
    version, m, L, n, k, max_len = struct.unpack_from("<6i", data, 8)
    (eps,) = struct.unpack_from("<f", data, 32)
    (n_chunks,) = struct.unpack_from("<i", data, 36)
    bounds = [struct.unpack_from("<2i", data, 40 + 8 * c) for c in range(n_chunks)]
    floats = np.frombuffer(data, dtype="<f4", offset=40 + 8 * n_chunks)
    pos = 0

    def take(*shape):
        nonlocal pos
        size = int(np.prod(shape))
        out = floats[pos:pos + size].reshape(shape)
        pos += size
        return out

    w = {"version": version, "m": m, "L": L, "n": n, "k": k, "max_len": max_len, "eps": eps, "bounds": bounds,
         "E": take(n + 1, m), "layers": []}
    for _ in range(L):
        w["layers"].append({
            "ln1_w": take(m), "ln1_b": take(m), "B_w": take(2 * m, m), "B_b": take(2 * m),
            "lam_re": take(m), "lam_im": take(m), "C_w": take(m, 2 * m), "C_b": take(m),
            "ln2_w": take(m), "ln2_b": take(m), "W1_w": take(m, m), "W1_b": take(m),
            "Wg_w": take(m, m), "Wg_b": take(m), "W2_w": take(m, m), "W2_b": take(m)})
    assert pos == floats.size, "bytes left over after the last tensor"
    return w


def np_step(w, item: int, state: np.ndarray):
    m, f64 = w["m"], np.float64

    def ln(x, g, b):
        out = np.empty_like(x)
        for lo, hi in w["bounds"]:
            c = x[lo:hi]
            out[lo:hi] = (c - c.mean()) / np.sqrt(c.var() + w["eps"]) * g[lo:hi] + b[lo:hi]
        return out

    x = w["E"][item].astype(f64)
    new = np.zeros_like(state, dtype=f64)
    for l, p in enumerate(w["layers"]):
        u = p["B_w"] @ ln(x, p["ln1_w"], p["ln1_b"]) + p["B_b"]
        h_re, h_im = state[l, 0], state[l, 1]
        h_re, h_im = (p["lam_re"] * h_re - p["lam_im"] * h_im + u[:m], p["lam_re"] * h_im + p["lam_im"] * h_re + u[m:])
        new[l, 0], new[l, 1] = h_re, h_im
        x = x + p["C_w"] @ np.concatenate([h_re, h_im]) + p["C_b"]
        h = ln(x, p["ln2_w"], p["ln2_b"])
        g = p["Wg_w"] @ h + p["Wg_b"]
        x = x + p["W2_w"] @ (g / (1 + np.exp(-g)) * (p["W1_w"] @ h + p["W1_b"])) + p["W2_b"]
    scores = w["E"][1:].astype(f64) @ x
    top = np.argsort(-scores, kind="stable")[:w["k"]]
    return scores[top], top + 1, new


def test_weights_binary_recomputes_the_eager_step(written, dw):
    w = read_weights(written / "reference_weights.bin")
    assert (w["version"], w["m"], w["L"], w["n"], w["k"]) == (1, WIDTH, dw.n_layers, dw.n_items, dw.top_k)
    assert w["bounds"] == [(0, 8), (8, 16), (16, 32)] and w["eps"] == pytest.approx(dw.layers[0].eps)
    with torch.no_grad():
        state = dw.prefill(torch.tensor([5, 9, 14, 2]))[2]     # a non-zero state exercises lam_im and C's halves
        ref_s, ref_i, ref_state = dw.step(torch.tensor([17]), state)
    s, i, st = np_step(w, 17, state.numpy().astype(np.float64))
    np.testing.assert_allclose(s, ref_s.numpy(), atol=1e-4)
    np.testing.assert_array_equal(i[:10], ref_i.numpy()[:10])
    np.testing.assert_allclose(st, ref_state.numpy(), atol=1e-5)


def test_golden_vectors_are_self_consistent(written, dw):
    g = json.loads((written / "golden.json").read_text())
    assert (g["width"], g["n_items"], g["top_k"]) == (WIDTH, dw.n_items, dw.top_k)
    chain = g["chain"]
    assert len(chain["item_ids"]) == CHAIN_STEPS == len(chain["states"]) == len(chain["top_ids"])
    assert all(1 <= i <= dw.n_items for ids in chain["top_ids"] for i in ids)
    # 50 recurrent steps from the zero state = the parallel prefill of the same 50 items (max_len is 50)
    with torch.no_grad():
        _, ids, state = dw.prefill(torch.tensor(chain["item_ids"]))
    np.testing.assert_allclose(np.array(chain["states"][-1]), state.numpy().reshape(-1), atol=1e-4)
    assert chain["top_ids"][-1][:10] == ids.tolist()[:10]
    assert [len(p["item_ids"]) for p in g["prefill"]] == [1, 1, 5, 25, 50]
    cat = (written / "catalog.tsv").read_text().splitlines()
    assert cat[0] == "id\ttitle" and len(cat) == dw.n_items + 1 and cat[1].startswith("1\t")


def test_jvm_core_passes_against_golden_vectors(written):
    if shutil.which("javac") is None:
        pytest.skip("javac not found: apt-get install -y default-jdk-headless junit4 (CI installs them)")
    res = subprocess.run(["bash", str(JVM_SCRIPT), str(written)], capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    last = res.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) passed, 0 failed(, (\d+) skipped)?", last)
    assert m, last
    assert int(m.group(1)) >= 20, last            # every test class ran, not just one
    assert (m.group(3) or "0") == "1", last       # only the .pte check, which needs an ExecuTorch export


def test_jvm_tests_fail_on_a_wrong_golden_value(written, tmp_path):
    """The Java tests must be able to fail: shift one state value of the chain past the tolerance."""
    if shutil.which("javac") is None:
        pytest.skip("javac not found: apt-get install -y default-jdk-headless junit4 (CI installs them)")
    bad = tmp_path / "bad"
    shutil.copytree(written, bad)
    g = json.loads((bad / "golden.json").read_text())
    g["chain"]["states"][25][3] += 1e-3
    (bad / "golden.json").write_text(json.dumps(g))
    res = subprocess.run(["bash", str(JVM_SCRIPT), str(bad)], capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert re.search(r"^\d+ passed, [1-9]\d* failed", res.stdout, re.M), res.stdout[-2000:]
    assert "chain step 25 state[3]" in res.stdout


def test_refuses_to_overwrite_without_force(tiny_run, written):
    before = (written / "golden.json").stat().st_mtime_ns
    with pytest.raises(UserError, match="--force"):
        write_reference_assets(tiny_run, WIDTH, written)
    assert (written / "golden.json").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="not trained"):
        write_reference_assets(tiny_run, 12, written.parent / "other")


def test_no_executorch_artifact_is_a_clear_error(tiny_run, tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    cfg = json.loads((tiny_run / "config.json").read_text())
    shutil.copy(tiny_run / "catalog.json", root / "catalog.json")
    Manifest(root, run={"fingerprint": cfg["data"]["fingerprint"]}, shared=[], artifacts=[]).save()
    with pytest.raises(UserError, match="no ExecuTorch .*--target executorch"):
        write_android_assets(tiny_run, root, [], tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


def test_pick_entry_prefers_fp32_then_int8_and_the_widest(tmp_path):
    def e(width, quant, target="executorch"):
        ext = ".pte" if target == "executorch" else ".onnx"
        return {"id": f"{target}-d{width}-{quant}", "target": target, "width": width, "quantization": quant,
                "files": [{"path": f"{target}/d{width}-{quant}/model{ext}"}]}
    man = Manifest(tmp_path, artifacts=[e(8, "fp32"), e(16, "int8"), e(32, "fp32"), e(32, "int4")])
    assert pick_entry([e(16, "int8"), e(16, "fp32")], man)["id"] == "executorch-d16-fp32"
    assert pick_entry([e(8, "int8"), e(16, "int8")], man)["id"] == "executorch-d16-int8"
    assert pick_entry([e(16, "fp32", "onnx")], man)["id"] == "executorch-d16-int8"   # from the manifest
    assert pick_entry([], man)["id"] == "executorch-d32-fp32"
    assert pick_entry([], man, width=8)["id"] == "executorch-d8-fp32"
    with pytest.raises(UserError, match="width 64"):
        pick_entry([e(64, "fp32", "onnx")], man)


# -- the whole path with a real .pte, once the ExecuTorch exporter is in the repo -----------------------------
def _have_executorch_exporter() -> bool:
    return importlib.util.find_spec("fmrlrec_edge.export.executorch") is not None


@pytest.mark.skipif(not _have_executorch_exporter(), reason="export/executorch.py is not in the repo yet")
def test_pte_assets_from_a_real_executorch_export(tiny_run, tmp_path):
    from fmrlrec_edge.export import ExportRequest, export_run
    from fmrlrec_edge.fileio import sha256_file
    from fmrlrec_edge.runtime import open_runner

    root, assets = tmp_path / "exp", tmp_path / "assets"
    entries = export_run(ExportRequest(run_dir=tiny_run, out=root, dims=str(WIDTH), targets="executorch",
                                       quants=["fp32"], gate=False))
    entry = write_android_assets(tiny_run, root, entries, assets)
    assert entry["id"] == f"executorch-d{WIDTH}-fp32"
    pte = next(f for f in entry["files"] if f["path"].endswith(".pte"))
    assert sha256_file(assets / "model.pte") == pte["sha256"]
    assert json.loads((assets / "model.json").read_text()) == entry
    # what the app will compute (the .pte through ExecuTorch) agrees with the golden vectors
    g = json.loads((assets / "golden.json").read_text())
    runner = open_runner(root, WIDTH, "executorch", "fp32")
    state = runner.zero_state()
    for t, item in enumerate(g["chain"]["item_ids"][:10]):
        out = runner.step(item, state)
        state = out.state
        np.testing.assert_allclose(out.top_scores, g["chain"]["top_scores"][t], atol=1e-4)
        np.testing.assert_allclose(state.reshape(-1), g["chain"]["states"][t], atol=1e-4)
    with pytest.raises(UserError, match="--force"):
        write_android_assets(tiny_run, root, entries, assets)
    if shutil.which("javac"):   # now the JVM's model.pte check runs too, instead of being skipped
        res = subprocess.run(["bash", str(JVM_SCRIPT), str(assets)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert re.fullmatch(r"\d+ passed, 0 failed", res.stdout.strip().splitlines()[-1])
