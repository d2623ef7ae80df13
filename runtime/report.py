"""Profile reports: report.json (machine), report.md (people), PNG plots (quality vs latency and size).

Only measured or manifest-recorded numbers are written; anything not measured is null in the JSON and
"–" in the Markdown, with the reason next to it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

from fmrlrec_edge.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

# one colour and marker per target, stable across reports
STYLE = {"onnx": ("tab:blue", "o"), "executorch": ("tab:orange", "s"), "litert": ("tab:green", "^"),
         "coreml": ("tab:purple", "D")}
RUNTIME_PACKAGES = {"onnx": ("onnxruntime",), "executorch": ("executorch",), "litert": ("ai-edge-litert",),
                    "coreml": ("coremltools",)}

HOW_TO_READ = """\
**How to read this.** One row per artifact (target × width × quantization) and thread count; each row ran
in its own subprocess. *step* is one recurrent update for one new interaction (`step(item, state)` → top-K
and the next state): the call an app makes on every tap; it was timed walking real test-split histories
item by item with the state fed back. *prefill* encodes a whole history at once (T items, the column says
which T). Latencies are percentiles over the timed calls (after {warm} warm-up calls), of the runtime call
only (inputs validated before the clock starts), in microseconds. *load* is the time to create the runtime
session from the files (sha256 verification done before, not counted). *peak RSS* is the resident-memory
high-water mark of the subprocess at the end (VmHWM) minus its resident memory after Python, numpy and the
runtime's Python module were imported but before the model was loaded (*baseline*): what loading and
running this artifact added (weights, arenas, sessions, buffers), not what a phone app would use in total;
on a phone the interpreter and Python bindings are not there. *runtime memory* in report.json holds the
runtime's own figures where it has them (onnxruntime profiler peaks, ExecuTorch planned arenas), gathered
in a separate short pass because profiling slows calls. *parity* (max |Δ| of top scores vs the eager
PyTorch model) and *top-K overlap* (mean over test users) and the quality columns (Recall/NDCG@K on the
test split, full ranking, {protocol}) are the checks the exporter ran through the same runtime, copied from
the manifest. A dash means not measured: the reason or error is listed under the table.
"""


# -- machine information --------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(cores: list[int] | None = None) -> dict:
    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    if cores:
        info["pinned_cores"] = cores
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1])
        info["memory_gb"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def runtime_versions(targets) -> dict:
    out = {}
    for t in targets:
        for pkg in RUNTIME_PACKAGES.get(t, ()):
            try:
                out[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                out[pkg] = "not installed"
    return out


# -- formatting -------------------------------------------------------------------------------------------
def _f(v, fmt: str = "{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


TABLE = [  # (header, row -> text)
    ("artifact", lambda r: r["artifact_id"]),
    ("thr", lambda r: str(r["threads"])),
    ("size MB", lambda r: _f(r["size_bytes"] / 1e6, "{:.2f}")),
    ("load ms", lambda r: _f(r["load_ms"])),
    ("step p50 µs", lambda r: _f(r["step_p50_us"])),
    ("step p95 µs", lambda r: _f(r["step_p95_us"])),
    ("step p99 µs", lambda r: _f(r["step_p99_us"])),
    ("prefill p50 µs", lambda r: _f(r["prefill_p50_us"])),
    ("prefill p95 µs", lambda r: _f(r["prefill_p95_us"])),
    ("T", lambda r: _f(r["prefill_history_len"], "{}")),
    ("peak RSS MB", lambda r: _f(r["peak_rss_mb"])),
    ("R@10", lambda r: _f(r["recall_at_10"], "{:.4f}")),
    ("N@10", lambda r: _f(r["ndcg_at_10"], "{:.4f}")),
    ("R@20", lambda r: _f(r["recall_at_20"], "{:.4f}")),
    ("parity max|Δ|", lambda r: _f(r["parity_max_abs_diff"], "{:.1e}")),
    ("top-K overlap", lambda r: _f(r["topk_overlap"], "{:.3f}")),
    ("status", lambda r: "error" if r["error"] else ("ok" if r["runnable"] else "not runnable")),
]


def markdown(rows: list[dict], req, machine: dict, plots: list[Path]) -> str:
    protocols = sorted({r["quality_protocol"] for r in rows if r["quality_protocol"]})
    lines = [f"# fmrlrec-edge profile: {Path(req.export_dir)}", ""]
    lines += ["| " + " | ".join(h for h, _ in TABLE) + " |",
              "|" + "|".join("---" if h in ("artifact", "status") else "---:" for h, _ in TABLE) + "|"]
    lines += ["| " + " | ".join(fn(r) for _, fn in TABLE) + " |" for r in rows]
    notes = [f"- `{r['artifact_id']}` ×{r['threads']}: **error**: {r['error']}" for r in rows if r["error"]]
    notes += [f"- `{r['artifact_id']}`: {r['reason']}" for r in rows if not r["error"] and not r["runnable"]]
    if notes:
        lines += ["", "Rows without measurements:", ""] + list(dict.fromkeys(notes))
    lines += ["", HOW_TO_READ.format(warm="50 step / 10 prefill",
                                     protocol=" / ".join(protocols) or "protocol as recorded in the manifest")]
    for p in plots:
        lines += [f"![{p.stem.replace('_', ' ')}]({p.name})", ""]
    cmd = req.command or shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])
    lines += ["## Machine and run", "",
              f"- CPU: {machine['cpu']}; {machine['logical_cores']} logical cores"
              + (f", {machine['usable_cores']} usable by this process" if "usable_cores" in machine else "")
              + (f"; {machine['memory_gb']} GB RAM" if "memory_gb" in machine else ""),
              f"- device profile: {req.device_profile or 'none (no core pinning)'}"
              + (f" → pinned to core(s) {','.join(map(str, machine['pinned_cores']))}" if machine.get("pinned_cores") else ""),
              f"- OS: {machine['os']}; Python {machine['python']}",
              "- runtimes: " + (", ".join(f"{k} {v}" for k, v in
                                          runtime_versions(sorted({r['target'] for r in rows})).items()) or "–"),
              f"- date: {machine['date']}",
              f"- timed calls per row: {req.steps} step, prefill at history length {req.history_len} "
              "(capped at the artifact's max_len / the longest test history; the T column is what ran)",
              f"- command: `{cmd}`", ""]
    return "\n".join(lines)


def rich_table(rows: list[dict]):
    from rich.table import Table
    t = Table(title="profile (µs, MB; quality from the export-time checks)")
    cols = [c for c in TABLE if c[0] not in ("step p99 µs", "prefill p95 µs", "N@10", "parity max|Δ|")]
    for h, _ in cols:
        t.add_column(h, justify="left" if h in ("artifact", "status") else "right")
    for r in rows:
        t.add_row(*(fn(r) for _, fn in cols), style="red" if r["error"] else (None if r["runnable"] else "dim"))
    return t


# -- plots ------------------------------------------------------------------------------------------------
def _scatter(points: list[dict], x_key: str, x_label: str, title: str, path: Path, x_scale: float = 1.0) -> bool:
    """Recall@10 against x, one series per target; each point labelled 'd<width> <quant>'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [p for p in points if p.get(x_key) is not None and p.get("recall_at_10") is not None]
    if not pts:
        return False
    fig = Figure(figsize=(9, 6), dpi=130)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for target in sorted({p["target"] for p in pts}, key=lambda t: list(STYLE).index(t) if t in STYLE else 9):
        color, marker = STYLE.get(target, ("tab:gray", "x"))
        mine = [p for p in pts if p["target"] == target]
        # a thin line through each quantization's widths shows the width trade-off within one format
        for q in sorted({p["quantization"] for p in mine}):
            line = sorted((p for p in mine if p["quantization"] == q), key=lambda p: p["width"])
            if len(line) > 1:
                ax.plot([p[x_key] * x_scale for p in line], [p["recall_at_10"] for p in line], color=color,
                        alpha=0.35, lw=1, ls={"fp32": "-", "fp16": "--"}.get(q, ":"), zorder=1)
        ax.scatter([p[x_key] * x_scale for p in mine], [p["recall_at_10"] for p in mine], s=70, color=color,
                   marker=marker, edgecolor="black", linewidth=0.6, label=target, zorder=3)
    # labels: spread points that sit on top of each other (same quality, similar x) vertically
    seen: dict[tuple, int] = {}
    for p in sorted(pts, key=lambda p: (p["recall_at_10"], p[x_key])):
        key = (round(p["recall_at_10"], 3), round(float(p[x_key] * x_scale), -1 if p[x_key] * x_scale > 50 else 0))
        k = seen.get(key, 0)
        seen[key] = k + 1
        ax.annotate(f"d{p['width']} {p['quantization']}", (p[x_key] * x_scale, p["recall_at_10"]),
                    xytext=(7, -4 + 11 * k), textcoords="offset points", fontsize=8.5, color="0.15")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("Recall@10 (test split, through the runtime)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(title="target", loc="lower right", frameon=True)
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


def write_plots(rows: list[dict], out: Path) -> list[Path]:
    # latency: one point per artifact at its lowest profiled thread count (quality does not change with threads)
    best: dict[str, dict] = {}
    for r in rows:
        if r["step_p50_us"] is not None and (r["artifact_id"] not in best or r["threads"] < best[r["artifact_id"]]["threads"]):
            best[r["artifact_id"]] = r
    lat = list(best.values())
    threads = sorted({r["threads"] for r in lat})
    by_size = list({r["artifact_id"]: r for r in rows}.values())
    made = []
    p = out / "quality_vs_step_latency.png"
    if _scatter(lat, "step_p50_us", "step latency p50 (µs, log scale)",
                f"Recall@10 vs step latency ({'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''})", p):
        made.append(p)
    p = out / "quality_vs_size.png"
    if _scatter(by_size, "size_bytes", "artifact size (MB, log scale)", "Recall@10 vs artifact size", p, x_scale=1e-6):
        made.append(p)
    return made


# -- everything ---------------------------------------------------------------------------------------------
def write_report(rows: list[dict], out: Path, req, machine: dict) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("quality_vs_step_latency.png", "quality_vs_size.png"):
        (out / stale).unlink(missing_ok=True)   # a plot with no points this time must not survive from a last run
    plots = write_plots(rows, out)
    atomic_write_json(out / "report.json", rows)
    atomic_write_text(out / "report.md", markdown(rows, req, machine, plots))
    return {"json": out / "report.json", "markdown": out / "report.md", "plots": plots,
            "table_text": rich_table(rows)}


__all__ = ["write_report", "machine_info", "markdown", "write_plots", "rich_table", "atomic_write_bytes"]
