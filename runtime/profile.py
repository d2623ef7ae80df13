"""`fmrlrec-edge profile`: latency, memory, size and quality of every exported artifact.

Each (artifact, thread count) runs in its OWN subprocess (`python -m fmrlrec_edge.runtime.profile
--worker SPEC`, which prints one JSON line), so the memory a row reports belongs to that artifact alone:

  baseline  = VmRSS after importing numpy and the target's runner module, before the model is loaded
  peak      = VmHWM (the process's resident high-water mark) after load + warm-up + every timed call
  peak_rss_mb = (peak - baseline) / 2**20

Timing: `step` walks real test-split histories item by item, feeding each returned state back (a new
user starts from the zero state), exactly as an app would; `prefill` runs on test histories of
`history_len` items. Only the runtime call is on the clock (`Runner._step` / `_prefill` with inputs
validated beforehand), measured with `time.perf_counter_ns`. The runtime's own memory figures
(`memory_info()`, e.g. onnxruntime's profiler) come from a separate short pass after timing, because
profiling slows every call. Parity and quality are the checks the exporter ran through the same runtime
and recorded in the manifest; they are copied, never re-estimated here.

A target whose runner is missing or fails, or an artifact whose files are missing or changed, gives a
row with `error` set and the run goes on. A target that cannot execute on this host (Core ML off macOS)
gives a row with runnable=false, its reason, and null latencies: never made-up numbers.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmrlrec_edge.errors import UserError
from fmrlrec_edge.manifest import Manifest

from .base import RUNNER_MODULES, get_runner_class

ROW_KEYS = ("artifact_id", "width", "target", "quantization", "threads", "device_profile", "size_bytes",
            "load_ms", "step_p50_us", "step_p95_us", "step_p99_us", "prefill_p50_us", "prefill_p95_us",
            "prefill_history_len", "peak_rss_mb", "baseline_rss_mb", "runtime_memory",
            "parity_max_abs_diff", "topk_overlap", "recall_at_10", "ndcg_at_10", "recall_at_20",
            "quality_protocol", "runnable", "reason", "error")
# the keys a worker measures; everything else in a row comes from the manifest
MEASURED = ("load_ms", "step_p50_us", "step_p95_us", "step_p99_us", "prefill_p50_us", "prefill_p95_us",
            "prefill_history_len", "peak_rss_mb", "baseline_rss_mb")

# targets whose runtime executes only on some host OS: target -> (sys.platform prefix, reason)
HOST_ONLY = {"coreml": ("darwin", "not runnable on this host (Core ML executes only on macOS)")}

SPLIT = "eval_split.safetensors"
WARMUP_STEPS = 50
WARMUP_PREFILLS = 10
MEMORY_PASS_CALLS = 20          # calls in the separate runtime-profiler pass
LEAK_STEPS, LEAK_FIRST = 10_000, 1_000


@dataclass
class ProfileRequest:
    export_dir: Path
    targets: str = "onnx,executorch,litert,coreml"
    dims: str = "all"                     # "all" or a comma list of widths
    threads: str = "1,2"                  # each thread count is its own row
    steps: int = 2000                     # timed step calls per row (after warm-up)
    history_len: int = 50                 # history length of the timed prefill calls
    out: Path | None = None               # report folder (default: EXPORT_DIR/report)
    device_profile: str | None = None     # None | "small" (1 core) | "cores:0,1"
    command: str | None = None            # shown in report.md (default: this process's argv)
    timeout_s: float | None = None        # per worker (default: generous, scaled with steps)


# -- request parsing (one-line errors for anything a user can type) -------------------------------------
def parse_targets(spec: str) -> list[str]:
    names = [t.strip().lower() for t in str(spec).split(",") if t.strip()]
    if names == ["all"]:
        return list(RUNNER_MODULES)
    if not names:
        raise UserError(f"--targets is empty; choose from: {', '.join(RUNNER_MODULES)}")
    for t in names:
        if t not in RUNNER_MODULES:
            raise UserError(f"unknown target {t!r}; choose from: {', '.join(RUNNER_MODULES)}, all")
    return list(dict.fromkeys(names))


def parse_int_list(spec: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in str(spec).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be a comma list of integers, got {spec!r}") from None
    if not vals or min(vals) < 1:
        raise UserError(f"{what} must be a comma list of integers >= 1, got {spec!r}")
    return list(dict.fromkeys(vals))


def parse_device_profile(spec: str | None) -> list[int] | None:
    """CPU cores to pin every worker to (None: no pinning)."""
    if spec is None or str(spec).strip() == "":
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise UserError("--device-profile pins cores with sched_setaffinity, which this OS does not have (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    s = str(spec).strip().lower()
    if s == "small":                      # one core: a small phone's single big core, roughly
        return [allowed[0]]
    if s.startswith("cores:"):
        try:
            cores = sorted({int(c) for c in s[len("cores:"):].split(",") if c.strip()})
        except ValueError:
            cores = []
        if not cores or min(cores) < 0:
            raise UserError(f"--device-profile cores must be a comma list of core numbers, e.g. 'cores:0,1'; got {spec!r}")
        bad = [c for c in cores if c not in allowed]
        if bad:
            raise UserError(f"--device-profile core(s) {','.join(map(str, bad))} not available; "
                            f"this process may use cores {','.join(map(str, allowed))}")
        return cores
    raise UserError(f"--device-profile must be 'small' or 'cores:0,1', got {spec!r}")


def select_artifacts(man: Manifest, targets: list[str], dims: str) -> list[dict]:
    exported = sorted({a["width"] for a in man.artifacts})
    if str(dims).strip().lower() == "all":
        widths = exported
    else:
        try:
            widths = [int(d) for d in str(dims).split(",") if d.strip()]
        except ValueError:
            raise UserError(f"--dims must be 'all' or a comma list of widths; exported: "
                            f"{','.join(map(str, exported)) or 'none'}") from None
        missing = [d for d in widths if d not in exported]
        if missing:
            raise UserError(f"width {missing[0]} is not in {man.root / 'manifest.json'}; exported widths: "
                            f"{','.join(map(str, exported)) or 'none'}")
    arts = [a for a in man.artifacts if a["target"] in targets and a["width"] in widths]
    if not arts:
        have = ", ".join(a["id"] for a in man.artifacts) or "none"
        raise UserError(f"no artifact of target(s) {','.join(targets)} at width(s) {dims} in {man.root}; "
                        f"exported: {have}")
    order = {t: i for i, t in enumerate(RUNNER_MODULES)}
    qorder = {q: i for i, q in enumerate(("fp32", "fp16", "int8", "int4"))}
    return sorted(arts, key=lambda a: (order.get(a["target"], 9), a["width"], qorder.get(a["quantization"], 9)))


# -- the parent: one subprocess per row, a progress bar, the report --------------------------------------
def run_profile(req: ProfileRequest, console=None) -> tuple[list[dict], dict]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report

    console = console or Console(stderr=True)
    if int(req.steps) < 1 or int(req.history_len) < 1:
        raise UserError(f"--steps and --history-len must be >= 1, got {req.steps} and {req.history_len}")
    root = Path(req.export_dir)
    man = Manifest.load(root)
    targets = parse_targets(req.targets)
    threads = parse_int_list(req.threads, "--threads")
    cores = parse_device_profile(req.device_profile)
    arts = select_artifacts(man, targets, req.dims)
    man.shared_path(SPLIT)                # the test split must be there (and intact) before any work
    out = Path(req.out) if req.out is not None else root / "report"
    report.prepare(out)
    absent = [t for t in targets if not any(a["target"] == t for a in man.artifacts)]
    if absent:
        console.print(f"[yellow]no {', '.join(absent)} artifacts in {root}: nothing to profile for them")

    jobs = [(a, t) for a in arts for t in threads]
    rows = []
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("profile", total=len(jobs))
        for entry, n_threads in jobs:
            bar.update(task, description=f"{entry['id']} x{n_threads} thread{'s' if n_threads > 1 else ''}")
            row = profile_one(root, entry, n_threads, req, cores)
            rows.append(row)
            if row["error"]:
                console.print(f"[red]✗[/] {entry['id']} x{n_threads}: {row['error']}", highlight=False)
            elif not row["runnable"]:
                console.print(f"[yellow]-[/] {entry['id']}: {row['reason']}", highlight=False)
            else:
                console.print(f"[green]✓[/] {entry['id']} x{n_threads}: step p50 {row['step_p50_us']:.1f} us, "
                              f"prefill({row['prefill_history_len']}) p50 {row['prefill_p50_us']:.1f} us, "
                              f"peak +{row['peak_rss_mb']:.1f} MB", highlight=False)
            bar.advance(task)
    paths = report.write_report(rows, out, req, machine=report.machine_info(cores))
    return rows, paths


def base_row(entry: dict, threads: int, device_profile: str | None) -> dict:
    """What the manifest already knows about an artifact (size, export-time parity and quality)."""
    checks = entry.get("checks") or {}
    par = checks.get("parity") if isinstance(checks.get("parity"), dict) else {}
    qual = checks.get("quality") if isinstance(checks.get("quality"), dict) else {}
    row = dict.fromkeys(ROW_KEYS)
    row.update(
        artifact_id=entry["id"], width=int(entry["width"]), target=entry["target"],
        quantization=entry["quantization"], threads=int(threads), device_profile=device_profile,
        size_bytes=int(sum(int(f.get("bytes", 0)) for f in entry.get("files", []))),
        runtime_memory=dict(entry.get("runtime_memory") or {}),
        parity_max_abs_diff=par.get("max_abs_diff"), topk_overlap=par.get("mean_topk_overlap"),
        recall_at_10=qual.get("recall@10"), ndcg_at_10=qual.get("ndcg@10"), recall_at_20=qual.get("recall@20"),
        quality_protocol=qual.get("protocol"), runnable=False)
    return row


def host_reason(target: str) -> str | None:
    if target in HOST_ONLY and not sys.platform.startswith(HOST_ONLY[target][0]):
        return HOST_ONLY[target][1]
    return None


def profile_one(root: Path, entry: dict, threads: int, req: ProfileRequest, cores: list[int] | None) -> dict:
    row = base_row(entry, threads, req.device_profile)
    reason = host_reason(entry["target"])
    if reason:
        row["reason"] = reason
        return row
    spec = {"mode": "profile", "export_dir": str(Path(root).resolve()), "artifact_id": entry["id"],
            "threads": threads, "steps": int(req.steps), "history_len": int(req.history_len), "cores": cores}
    timeout = req.timeout_s or 300 + 0.05 * int(req.steps)
    res = run_worker(spec, threads, timeout)
    if "error" in res:
        row["error"] = res["error"]
        return row
    for k in MEASURED:
        row[k] = res[k]
    row["runtime_memory"].update(res.get("runtime_memory") or {})
    row["runnable"] = True
    return row


def run_worker(spec: dict, threads: int, timeout: float) -> dict:
    """Run one worker subprocess; always returns a dict (with "error" when it did not finish)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)   # runtimes that size their pools from OpenMP honour the row's count
    cmd = [sys.executable, "-m", "fmrlrec_edge.runtime.profile", "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if lines:
        try:
            res = json.loads(lines[-1])
            if isinstance(res, dict):
                return res
        except json.JSONDecodeError:
            pass
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with code {proc.returncode}"
    return {"error": f"worker {how}: {tail[0][:300]}"}


def leak_check(export_dir: str | Path, artifact_id: str, steps: int = LEAK_STEPS, first: int = LEAK_FIRST,
               threads: int = 1, timeout: float = 600) -> dict:
    """Resident memory after `first` and after `steps` public `step` calls, in a fresh subprocess.

    Returns {"rss_first_mb", "rss_end_mb", "growth_mb", "steps"} (or {"error": ...}).
    """
    spec = {"mode": "leak", "export_dir": str(Path(export_dir).resolve()), "artifact_id": artifact_id,
            "threads": threads, "steps": int(steps), "first": int(first), "cores": None}
    return run_worker(spec, threads, timeout)


# -- the worker: everything below runs inside the subprocess ---------------------------------------------
def _proc_status_kb(key: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: resident high-water mark)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise UserError(f"/proc/self/status has no {key}: resident memory can only be measured on Linux")


def _mb(kb: int) -> float:
    return round(kb * 1024 / 2**20, 2)


def _pct_us(ns: np.ndarray, q: float) -> float:
    return round(float(np.percentile(ns, q)) / 1e3, 2)


def _test_histories(man: Manifest) -> list[np.ndarray]:
    """Test-split histories (oldest first, padding removed), read without torch so the worker stays lean."""
    from safetensors.numpy import load_file
    path = man.shared_path(SPLIT)
    try:
        hist = load_file(str(path))["test_history"]
    except Exception as exc:  # a damaged split would pass sha256 only if the manifest was rewritten with it
        raise UserError(f"{path} has no readable test split ({str(exc).splitlines()[0]})") from None
    users = [row[row > 0].astype(np.int64) for row in hist]
    users = [u for u in users if u.size]
    if not users:
        raise UserError(f"{path} holds no non-empty test history to time with")
    return users


def _step_stream(users: list[np.ndarray], n: int) -> list[tuple[np.ndarray, bool]]:
    """n (item_id int64[1], new_user) pairs: users' histories item by item, cycling over users."""
    out = []
    while len(out) < n:
        for u in users:
            for k, item in enumerate(u):
                out.append((np.array([item], dtype=np.int64), k == 0))
                if len(out) == n:
                    return out
    return out


def _prefill_inputs(users: list[np.ndarray], want: int, max_len: int) -> tuple[list[np.ndarray], int]:
    """Histories of `want` items (capped at max_len), or the longest available; and the length used."""
    length = min(want, max_len, max(u.size for u in users))
    hists = [u[-length:] for u in users if u.size >= length]
    return hists, length


def _check_output(out, runner) -> None:
    """One look at a runner's answer before timing it: a broken runner must not produce a latency row."""
    k = runner.top_k
    if np.shape(out.top_ids) != (k,) or np.shape(out.top_scores) != (k,) or \
            np.shape(out.state) != (runner.n_layers, 2, runner.width):
        raise UserError(f"runner returned shapes {np.shape(out.top_scores)}, {np.shape(out.top_ids)}, "
                        f"{np.shape(out.state)}; expected [{k}], [{k}], [{runner.n_layers}, 2, {runner.width}]")


def prefill_calls(steps: int) -> int:
    """Timed prefill calls per row: fewer than steps (a prefill costs ~T steps), never too few for a p95."""
    return max(20, min(int(steps) // 4, 500))


def _as_state(state) -> np.ndarray:
    return np.ascontiguousarray(state, dtype=np.float32)


def _worker_profile(spec: dict) -> dict:
    root = Path(spec["export_dir"])
    man = Manifest.load(root)
    entry = next((a for a in man.artifacts if a["id"] == spec["artifact_id"]), None)
    if entry is None:
        raise UserError(f"artifact {spec['artifact_id']} is not in {root / 'manifest.json'}")
    try:
        cls = get_runner_class(entry["target"])     # imports the runtime's Python module: part of the baseline
    except ImportError as exc:
        raise UserError(f"the {entry['target']} runner is not available on this host ({exc})") from None
    users = _test_histories(man)
    man.verify(entry)                                # sha256 of every file: a changed artifact is refused here
    threads = int(spec["threads"])

    if spec["mode"] == "leak":
        runner = cls(root, entry, threads=threads, verify=False)
        stream = _step_stream(users, int(spec["steps"]))
        zero, state, rss_first = runner.zero_state(), None, None
        for k, (ids, new_user) in enumerate(stream, 1):
            state = runner.step(ids, zero if new_user else state).state   # the public, checked API
            if k == int(spec["first"]):
                rss_first = _proc_status_kb("VmRSS")
        rss_end = _proc_status_kb("VmRSS")
        runner.close()
        return {"steps": len(stream), "rss_first_mb": _mb(rss_first), "rss_end_mb": _mb(rss_end),
                "growth_mb": round(_mb(rss_end) - _mb(rss_first), 2)}

    baseline_kb = _proc_status_kb("VmRSS")
    t0 = time.perf_counter_ns()
    runner = cls(root, entry, threads=threads, verify=False)
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    # step: warm-up, then timed calls, each user's history item by item with the state fed back
    n = int(spec["steps"])
    stream = _step_stream(users, WARMUP_STEPS + n)
    zero = _as_state(runner.zero_state())
    state, times = zero, np.empty(n, dtype=np.int64)
    for k, (ids, new_user) in enumerate(stream):
        if new_user:
            state = zero
        t = time.perf_counter_ns()
        out = runner._step(ids, state)
        dt = time.perf_counter_ns() - t
        if k == 0:
            _check_output(out, runner)
        if k >= WARMUP_STEPS:
            times[k - WARMUP_STEPS] = dt
        state = _as_state(out.state)
    step_ns = times

    # prefill: real histories of history_len items
    hists, length = _prefill_inputs(users, int(spec["history_len"]), runner.max_len)
    n_pre = prefill_calls(n)
    pre_ns = np.empty(n_pre, dtype=np.int64)
    for k in range(WARMUP_PREFILLS + n_pre):
        ids = hists[k % len(hists)]
        t = time.perf_counter_ns()
        out = runner._prefill(ids)
        dt = time.perf_counter_ns() - t
        if k == 0:
            _check_output(out, runner)
        if k >= WARMUP_PREFILLS:
            pre_ns[k - WARMUP_PREFILLS] = dt

    peak_kb = _proc_status_kb("VmHWM")              # read before the profiler pass below adds its own memory
    runtime_memory = {}
    try:
        runtime_memory.update(runner.memory_info() or {})
        runner.close()
        if "profile" in inspect.signature(cls.__init__).parameters:
            # the runtime's profiler slows every call: a separate short pass, never during timing
            prof = cls(root, entry, threads=threads, verify=False, profile=True)
            s = prof.zero_state()
            for ids, _ in stream[:MEMORY_PASS_CALLS]:
                s = prof.step(ids, s).state
            for ids in hists[:5]:
                prof.prefill(ids)
            runtime_memory.update(prof.memory_info() or {})
            prof.close()
    except Exception as exc:  # memory figures are a bonus: a runtime that cannot give them keeps its row
        runtime_memory["memory_info_error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

    return {
        "load_ms": round(load_ms, 2),
        "step_p50_us": _pct_us(step_ns, 50), "step_p95_us": _pct_us(step_ns, 95), "step_p99_us": _pct_us(step_ns, 99),
        "prefill_p50_us": _pct_us(pre_ns, 50), "prefill_p95_us": _pct_us(pre_ns, 95),
        "prefill_history_len": int(length),
        "peak_rss_mb": round((peak_kb - baseline_kb) * 1024 / 2**20, 2),
        "baseline_rss_mb": _mb(baseline_kb),
        "runtime_memory": runtime_memory,
    }


def worker_main(spec_json: str) -> int:
    # native runtimes may print to fd 1: send all of it to stderr and keep the real stdout for our one line
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        spec = json.loads(spec_json)
        if spec.get("cores"):
            os.sched_setaffinity(0, spec["cores"])
        result = _worker_profile(spec)
    except UserError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # any runtime failure becomes this row's error; the run goes on
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        result = {"error": f"{type(exc).__name__}: {first}" if first else type(exc).__name__}
    sys.stdout.flush()
    os.write(real_stdout, (json.dumps(result) + "\n").encode())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    print("usage: python -m fmrlrec_edge.runtime.profile --worker SPEC_JSON (used by `fmrlrec-edge profile`)",
          file=sys.stderr)
    sys.exit(2)
