"""ExecuTorch export end to end on the tiny run: one .pte with both methods, gates through the real
ExecuTorch runtime (XNNPACK), planned arenas, the runner's checks, integrity, ETDump profiles."""

import json
import shutil

import numpy as np
import pytest
import torch

from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.export import ExportRequest, export_run, get_exporter
from fmrlrec_edge.manifest import MANIFEST, Manifest
from fmrlrec_edge.runtime import open_runner
from fmrlrec_edge.runtime.executorch import ExecutorchRunner, planned_arenas

pytest.importorskip("executorch")


@pytest.fixture(scope="module")
def et_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "et"
    # gate=False: the toy int8 model may miss the quality bound; the checks still run and are recorded.
    # int8 at width 32 only (at 8 the program outweighs the weights), with --etdump's ETRecord
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8,32", targets="executorch", quants=["fp32"], gate=False))
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="32", targets="executorch", quants=["int8"], gate=False,
                             options={"etdump": True}))
    return out


def test_one_pte_per_artifact_with_both_methods(et_export):
    man = Manifest.load(et_export)
    assert sorted(a["id"] for a in man.artifacts) == [
        "executorch-d32-fp32", "executorch-d32-int8", "executorch-d8-fp32"]
    for a in man.artifacts:
        names = [f["path"].split("/")[-1] for f in a["files"]]
        assert names == (["model.etrecord", "model.pte"] if a["quantization"] == "int8" else ["model.pte"])
        man.verify(a)
        assert a["checks"]["structure"]["methods"] == ["prefill", "step"]
        assert all(n > 0 for n in a["checks"]["structure"]["xnnpack_partitions"].values())
        assert "executorch" in a["tool_versions"]
        # the planned arenas are read from the file itself, and again by the runner from the loaded program
        arenas = a["runtime_memory"]["planned_arena_bytes"]
        assert set(arenas) == {"prefill", "step"} and min(arenas.values()) > 0
        assert arenas["prefill"] > arenas["step"]  # prefill plans [T, T, m] kernels, step a few vectors
        pte = man.path(a["files"][-1]["path"]).read_bytes()
        assert {k: sum(v) for k, v in planned_arenas(pte).items()} == arenas
        assert a["runtime_memory"]["executorch_threads"] == 1


def test_fp32_parity_and_chain(et_export):
    for a in Manifest.load(et_export).artifacts:
        if a["quantization"] == "fp32":
            p = a["checks"]["parity"]
            assert p["max_abs_diff"] <= 1e-4 and p["min_topk_overlap"] == 1.0
            assert p["chain_steps"] == 200 and p["chain_max_abs_diff"] <= 1e-4 and p["chain_min_topk_overlap"] == 1.0
            assert p["state_max_abs_diff"] <= 1e-4
            assert a["checks"]["gate"]["passed"] is True


def test_int8_is_smaller_and_close(et_export):
    man = Manifest.load(et_export)
    size = {a["quantization"]: man.path(a["files"][-1]["path"]).stat().st_size
            for a in man.artifacts if a["width"] == 32}
    # a toy this small is mostly program (graph, lambda powers); at /tmp/runs/a d256 int8 is ~29% of fp32
    assert size["int8"] < 0.8 * size["fp32"]
    for a in Manifest.load(et_export).artifacts:
        if a["quantization"] == "int8":
            assert a["checks"]["parity"]["mean_topk_overlap"] >= 0.9
            assert "8da8w" in a["extra"]["recipe"]


