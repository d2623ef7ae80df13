"""The artifact manifest: written by `export`, read by `runtime`. Schema "fmrlrec-edge/manifest/1".

EXPORT_ROOT/manifest.json
{
  "schema": "fmrlrec-edge/manifest/1",
  "run": {"run_dir", "dataset", "widths", "n_items", "n_layers", "max_len", "top_k"},
  "shared": [ {"path": "catalog.json", "bytes", "sha256"}, {"path": "eval_split.safetensors", ...} ],
  "artifacts": [
    {"id": "onnx-d64-int8", "width": 64, "target": "onnx", "quantization": "int8",
     "files": [{"path": "onnx/d64-int8/step.onnx", "bytes": ..., "sha256": ...}, ...],
     "signature": {...}, "n_items", "n_layers", "top_k", "max_len",
     "prefill": "dynamic" | "padded",           # padded: prefill takes item_ids[max_len] + length[1]
     "min_os": null | "iOS18", "tool_versions": {...}, "export_seconds": ...,
     "checks": {"parity": {...}, "quality": {...}, "gate": {"passed", "bound", "skipped", "reason"}},
     "runtime_memory": {...}, "extra": {...}}
  ]
}
Every path is relative to the export root and must stay inside it; loading an artifact re-hashes its
files and refuses any that changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .fileio import atomic_write_json, read_json, sha256_file

SCHEMA = "fmrlrec-edge/manifest/1"
# every deployment target: one module of that name in fmrlrec_edge.export and in fmrlrec_edge.runtime
TARGETS = ("onnx", "executorch", "coreml", "litert")
MANIFEST = "manifest.json"


def artifact_id(target: str, width: int, quant: str) -> str:
    return f"{target}-d{width}-{quant}"


def safe_path(root: Path, rel: str) -> Path:
    """root / rel, refusing absolute paths and anything that resolves outside root."""
    root = Path(root).resolve()
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise UserError(f"manifest path {rel!r} is not relative to the export root {root}: refusing it")
    p = (root / rel).resolve()
    if p != root and root not in p.parents:
        raise UserError(f"manifest path {rel!r} points outside the export root {root}: refusing it")
    return p


def file_record(root: Path, path: Path) -> dict:
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    return {"path": rel, "bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def verify_files(root: Path, records: list[dict], what: str) -> None:
    for rec in records:
        p = safe_path(root, rec.get("path"))
        if not p.is_file():
            raise UserError(f"{what}: file {rec['path']} is missing from {root}; re-export it with --force")
        if p.stat().st_size != rec.get("bytes") or sha256_file(p) != rec.get("sha256"):
            raise UserError(f"{what}: {rec['path']} does not match its sha256 in manifest.json (changed or "
                            "damaged); re-export it with --force")


@dataclass
class Manifest:
    root: Path
    run: dict = field(default_factory=dict)
    shared: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, must_exist: bool = True) -> "Manifest":
        root = Path(root)
        path = root / MANIFEST
        if not path.exists():
            if must_exist:
                raise UserError(f"no {MANIFEST} in {root}: export first with `fmrlrec-edge export RUN_DIR --out {root}`")
            return cls(root)
        data = read_json(path, "manifest")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UserError(f"{path} is not an fmrlrec-edge manifest (schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                            f"expected {SCHEMA!r})")
        return cls(root, data.get("run", {}), data.get("shared", []), data.get("artifacts", []))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "run": self.run, "shared": self.shared, "artifacts": self.artifacts}

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.to_dict())

    def upsert(self, entry: dict) -> None:
        self.artifacts = [a for a in self.artifacts if a["id"] != entry["id"]] + [entry]
        self.artifacts.sort(key=lambda a: (a["target"], a["width"], a["quantization"]))

    def find(self, width: int, target: str, quant: str | None = None) -> dict:
        hits = [a for a in self.artifacts if a["width"] == width and a["target"] == target
                and (quant is None or a["quantization"] == quant)]
        if not hits:
            have = ", ".join(f"{a['target']} d{a['width']} {a['quantization']}" for a in self.artifacts) or "none"
            want = f"{target} d{width}" + (f" {quant}" if quant else "")
            raise UserError(f"no {want} artifact in {self.root / MANIFEST}; exported: {have}")
        if quant is None and len(hits) > 1:  # prefer full precision, then the smallest file
            order = ["fp32", "fp16", "int8", "int4"]
            hits.sort(key=lambda a: order.index(a["quantization"]) if a["quantization"] in order else 9)
        return hits[0]

    def path(self, rel: str) -> Path:
        return safe_path(self.root, rel)

    def shared_path(self, name: str) -> Path:
        for rec in self.shared:
            if Path(rec["path"]).name == name:
                verify_files(self.root, [rec], "shared file")
                return self.path(rec["path"])
        raise UserError(f"{self.root / MANIFEST} lists no shared file {name}; re-export with --force")

    def verify(self, entry: dict) -> None:
        verify_files(self.root, entry.get("files", []), f"artifact {entry.get('id')}")


@contextlib.contextmanager
def locked(root: Path):
    """One writer at a time per export root (two exports into one folder would lose manifest entries)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".manifest.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
