"""Training: it learns, it resumes exactly after SIGKILL, it is deterministic, DDP ranks agree, bad input
gives one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from conftest import make_tiny_dataset
from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.config import TrainConfig
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.train import train, training_windows

QUIET = Console(quiet=True)


def test_training_windows_cover_every_position():
    seq = list(range(1, 121))
    wins = training_windows([seq], max_len=50)
    targets = sorted(t for w in wins for t in w[1:])
    assert targets == seq[1:] and max(len(w) for w in wins) == 51


def test_ml100k_short_run_learns_and_beats_popularity(tmp_path):
    res = train(TrainConfig(dataset="ml-100k", epochs=3, batch_size=64, lr=3e-3, warmup_steps=20),
                tmp_path / "run", {"widths": (8, 16, 32), "id_embedding": True}, console=QUIET, quiet=True)
    losses = [h["train_loss"] for h in res["history"]]
    assert losses[-1] < losses[0] - 0.3, losses
    full = res["widths"]["32"]["val"]["unmasked"]["ndcg@10"]
    assert full > res["popularity"]["val"]["unmasked"]["ndcg@10"], (full, res["popularity"])
    model, cfg = load_run(tmp_path / "run")            # checkpoint round trip
    assert cfg["model"]["widths"] == [8, 16, 32] and model.cfg.n_items == 1682


ENV1 = {**os.environ, "OMP_NUM_THREADS": "1"}   # one thread count for every run: same float reduction order


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fmrlrec_edge.cli", *args], capture_output=True, text=True,
                          env=ENV1, **kw)


def _train_args(data: Path, out: Path, epochs=4):
    return ["train", "--dataset", f"amazon:{data}", "--features", str(data / "features.npy"), "--out", str(out),
            "--epochs", str(epochs), "--widths", "8,16,32", "--batch-size", "16", "--patience", "99"]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", n_users=400)
    ref = _cli(*_train_args(data, tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-2000:]
    # same run, killed with SIGKILL once the first epoch is committed
    proc = subprocess.Popen([sys.executable, "-m", "fmrlrec_edge.cli", *_train_args(data, tmp_path / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV1)
    progress = tmp_path / "run" / "resume" / "progress.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL); proc.wait()
    if killed:  # the run really was interrupted (on a very fast machine it may have finished first)
        assert json.loads(progress.read_text())["epoch"] < 4
    res = _cli(*_train_args(data, tmp_path / "run"), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert a["widths"] == b["widths"]                     # identical metrics, every width
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_same_seed_same_metrics(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    runs = []
    for name in ("a", "b"):
        tcfg = TrainConfig(dataset=f"amazon:{data}", features_file=str(data / "features.npy"), epochs=2, batch_size=32)
        runs.append(train(tcfg, tmp_path / name, {"widths": (8, 16)}, console=QUIET, quiet=True))
    assert runs[0]["widths"] == runs[1]["widths"] and runs[0]["history"] == runs[1]["history"]


def test_existing_run_needs_resume_or_force(tiny_run):
    with pytest.raises(UserError, match="--resume.*--force"):
        train(TrainConfig(), tiny_run, console=QUIET, quiet=True)


def test_ddp_two_cpu_processes_agree(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "fmrlrec_edge.train", "--out", str(tmp_path / "ddp"), "--dataset", f"amazon:{data}",
           "--features", str(data / "features.npy"), "--epochs", "2", "--widths", "8,16"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    params = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["params"]
    assert params["world_size"] == 2
    c0, c1 = params["rank_checksums"]
    assert c0 == c1, "ranks hold different weights"


@pytest.mark.parametrize("args,message", [
    (["--dataset", "amazon:/nonexistent/folder"], "sequences.txt"),
    (["--dataset", "parquet-ish:foo"], "ml-100k"),
    (["--widths", "16,8"], "strictly increasing"),
    (["--widths", "8,x"], "comma-separated integers"),
    (["--device", "tpu"], "auto, cpu or cuda"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    res = _cli("train", "--out", str(tmp_path / "r"), "--epochs", "1", *args)
    assert res.returncode == 2, (res.returncode, res.stderr[-1500:])
    lines = [l for l in res.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], res.stderr[-1500:]
    assert "Traceback" not in res.stderr
