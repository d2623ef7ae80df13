"""Bad input per command (one line, exit 2, no traceback), faults (kill mid-export, disk full), integrity
and security. The table in docs/reliability.md lists these cases."""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmrlrec_edge.errors import UserError
from fmrlrec_edge.export import ExportRequest, export_run
from fmrlrec_edge.manifest import MANIFEST
from fmrlrec_edge.runtime import open_runner

REPO = Path(__file__).resolve().parents[1]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fmrlrec_edge.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_one_line_error(res, pattern):
    assert res.returncode == 2, (res.returncode, res.stdout[-800:], res.stderr[-1500:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), res.stderr[-1500:]


@pytest.fixture(scope="module")
def export_root(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "exp"
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8", targets="onnx", quants=["fp32"]))
    return out


def copy_run(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


# -- evaluate ---------------------------------------------------------------------------------------------
def test_evaluate_missing_run(tmp_path):
    assert_one_line_error(cli("evaluate", tmp_path / "nope"), "run folder not found")


def test_evaluate_truncated_checkpoint(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert_one_line_error(cli("evaluate", run), "not a readable safetensors file.*truncated")


def test_evaluate_checkpoint_from_another_config(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["widths"] = [8, 16, 64]
    (run / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(cli("evaluate", run), "does not match its config.json")


def test_evaluate_bad_split(tiny_run):
    assert_one_line_error(cli("evaluate", tiny_run, "--split", "train"), "--split must be test or val")


def test_evaluate_json_has_both_protocols(tiny_run):
    res = cli("evaluate", tiny_run, "--json")
    assert res.returncode == 0, res.stderr[-1000:]
    out = json.loads(res.stdout)
    assert set(out["widths"]) == {"8", "16", "32"} and "recall@10" in out["popularity"]
    assert set(out["widths"]["32"]) == {"masked", "unmasked"}


# -- train ------------------------------------------------------------------------------------------------
def test_train_nan_features(tmp_path):
    from conftest import make_tiny_dataset
    data = make_tiny_dataset(tmp_path / "d")
    f = np.load(data / "features.npy"); f[5, 3] = np.nan; np.save(data / "features.npy", f)
    assert_one_line_error(cli("train", "--dataset", f"amazon:{data}", "--features", data / "features.npy",
                              "--out", tmp_path / "r", "--epochs", "1"), r"NaN")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_train_no_user_left(tmp_path):
    d = tmp_path / "short"; d.mkdir()
    (d / "sequences.txt").write_text("1 1 2\n2 3\n")
    (d / "items.tsv").write_text("item_id\ttitle\tcategories\n1\ta\tx\n2\tb\tx\n3\tc\tx\n")
    assert_one_line_error(cli("train", "--dataset", f"amazon:{d}", "--out", tmp_path / "r"), "fewer than 3|no user")


# -- export -----------------------------------------------------------------------------------------------
def test_export_width_not_trained(tiny_run, tmp_path):
    assert_one_line_error(cli("export", tiny_run, "--dim", "64", "--target", "onnx", "--out", tmp_path / "e"),
                          "width 64 was not trained; trained widths: 8,16,32")


def test_export_unknown_target_and_quant(tiny_run, tmp_path):
    assert_one_line_error(cli("export", tiny_run, "--dim", "8", "--target", "tensorrt", "--out", tmp_path / "e"),
                          "unknown target 'tensorrt'; choose one of: onnx, executorch, coreml, litert")
    assert_one_line_error(cli("export", tiny_run, "--dim", "8", "--target", "onnx", "--quant", "int2",
                              "--out", tmp_path / "e"), "no quantization 'int2'; choose one of: fp32, fp16, int8")


def test_export_refuses_overwrite(tiny_run, export_root):
    assert_one_line_error(cli("export", tiny_run, "--dim", "8", "--target", "onnx", "--quant", "fp32",
                              "--out", export_root), "already exists; pass --force")


def _tree_hashes(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".manifest.lock")}


def test_export_killed_mid_write_leaves_previous_export_intact(tiny_run, export_root, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(export_root, root)
    before = _tree_hashes(root)
    proc = subprocess.Popen([sys.executable, "-m", "fmrlrec_edge.cli", "export", str(tiny_run), "--dim", "8",
                             "--target", "onnx", "--quant", "fp32", "--out", str(root), "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((root / "onnx").glob(".d8-fp32.*.tmp/*.onnx")):
        time.sleep(0.02)       # wait until the new artifact is being written
    proc.send_signal(signal.SIGKILL); proc.wait()
    after = _tree_hashes(root)
    assert {k: v for k, v in after.items() if ".tmp" not in k} == before
    r = open_runner(root, 8, "onnx", "fp32")           # the previous artifact still loads and verifies
    assert r.prefill([1, 2, 3]).top_ids.shape == (r.top_k,)


def test_export_disk_full_leaves_no_partial_files(tiny_run, tmp_path, monkeypatch):
    """Fault injection: the exporter's write fails with ENOSPC half way (as on a full disk)."""
    import fmrlrec_edge.export.onnx as onnx_mod
    real = onnx_mod.export_fp32

    def failing(dw, out_dir):
        real(dw, out_dir)   # files are written into the staging folder, then the disk "fills up"
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_mod, "export_fp32", failing)
    root = tmp_path / "exp"
    with pytest.raises(UserError, match="No space left on device.*disk space"):
        export_run(ExportRequest(run_dir=tiny_run, out=root, dims="8", targets="onnx", quants=["fp32"]))
    assert not (root / "onnx" / "d8-fp32").exists()
    assert not [p for p in root.rglob("*") if p.suffix == ".onnx"]
    man = json.loads((root / MANIFEST).read_text())
    assert man["artifacts"] == []


# -- recommend / runners --------------------------------------------------------------------------------
def test_recommend_prints_titles(export_root):
    res = cli("recommend", export_root, "--dim", "8", "--target", "onnx", "--history", "3,6,9")
    assert res.returncode == 0, res.stderr[-1000:]
    assert "Toy item" in res.stdout


@pytest.mark.parametrize("history,pattern", [("a,b", "comma-separated item ids"), ("1,99999", "outside 1..120"),
                                             ("-3", "outside 1..120"), ("", "empty")])
def test_recommend_bad_history(export_root, history, pattern):
    assert_one_line_error(cli("recommend", export_root, "--dim", "8", "--target", "onnx", "--history", history),
                          pattern)


def test_recommend_tampered_manifest_sha(export_root, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(export_root, root)
    man = json.loads((root / MANIFEST).read_text())
    man["artifacts"][0]["files"][0]["sha256"] = "0" * 64
    (root / MANIFEST).write_text(json.dumps(man))
    assert_one_line_error(cli("recommend", root, "--dim", "8", "--target", "onnx", "--history", "1,2"),
                          "does not match its sha256")


def test_recommend_missing_export(tmp_path):
    assert_one_line_error(cli("recommend", tmp_path / "none", "--dim", "8", "--history", "1"), "no manifest.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True)),
                    max_size=70),
       state_shape=st.lists(st.integers(0, 40), min_size=0, max_size=4))
def test_runner_inputs_property(export_root, ids, state_shape):
    """No input makes a runner fail with anything but UserError (the runtime never sees bad input)."""
    r = _runner_cache(export_root)
    try:
        r.prefill(ids)
    except UserError:
        pass
    try:
        r.step(ids[0] if ids else 1, np.zeros(state_shape, np.float32))
    except UserError:
        pass


_RUNNERS = {}


def _runner_cache(root):
    if root not in _RUNNERS:
        _RUNNERS[root] = open_runner(root, 8, "onnx", "fp32")
    return _RUNNERS[root]


# -- security ---------------------------------------------------------------------------------------------
def test_no_pickle_eval_exec_or_unsafe_torch_load():
    bad = []
    for p in list((REPO / "fmrlrec_edge").rglob("*.py")) + list((REPO / "export").rglob("*.py")) + \
            list((REPO / "runtime").rglob("*.py")) + list((REPO / "benchmarks").rglob("*.py")):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"pickle\.loads?\(|(?<![.\w])eval\(|(?<![.\w])exec\(|allow_pickle=True", line) or \
                    ("torch.load(" in line and "weights_only=True" not in line):
                bad.append(f"{p.name}:{n}: {line.strip()}")
    assert not bad, bad


def test_checkpoints_are_safetensors_and_json(tiny_run):
    files = {p.name for p in tiny_run.rglob("*") if p.is_file()}
    assert all(f.endswith((".safetensors", ".json")) for f in files), files
