"""`fmrlrec-edge profile` on a tiny ONNX export: one subprocess per row, report files, errors, leaks."""

import importlib.util
import json
import shutil

import pytest

from fmrlrec_edge.export import ExportRequest, export_run
from fmrlrec_edge.manifest import Manifest
from fmrlrec_edge.runtime.profile import ROW_KEYS, ProfileRequest, leak_check, run_profile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quiet():
    from rich.console import Console
    return Console(quiet=True)


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "exp"
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8,32", targets="onnx",
                             quants=["fp32", "int8"], gate=False), console=quiet())
    return out


@pytest.fixture(scope="module")
def profiled(onnx_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    req = ProfileRequest(export_dir=onnx_export, threads="1", steps=200, out=out)
    rows, paths = run_profile(req, console=quiet())
    return rows, paths, out


def test_one_row_per_artifact_and_thread_with_exact_keys(profiled, onnx_export):
    rows, paths, out = profiled
    ids = sorted(a["id"] for a in Manifest.load(onnx_export).artifacts)
    assert sorted(r["artifact_id"] for r in rows) == ids == sorted(
        f"onnx-d{d}-{q}" for d in (8, 32) for q in ("fp32", "int8"))
    saved = json.loads(paths["json"].read_text())
    assert saved == rows
    for r in saved:
        assert tuple(r) == ROW_KEYS, "report.json keys must be exactly the documented ones, in order"
        assert r["error"] is None and r["runnable"] is True and r["threads"] == 1
        for k in ("load_ms", "step_p50_us", "step_p95_us", "step_p99_us", "prefill_p50_us", "prefill_p95_us"):
            assert isinstance(r[k], float) and r[k] > 0, (k, r[k])
        assert r["step_p50_us"] <= r["step_p95_us"] <= r["step_p99_us"]
        assert isinstance(r["peak_rss_mb"], float) and isinstance(r["baseline_rss_mb"], float)
        assert r["baseline_rss_mb"] > 10          # an interpreter with numpy is never smaller than that
        assert r["size_bytes"] > 0 and r["width"] in (8, 32)
        # toy histories are 2..28 items long: prefill ran at the longest length there is, and says so
        assert 2 <= r["prefill_history_len"] <= 50
        assert r["quality_protocol"] and 0 <= r["recall_at_10"] <= r["recall_at_20"] <= 1
        # the onnxruntime profiler pass gave its own figures, outside the timed calls
        assert r["runtime_memory"]["ort_step_peak_bytes"] > 0


def test_fp32_parity_is_copied_from_the_manifest(profiled, onnx_export):
    rows, _, _ = profiled
    man = {a["id"]: a for a in Manifest.load(onnx_export).artifacts}
    for r in rows:
        par = man[r["artifact_id"]]["checks"]["parity"]
        assert r["parity_max_abs_diff"] == par["max_abs_diff"] and r["topk_overlap"] == par["mean_topk_overlap"]
        if r["quantization"] == "fp32":
            assert r["parity_max_abs_diff"] < 1e-4 and r["topk_overlap"] == 1.0


def test_markdown_and_plots(profiled):
    rows, paths, out = profiled
    md = paths["markdown"].read_text()
    for r in rows:
        assert f"| {r['artifact_id']} |" in md
    assert "How to read" in md and "VmHWM" in md and "CPU:" in md and "command:" in md
    assert len(paths["plots"]) == 2
    for p in paths["plots"]:
        data = p.read_bytes()
        assert p.parent == out and data[:8] == PNG_MAGIC and len(data) > 10_000
        assert f"]({p.name})" in md


def test_tampered_artifact_gives_an_error_row_and_the_run_finishes(onnx_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(onnx_export, copy)
    f = next(copy.rglob("d8-fp32/step.onnx"))
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    rows, paths = run_profile(ProfileRequest(export_dir=copy, dims="8", threads="1", steps=50,
                                             out=tmp_path / "rep"), console=quiet())
    by_id = {r["artifact_id"]: r for r in rows}
    bad = by_id["onnx-d8-fp32"]
    assert "sha256" in bad["error"] and bad["runnable"] is False
    assert bad["step_p50_us"] is None and bad["peak_rss_mb"] is None   # no numbers for what did not run
    good = by_id["onnx-d8-int8"]
    assert good["error"] is None and good["step_p50_us"] > 0
    assert "onnx-d8-fp32" in paths["markdown"].read_text() and "sha256" in paths["markdown"].read_text()


def test_missing_runner_and_foreign_host_rows(onnx_export, tmp_path):
    """A target whose runner is absent, and Core ML off macOS, give honest rows instead of crashing."""
    copy = tmp_path / "copy"
    shutil.copytree(onnx_export, copy)
    man = json.loads((copy / "manifest.json").read_text())
    base = next(a for a in man["artifacts"] if a["id"] == "onnx-d8-fp32")
    fake_cm = {**base, "id": "coreml-d8-fp16", "target": "coreml", "quantization": "fp16",
               "checks": {"parity": "not run (Core ML executes only on macOS)", "quality": "not run"}}
    # an executorch entry holding ONNX files: whether the executorch runner is missing or present (it then
    # finds no .pte), the row must carry an error
    fake_et = {**base, "id": "executorch-d8-fp32", "target": "executorch"}
    man["artifacts"] = [base, fake_cm, fake_et]
    (copy / "manifest.json").write_text(json.dumps(man))
    rows, _ = run_profile(ProfileRequest(export_dir=copy, targets="onnx,coreml,executorch", dims="8", threads="1",
                                         steps=50, out=tmp_path / "rep"), console=quiet())
    cm = next(r for r in rows if r["target"] == "coreml")
    import sys
    if sys.platform != "darwin":
        assert cm["runnable"] is False and cm["reason"] == "not runnable on this host (Core ML executes only on macOS)"
        assert cm["step_p50_us"] is None and cm["load_ms"] is None and cm["recall_at_10"] is None
    et = next(r for r in rows if r["target"] == "executorch")
    assert et["error"] and et["runnable"] is False and et["step_p50_us"] is None
    assert next(r for r in rows if r["target"] == "onnx")["step_p50_us"] > 0


def test_bad_requests_are_one_line_errors(onnx_export, tmp_path):
    from fmrlrec_edge.errors import UserError
    with pytest.raises(UserError, match="exported widths: 8,32"):
        run_profile(ProfileRequest(export_dir=onnx_export, dims="64", out=tmp_path), console=quiet())
    with pytest.raises(UserError, match="unknown target"):
        run_profile(ProfileRequest(export_dir=onnx_export, targets="tensorrt", out=tmp_path), console=quiet())
    with pytest.raises(UserError, match="--threads"):
        run_profile(ProfileRequest(export_dir=onnx_export, threads="0", out=tmp_path), console=quiet())
    with pytest.raises(UserError, match="device-profile"):
        run_profile(ProfileRequest(export_dir=onnx_export, device_profile="cores:999", out=tmp_path), console=quiet())


def test_device_profile_small_pins_one_core(onnx_export, tmp_path):
    rows, paths = run_profile(ProfileRequest(export_dir=onnx_export, dims="8", threads="1", steps=50,
                                             device_profile="small", out=tmp_path), console=quiet())
    assert all(r["device_profile"] == "small" and r["error"] is None for r in rows)
    assert "pinned to core(s)" in paths["markdown"].read_text()


# -- leaks: 10,000 steps must not grow resident memory -------------------------------------------------
LEAK_TARGETS = ["onnx", "executorch", "litert"]
LEAK_BOUND_MB = 4.0


@pytest.fixture(scope="module")
def leak_exports(tiny_run, onnx_export, tmp_path_factory):
    """onnx: the module's export; other targets are exported at width 8 on first use."""
    made = {"onnx": onnx_export}

    def get(target):
        if target not in made:
            out = tmp_path_factory.mktemp(f"leak-{target}") / "exp"
            export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8", targets=target, quants=["fp32"],
                                     gate=False), console=quiet())
            made[target] = out
        return made[target]
    return get


@pytest.mark.parametrize("target", LEAK_TARGETS)
def test_no_memory_growth_over_10k_steps(target, leak_exports):
    if importlib.util.find_spec(f"fmrlrec_edge.export.{target}") is None:
        pytest.skip(f"fmrlrec_edge.export.{target} does not exist yet (its exporter is being written)")
    root = leak_exports(target)
    res = leak_check(root, f"{target}-d8-fp32", steps=10_000, first=1_000)
    assert "error" not in res, res.get("error")
    assert res["steps"] == 10_000
    assert res["growth_mb"] < LEAK_BOUND_MB, f"{target}: RSS grew {res['growth_mb']} MB from step 1,000 to 10,000"
