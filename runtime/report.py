"""Profile reports: report.json (machine), report.md (people), PNG plots (quality vs latency and size).

Only measured or manifest-recorded numbers are written; anything not measured is null in the JSON and
"–" in the Markdown, with the reason next to it.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

from fmrlrec_edge.errors import UserError
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
test split, full ranking over all items; protocol: {protocol}) are the checks the exporter ran through the same runtime, copied from
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
    if hasattr(os, "getloadavg"):   # other work on the host shows up in the tails (p95/p99): say how busy it was
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
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
    ("parity max abs diff", lambda r: _f(r["parity_max_abs_diff"], "{:.1e}")),
    ("top-K overlap", lambda r: _f(r["topk_overlap"], "{:.3f}")),
    ("status", lambda r: "error" if r["error"] else ("ok" if r["runnable"] else "not runnable")),
]


def markdown(rows: list[dict], req, machine: dict, plots: list[Path]) -> str:
    from .profile import WARMUP_PREFILLS, WARMUP_STEPS, prefill_calls
    protocols = sorted({r["quality_protocol"] for r in rows if r["quality_protocol"]})
    lines = [f"# fmrlrec-edge profile: {Path(req.export_dir)}", ""]
    lines += ["| " + " | ".join(h for h, _ in TABLE) + " |",
              "|" + "|".join("---" if h in ("artifact", "status") else "---:" for h, _ in TABLE) + "|"]
    lines += ["| " + " | ".join(fn(r) for _, fn in TABLE) + " |" for r in rows]
    notes = [f"- `{r['artifact_id']}` ×{r['threads']}: **error**: {r['error']}" for r in rows if r["error"]]
    notes += [f"- `{r['artifact_id']}`: {r['reason']}" for r in rows if not r["error"] and not r["runnable"]]
    if notes:
        lines += ["", "Rows without measurements:", ""] + list(dict.fromkeys(notes))
    lines += ["", HOW_TO_READ.format(warm=f"{WARMUP_STEPS} step / {WARMUP_PREFILLS} prefill",
                                     protocol=" / ".join(protocols) or "protocol as recorded in the manifest")]
    for p in plots:
        lines += [f"![{p.stem.replace('_', ' ')}]({p.name})", ""]
    cmd = req.command or shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])
    lines += ["## Machine and run", "",
              f"- CPU: {machine['cpu']}; {machine['logical_cores']} logical cores"
              + (f", {machine['usable_cores']} usable by this process" if "usable_cores" in machine else "")
              + (f"; {machine['memory_gb']} GB RAM" if "memory_gb" in machine else "")
              + (f"; load average (1 min) when the report was written: {machine['load_average_1m']}"
                 if "load_average_1m" in machine else ""),
              f"- device profile: {req.device_profile or 'none (no core pinning)'}"
              + (f" → pinned to core(s) {','.join(map(str, machine['pinned_cores']))}" if machine.get("pinned_cores") else ""),
              f"- OS: {machine['os']}; Python {machine['python']}",
              "- runtimes: " + (", ".join(f"{k} {v}" for k, v in
                                          runtime_versions(sorted({r['target'] for r in rows})).items()) or "–"),
              f"- date: {machine['date']}",
              f"- timed calls per row: {req.steps} step, {prefill_calls(req.steps)} prefill at history length "
              f"{req.history_len} (capped at the artifact's max_len and the longest test history; T is what ran)",
              f"- command: `{cmd}`", ""]
    return "\n".join(lines)


def _us(v) -> str:
    return "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def rich_table(rows: list[dict]):
    """A terminal-sized summary (the Markdown report has every column)."""
    from rich import box
    from rich.table import Table
    lens = sorted({r["prefill_history_len"] for r in rows if r["prefill_history_len"]})
    t = Table(title=f"latency in µs (prefill at T={'/'.join(map(str, lens)) or '–'}); "
                    "quality from the export checks; n/a and errors: see report.md", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    cols = [("artifact", lambda r: r["artifact_id"]), ("thr", lambda r: str(r["threads"])),
            ("size\nMB", lambda r: _f(r["size_bytes"] / 1e6, "{:.2f}")),
            ("step\np50", lambda r: _us(r["step_p50_us"])), ("step\np95", lambda r: _us(r["step_p95_us"])),
            ("prefill\np50", lambda r: _us(r["prefill_p50_us"])), ("+RSS\nMB", lambda r: _f(r["peak_rss_mb"])),
            ("R@10", lambda r: _f(r["recall_at_10"], "{:.4f}")),
            ("status", lambda r: "error" if r["error"] else ("ok" if r["runnable"] else "n/a"))]
    for h, _ in cols:
        t.add_column(h, justify="left" if h in ("artifact", "status") else "right", no_wrap=True)
    for r in rows:
        t.add_row(*(fn(r) for _, fn in cols), style="red" if r["error"] else (None if r["runnable"] else "dim"))
    return t


# -- plots ------------------------------------------------------------------------------------------------
QUANT_LINE = {"fp32": "-", "fp16": "--", "int8": ":", "int4": "-."}


def _log_axis(ax) -> None:
    """x on a log scale with plain-number ticks at 1, 2, 5 × 10^k or denser (a lone '10^2' is not readable)."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    lo, hi = ax.get_xlim()
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):   # denser when the range is narrow
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 4:
            break
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _place_labels(ax, xs, ys, texts, colors) -> None:
    """Label every point, beside it, moving a label up/down or to the left when it would cover a marker
    or a label already placed (a few artifacts often share a quality and sit close in latency)."""
    to_px, k = ax.transData.transform, ax.figure.dpi / 72          # points -> pixels
    centers = [to_px((x, y)) for x, y in zip(xs, ys)]
    placed = [(cx - 6 * k, cy - 6 * k, cx + 6 * k, cy + 6 * k) for cx, cy in centers]   # the markers
    for i in sorted(range(len(xs)), key=lambda i: (ys[i], xs[i])):
        (cx, cy), w, h = centers[i], 5.1 * k * len(texts[i]), 10 * k
        candidates = [(7, dy) for dy in (-4, 9, -17, 22, -30, 35)] + [(-7, dy) for dy in (-4, 9, -17, 22)]
        for dx, dy in candidates:
            x0 = cx + dx * k if dx > 0 else cx + dx * k - w
            box = (x0, cy + dy * k, x0 + w, cy + dy * k + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=8.5,
                    color=colors[i], ha="left" if dx > 0 else "right",
                    arrowprops=None if abs(dy) < 10 else dict(arrowstyle="-", color="0.6", lw=0.6))


