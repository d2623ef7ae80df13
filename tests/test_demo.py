"""The README's main job end to end (train -> export every width -> profile -> report path), on toy data."""

import json
import os
import subprocess
import sys

from conftest import make_tiny_dataset


def test_demo_end_to_end(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    out = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "fmrlrec_edge.cli", "demo", "--out", str(out), "--epochs", "2",
                          "--dataset", f"amazon:{data}", "--features", str(data / "features.npy"),
                          "--target", "onnx"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "report:" in res.stdout and str(out / "report" / "report.md") in res.stdout.replace("\n", "")
    rows = json.loads((out / "report" / "report.json").read_text())
    manifest = json.loads((out / "exports" / "manifest.json").read_text())
    assert {r["artifact_id"] for r in rows} == {a["id"] for a in manifest["artifacts"]}
    assert {a["width"] for a in manifest["artifacts"]} == {8, 16, 32, 64, 128, 256}
    assert all(r["step_p50_us"] > 0 for r in rows)