def test_runner_equals_eager_and_step_equals_prefill(et_export, tiny_run):
    model, _ = load_run(tiny_run)
    dw = DeployableWidth(model, 32)
    r = open_runner(et_export, 32, "executorch", "fp32")
    try:
        hist = np.array([3, 6, 9, 12, 15, 18, 21], dtype=np.int64)
        full = r.prefill(hist)
        with torch.no_grad():
            ref = dw.prefill(torch.from_numpy(hist))
            ref_step = dw.step(torch.tensor([21]), ref[2])
        np.testing.assert_allclose(full.top_scores, ref[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(full.state, ref[2].numpy(), atol=1e-4)
        assert (full.top_ids == ref[1].numpy()).all() and 0 not in full.top_ids
        assert full.top_scores.dtype == np.float32 and full.top_ids.dtype == np.int64
        inc = r.step(hist[-1], r.prefill(hist[:-1]).state)          # the app's pattern
        np.testing.assert_allclose(inc.top_scores, full.top_scores, atol=1e-4)
        assert (inc.top_ids == full.top_ids).all()
        stepped = r.step(21, full.state)
        np.testing.assert_allclose(stepped.top_scores, ref_step[0].numpy(), atol=1e-4)
        one = r.prefill([5])                                         # T = 1, the smallest dynamic shape
        with torch.no_grad():
            np.testing.assert_allclose(one.top_scores, dw.prefill(torch.tensor([5]))[0].numpy(), atol=1e-4)
        long = r.prefill(np.arange(1, 51) % 120 + 1)                 # T = max_len, the largest
        assert long.state.shape == (2, 2, 32)
        assert r.memory_info()["planned_arena_bytes"] == r.entry["runtime_memory"]["planned_arena_bytes"]
    finally:
        r.close()


def test_runner_rejects_bad_inputs(et_export):
    r = open_runner(et_export, 32, "executorch", "int8")
    try:
        with pytest.raises(UserError, match="outside 1.."):
            r.step(10_000, r.zero_state())
        with pytest.raises(UserError, match="outside 1.."):
            r.prefill([0, 2])
        with pytest.raises(UserError, match="shape"):
            r.step(1, np.zeros((2, 2, 9), np.float32))
        with pytest.raises(UserError, match="finite"):
            r.step(1, np.full((2, 2, 32), np.nan, np.float32))
        with pytest.raises(UserError, match="1..50"):
            r.prefill(list(range(1, 60)))
    finally:
        r.close()
    with pytest.raises(UserError, match="closed"):
        r.step(1, r.zero_state())


def test_threadpool_is_process_wide(et_export):
    r = open_runner(et_export, 8, "executorch", "fp32", threads=1)
    try:  # resizing ExecuTorch's pool under a loaded method deadlocks it: refused instead
        with pytest.raises(UserError, match="threadpool"):
            open_runner(et_export, 32, "executorch", "fp32", threads=2)
        assert r.step(1, r.zero_state()).top_ids.shape == (r.top_k,)
    finally:
        r.close()


def test_tampered_pte_is_refused(et_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(et_export, copy)
    f = next(copy.rglob("d8-fp32/model.pte"))
    data = bytearray(f.read_bytes()); data[len(data) // 2] ^= 0xFF; f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        open_runner(copy, 8, "executorch", "fp32")
    # past the hash check (verify=False), a broken program is refused by the loader, never run
    entry = Manifest.load(copy).find(8, "executorch", "fp32")
    f.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="could not load .*too small"):
        ExecutorchRunner(copy, entry, verify=False)
    f.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not an ExecuTorch program"):
        ExecutorchRunner(copy, entry, verify=False)


def test_int4_needs_width_32(tiny_run, tmp_path):
    model, _ = load_run(tiny_run)
    with pytest.raises(UserError, match="int4 needs width >= 32"):
        get_exporter("executorch").export(DeployableWidth(model, 8), "int4", tmp_path, {})
    with pytest.raises(UserError, match="choose one of: fp32, int8, int4"):
        get_exporter("executorch").check_quant("fp16")


def test_etdump_profile(et_export, tmp_path):
    """--etdump wrote an ETRecord next to the .pte; a runner opened with etdump=True records per-op events."""
    from executorch.devtools.etrecord import parse_etrecord
    entry = Manifest.load(et_export).find(32, "executorch", "int8")
    assert entry["extra"]["etrecord"] == "model.etrecord"
    etrecord = parse_etrecord(str(Manifest.load(et_export).path(entry["files"][0]["path"])))
    assert set(etrecord.edge_dialect_program) == {"prefill", "step"}
    r = open_runner(et_export, 8, "executorch", "fp32", etdump=True)
    try:
        r.step(3, r.prefill([1, 2]).state)
        events = r.op_profile(tmp_path / "run.etdump")
    finally:
        r.close()
    assert (tmp_path / "run.etdump").stat().st_size > 0
    names = {e["event"] for e in events}
    assert "DELEGATE_CALL" in names and any(n.startswith("native_call_") for n in names)
    assert all(e["calls"] >= 1 and e["median_ms"] >= 0 for e in events)


def test_manifest_path_escape_refused(et_export, tmp_path):
    copy = tmp_path / "copy2"
    shutil.copytree(et_export, copy)
    man = json.loads((copy / MANIFEST).read_text())
    man["artifacts"][0]["files"][0]["path"] = "../../etc/passwd"
    (copy / MANIFEST).write_text(json.dumps(man))
    a = man["artifacts"][0]
    with pytest.raises(UserError, match="outside the export root"):
        open_runner(copy, a["width"], "executorch", a["quantization"])