def _scatter(points: list[dict], x_key: str, x_label: str, title: str, path: Path, x_scale: float = 1.0) -> bool:
    """Recall@10 against x, one series per target; each point labelled 'd<width> <quant>'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pts = [p for p in points if p.get(x_key) is not None and p.get("recall_at_10") is not None]
    if not pts:
        return False
    fig = Figure(figsize=(9, 6), dpi=130)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    targets = sorted({p["target"] for p in pts}, key=lambda t: list(STYLE).index(t) if t in STYLE else 9)
    for target in targets:
        color, marker = STYLE.get(target, ("tab:gray", "x"))
        mine = [p for p in pts if p["target"] == target]
        # a thin line through each quantization's widths shows the width trade-off within one format
        for q in sorted({p["quantization"] for p in mine}):
            line = sorted((p for p in mine if p["quantization"] == q), key=lambda p: p["width"])
            if len(line) > 1:
                ax.plot([p[x_key] * x_scale for p in line], [p["recall_at_10"] for p in line], color=color,
                        alpha=0.4, lw=1, ls=QUANT_LINE.get(q, "-"), zorder=1)
        ax.scatter([p[x_key] * x_scale for p in mine], [p["recall_at_10"] for p in mine], s=70, color=color,
                   marker=marker, edgecolor="black", linewidth=0.6, label=target, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("Recall@10 (test split, through the runtime)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.18, y=0.15)
    first = ax.legend(title="target", loc="lower right", frameon=True)
    quants = sorted({p["quantization"] for p in pts}, key=lambda q: list(QUANT_LINE).index(q) if q in QUANT_LINE else 9)
    ax.add_artist(first)
    ax.legend(handles=[Line2D([], [], color="0.4", ls=QUANT_LINE.get(q, "-"), label=q) for q in quants],
              title="same quantization,\nacross widths", loc="upper left", frameon=True, fontsize=8, title_fontsize=8)
    ax.autoscale_view()
    _log_axis(ax)
    fig.tight_layout()
    _place_labels(ax, [p[x_key] * x_scale for p in pts], [p["recall_at_10"] for p in pts],
                  [f"d{p['width']} {p['quantization']}" for p in pts],
                  [STYLE.get(p["target"], ("tab:gray",))[0] for p in pts])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
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
def prepare(out: Path) -> None:
    """Create the report folder up front (a bad --out must fail before minutes of profiling)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("quality_vs_step_latency.png", "quality_vs_size.png"):
            (out / stale).unlink(missing_ok=True)   # a plot with no points this time must not survive a last run
    except OSError as exc:
        raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}") from None


def write_report(rows: list[dict], out: Path, req, machine: dict) -> dict:
    out = Path(out)
    prepare(out)
    plots = write_plots(rows, out)
    atomic_write_json(out / "report.json", rows)
    atomic_write_text(out / "report.md", markdown(rows, req, machine, plots))
    return {"json": out / "report.json", "markdown": out / "report.md", "plots": plots,
            "table_text": rich_table(rows)}


__all__ = ["write_report", "machine_info", "markdown", "write_plots", "rich_table"]
