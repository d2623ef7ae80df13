"""LiteRT export end to end on the tiny run: one .tflite with `step` + padded `prefill`, gates through the
LiteRT interpreter, padding invariance, the checked padded door, sizes, integrity, the CLI."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.export import ExportRequest, export_run
from fmrlrec_edge.manifest import MANIFEST, Manifest
from fmrlrec_edge.runtime import open_runner
from fmrlrec_edge.runtime.litert import LitertRunner


@pytest.fixture(scope="module")
def litert_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "litert"
    # fp32 at both widths; the quantized recipes only at 32 (each conversion takes seconds)
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8,32", targets="litert", quants=["fp32"], gate=False))
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="32", targets="litert", quants=["fp16", "int8"], gate=False))
    return out


@pytest.fixture(scope="module")
def eager32(tiny_run):
    model, _ = load_run(tiny_run)
    return DeployableWidth(model, 32)


def _eager_prefill(dw, ids):
    with torch.no_grad():
        s, i, st = dw.prefill(torch.as_tensor(np.asarray(ids, dtype=np.int64)))
    return s.numpy(), i.numpy(), st.numpy()


def test_manifest_entries(litert_export):
    man = Manifest.load(litert_export)
    assert sorted(a["id"] for a in man.artifacts) == sorted(
        ["litert-d8-fp32", "litert-d32-fp32", "litert-d32-fp16", "litert-d32-int8"])
    for a in man.artifacts:
        assert [f["path"].split("/")[-1] for f in a["files"]] == ["model.tflite"]
        man.verify(a)
        assert a["prefill"] == "padded"
        assert a["signature"]["prefill"]["inputs"] == {"item_ids": ["int64", [50]], "length": ["int64", [1]]}
        real = a["extra"]["signatures"]   # what the file really takes: the converter stores ids as int32
        assert real["step"]["inputs"]["state"] == ["float32", [2, 2, a["width"]]]
        assert real["prefill"]["inputs"]["item_ids"][1] == [50]
        assert set(real["step"]["outputs"]) == {"top_scores", "top_ids", "next_state"}
        assert a["checks"]["structure"]["signatures"] == ["prefill", "step"]
    assert not list(litert_export.rglob("*.tmp")), "staging folders must not survive"


def test_fp32_gates_pass(litert_export):
    for a in Manifest.load(litert_export).artifacts:
        if a["quantization"] == "fp32":
            p = a["checks"]["parity"]
            assert p["max_abs_diff"] <= 1e-4 and p["min_topk_overlap"] == 1.0
            assert p["chain_steps"] == 200 and p["chain_max_abs_diff"] <= 1e-4 and p["chain_min_topk_overlap"] == 1.0
            assert a["checks"]["gate"]["passed"] is True


def test_quantized_are_smaller(litert_export):
    man = Manifest.load(litert_export)
    size = {a["quantization"]: a["files"][0]["bytes"] for a in man.artifacts if a["width"] == 32}
    weights = {a["quantization"]: a["checks"]["structure"]["constant_bytes_by_dtype"]
               for a in man.artifacts if a["width"] == 32}
    assert size["int8"] < size["fp16"] < size["fp32"]
    assert weights["int8"].get("int8", 0) > weights["int8"].get("float32", 0)   # the item table is int8
    assert weights["fp16"].get("float16", 0) > weights["fp16"].get("float32", 0)
    for q in ("fp16", "int8"):   # quality is measured through the runtime either way
        assert 0 <= man.find(32, "litert", q)["checks"]["quality"]["recall@10"] <= 1


def test_padding_does_not_change_results(litert_export, eager32):
    r = open_runner(litert_export, 32, "litert", "fp32")
    for hist in ([7], [3, 6, 9, 12, 15], list(range(1, 51)), list(range(120, 70, -1))):
        got, ref = r.prefill(hist), _eager_prefill(eager32, hist)   # eager: the unpadded history
        np.testing.assert_allclose(got.top_scores, ref[0], atol=1e-4)
        assert (got.top_ids == ref[1]).all() and got.top_ids.dtype == np.int64 and 0 not in got.top_ids
        np.testing.assert_allclose(got.state, ref[2], atol=1e-4)


def test_step_equals_prefill_of_longer_history(litert_export):
    r = open_runner(litert_export, 32, "litert", "fp32")
    hist = np.array([3, 6, 9, 12, 15, 18], dtype=np.int64)
    full = r.prefill(hist)
    inc = r.step(hist[-1], r.prefill(hist[:-1]).state)
    np.testing.assert_allclose(full.top_scores, inc.top_scores, atol=1e-4)
    np.testing.assert_allclose(full.state, inc.state, atol=1e-4)
    assert (full.top_ids == inc.top_ids).all()
    first = r.step(hist[0], r.zero_state())          # a new user: step from the zero state == prefill([i])
    np.testing.assert_allclose(first.top_scores, r.prefill(hist[:1]).top_scores, atol=1e-4)


def test_state_returned_is_not_overwritten_by_later_calls(litert_export):
    r = open_runner(litert_export, 8, "litert", "fp32")
    a = r.prefill([1, 2, 3])
    kept = a.state.copy()
    r.prefill([50, 60, 70, 80])
    r.step(9, r.zero_state())
    np.testing.assert_array_equal(a.state, kept)


def test_padded_door_is_checked(litert_export):
    r = open_runner(litert_export, 8, "litert", "fp32")
    padded, length = r.pad_left(np.array([4, 5, 6], dtype=np.int64))
    np.testing.assert_allclose(r.prefill_padded(padded, length).top_scores, r.prefill([4, 5, 6]).top_scores, atol=0)
    with pytest.raises(UserError, match="exactly max_len=50"):
        r.prefill_padded(np.array([4, 5, 6]), [3])
    with pytest.raises(UserError, match="exactly max_len=50"):
        r.prefill_padded(np.zeros(51, dtype=np.int64), [3])
    for bad in ([0], [51], [1, 2], [2.5]):
        with pytest.raises(UserError, match="length must be one integer in 1..50"):
            r.prefill_padded(padded, bad)
    with pytest.raises(UserError, match="left-padded with 0"):
        r.prefill_padded(np.arange(1, 51), [3])
    with pytest.raises(UserError, match="outside 1.."):
        r.prefill_padded(padded, [4])      # the 4th item from the end is padding 0: not a real item
    with pytest.raises(UserError, match="1..50"):
        r.prefill(list(range(1, 60)))
    with pytest.raises(UserError, match="outside 1.."):
        r.step(10_000, r.zero_state())


def test_file_of_another_width_is_refused(litert_export):
    man = Manifest.load(litert_export)
    entry = dict(man.find(32, "litert", "fp32"), width=8)   # the d32 file under a d8 entry
    with pytest.raises(UserError, match="does not belong"):
        LitertRunner(litert_export, entry, verify=False)


def test_tampered_file_is_refused(litert_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(litert_export, copy)
    f = next(copy.rglob("d8-fp32/model.tflite"))
    data = bytearray(f.read_bytes()); data[len(data) // 2] ^= 0xFF; f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        open_runner(copy, 8, "litert", "fp32")
    # a file that is not a model at all (its hash updated to match) still gives a one-line error
    junk = b"not a tflite model"
    f.write_bytes(junk)
    man = json.loads((copy / MANIFEST).read_text())
    rec = next(a for a in man["artifacts"] if a["id"] == "litert-d8-fp32")["files"][0]
    rec["bytes"], rec["sha256"] = len(junk), hashlib.sha256(junk).hexdigest()
    (copy / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(UserError, match="LiteRT could not load"):
        open_runner(copy, 8, "litert", "fp32")


def test_recommend_cli(litert_export):
    from typer.testing import CliRunner

    from fmrlrec_edge.cli import app
    res = CliRunner().invoke(app, ["recommend", str(litert_export), "--dim", "32", "--target", "litert",
                                   "--history", "3,6,9", "--top", "5"])
    assert res.exit_code == 0, res.output
    assert "litert-d32-fp32" in res.output and "Toy item" in res.output


def test_missing_runtime_is_a_clear_error(monkeypatch):
    import sys

    from fmrlrec_edge.runtime.litert import interpreter_class
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)   # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    with pytest.raises(UserError, match="needs ai-edge-litert"):
        interpreter_class()
