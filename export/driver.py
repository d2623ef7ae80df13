"""`fmrlrec-edge export`: slice -> deployable module -> target files (staged) -> gates through the real
runtime -> atomic move into place -> manifest entry. Nothing half-written is ever left behind."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fmrlrec_edge import __version__
from fmrlrec_edge.checkpoint import CATALOG, SPLIT, load_eval_split, load_run
from fmrlrec_edge.deploy import DEFAULT_TOP_K, DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.fileio import atomic_write_bytes, sha256_file, staging_dir
from fmrlrec_edge.manifest import Manifest, artifact_id, file_record, locked
from fmrlrec_edge.runtime import get_runner_class

from . import gates
from .base import EXPORTER_MODULES, Exporter, get_exporter


@dataclass
class ExportRequest:
    run_dir: Path
    out: Path
    dims: str = "all"                 # "all" or "64" or "8,64"
    targets: str = "onnx"             # "all" or "onnx" or "onnx,litert"
    quants: list[str] | None = None   # None: each target's default set
    force: bool = False
    gate: bool = True
    bound: float = 0.02
    top_k: int = DEFAULT_TOP_K
    gate_users: int | None = None     # None: the whole test split
    options: dict = field(default_factory=dict)
    keep_going: bool = False          # a failed gate skips that artifact (reported) instead of stopping
    failures: list = field(default_factory=list)   # filled with the gate failures when keep_going


def tool_versions(*packages: str) -> dict:
    out = {"fmrlrec-edge": __version__, "python": platform.python_version()}
    for p in ("torch",) + packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def resolve_dims(spec: str, widths: tuple[int, ...]) -> list[int]:
    if str(spec).strip().lower() == "all":
        return list(widths)
    try:
        dims = [int(d) for d in str(spec).split(",") if d.strip()]
    except ValueError:
        raise UserError(f"--dim must be a trained width or 'all'; trained widths: {','.join(map(str, widths))}") from None
    for d in dims:
        if d not in widths:
            raise UserError(f"width {d} was not trained; trained widths: {','.join(map(str, widths))} (or --dim all)")
    return dims


def resolve_targets(spec: str) -> list[str]:
    names = [t.strip().lower() for t in str(spec).split(",") if t.strip()]
    if names == ["all"]:
        return list(EXPORTER_MODULES)
    for t in names:
        if t not in EXPORTER_MODULES:
            raise UserError(f"unknown target {t!r}; choose one of: {', '.join(EXPORTER_MODULES)}, all")
    return names


def plan(req: ExportRequest, widths) -> list[tuple[Exporter, int, str]]:
    jobs = []
    explicit_all = str(req.targets).strip().lower() == "all"
    for target in resolve_targets(req.targets):
        exp = get_exporter(target)
        quants = req.quants or list(exp.default_quants)
        if explicit_all and req.quants:      # `--target all --quant int8`: each target's matching ones
            quants = [q for q in quants if q in exp.quantizations]
        for q in quants:
            exp.check_quant(q)
        for d in resolve_dims(req.dims, widths):
            jobs.extend((exp, d, q) for q in quants)
    if not jobs:
        raise UserError("nothing to export: no target supports the requested --quant")
    return jobs


def _copy_shared(run_dir: Path, root: Path, man: Manifest) -> None:
    """catalog + evaluation split travel with the export so runtimes need nothing else."""
    records = []
    for name in (CATALOG, SPLIT):
        src, dst = run_dir / name, root / name
        if not src.is_file():
            raise UserError(f"{src} is missing: the run folder is incomplete; re-run training")
        if not dst.is_file() or sha256_file(dst) != sha256_file(src):
            atomic_write_bytes(dst, src.read_bytes())
        records.append(file_record(root, dst))
    man.shared = records


def export_run(req: ExportRequest, console: Console | None = None) -> list[dict]:
    console = console or Console(stderr=True)
    model, cfg = load_run(req.run_dir)
    jobs = plan(req, model.cfg.widths)
    root = Path(req.out)
    for exp, d, q in jobs:                  # refuse before doing any work
        final = root / exp.target / f"d{d}-{q}"
        if final.exists() and not req.force:
            raise UserError(f"{final} already exists; pass --force to overwrite it")

    run_info = {"run_dir": str(Path(req.run_dir).resolve()), "dataset": cfg.get("data", {}).get("name"),
                "fingerprint": cfg.get("data", {}).get("fingerprint"), "widths": list(model.cfg.widths),
                "n_items": model.cfg.n_items, "n_layers": model.cfg.n_layers, "max_len": model.cfg.max_len,
                "top_k": min(req.top_k, model.cfg.n_items)}
    with locked(root):
        man = Manifest.load(root, must_exist=False)
        if man.artifacts and man.run.get("fingerprint") != run_info["fingerprint"] and not req.force:
            raise UserError(f"{root} holds artifacts of another run ({man.run.get('run_dir')}); "
                            "use another --out or pass --force")
        if man.artifacts and man.run.get("fingerprint") != run_info["fingerprint"]:
            man.artifacts = []
        _copy_shared(Path(req.run_dir), root, man)
        man.run = run_info
        man.save()
    histories, targets = load_eval_split(Path(req.run_dir) / SPLIT, "test")
    if req.gate_users:
        histories, targets = histories[:req.gate_users], targets[:req.gate_users]

    deployables, ref_quality, entries, failures = {}, {}, [], req.failures
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("export", total=len(jobs))
        for exp, d, q in jobs:
            bar.update(task, description=f"{exp.target} d{d} {q}")
            if d not in deployables:
                deployables[d] = DeployableWidth(model, d, req.top_k)
                ref_quality[d] = gates.eager_quality(deployables[d], histories, targets)
            try:
                entry = _export_one(exp, deployables[d], d, q, root, req, run_info, histories, targets, ref_quality[d])
            except UserError as exc:
                if not req.keep_going:
                    raise
                failures.append(str(exc))
                console.print(f"[red]✗[/] {exc}")
                bar.advance(task)
                continue
            with locked(root):
                man = Manifest.load(root)
                man.upsert(entry)
                man.save()
            entries.append(entry)
            status = "gate skipped (--no-gate)" if not req.gate else \
                ("checks not run here" if not exp.runs_here else "gates passed")
            console.print(f"[green]✓[/] {entry['id']}: {sum(f['bytes'] for f in entry['files']) / 1e6:.2f} MB, "
                          f"{entry['export_seconds']:.1f} s, {status}")
            bar.advance(task)
    if failures:
        console.print(f"[yellow]{len(failures)} artifact(s) not written (see above); the others are in {root}")
    return entries


def _export_one(exp: Exporter, dw: DeployableWidth, d: int, q: str, root: Path, req: ExportRequest,
                run_info: dict, histories, targets, ref_q) -> dict:
    rel_final = f"{exp.target}/d{d}-{q}"
    t0 = time.perf_counter()
    with staging_dir(root / rel_final, force=req.force) as tmp:
        extra = exp.export(dw, q, tmp, req.options) or {}
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        entry = {
            "id": artifact_id(exp.target, d, q), "width": d, "target": exp.target, "quantization": q,
            "files": [file_record(root, p) for p in files],
            "signature": dw.signature(), "n_items": dw.n_items, "n_layers": dw.n_layers,
            "top_k": dw.top_k, "max_len": dw.max_len, "prefill": exp.prefill_mode,
            "min_os": extra.pop("min_os", None),
            "tool_versions": {**tool_versions(), **extra.pop("tool_versions", {})},
            "runtime_memory": extra.pop("runtime_memory", {}),
            "extra": extra.pop("extra", {}),
            "eager_quality": ref_q,
        }
        if exp.prefill_mode == "padded":
            entry["signature"]["prefill"] = {
                "inputs": {"item_ids": ["int64", [dw.max_len]], "length": ["int64", [1]]},
                "outputs": entry["signature"]["prefill"]["outputs"], "left_padded_to": dw.max_len}
        checks = {"structure": exp.validate(dw, q, tmp, entry)}
        if exp.runs_here:
            runner = get_runner_class(exp.target)(root, entry, threads=1, **exp.runner_options(req.options))
            entry["runtime_memory"] = {**entry["runtime_memory"], **runner.memory_info()}
            checks["parity"] = gates.parity(runner, dw, histories)
            checks["quality"] = gates.quality(runner.prefill, histories, targets)
            runner.close()
            checks["gate"] = gates.judge(q, checks["parity"], checks["quality"], ref_q, req.bound)
            if not req.gate:
                checks["gate"]["skipped"] = "--no-gate"
            elif not checks["gate"]["passed"]:
                raise UserError(f"{entry['id']} failed its export gate: {'; '.join(checks['gate']['reasons'])}. "
                                "Nothing was written; use another quantization, or --no-gate to keep it anyway")
        else:
            reason = getattr(exp, "not_runnable_reason", "the runtime cannot execute on this host")
            checks["parity"] = f"not run ({reason})"
            checks["quality"] = f"not run ({reason})"
            checks["gate"] = {"passed": None, "skipped": f"not run ({reason})"}
        entry["checks"] = checks
        # files were hashed inside the staging folder; they keep their bytes when it is renamed
        tmp_rel = tmp.resolve().relative_to(root.resolve()).as_posix()
        for rec in entry["files"]:
            rec["path"] = rel_final + rec["path"][len(tmp_rel):]
        entry["export_seconds"] = round(time.perf_counter() - t0, 2)
    return entry


__all__ = ["ExportRequest", "export_run", "tool_versions", "resolve_dims", "resolve_targets"]
