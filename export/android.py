"""Android assets: everything the demo app in `android_demo/` needs, written into one assets folder.

`fmrlrec-edge export RUN --target executorch --dim 32 --android-assets android_demo/app/src/main/assets`

ASSETS_DIR/
  model.pte              the ExecuTorch program of the chosen width (fp32 preferred, then int8)
  model.json             its manifest entry, unchanged; the app checks model.pte's sha256 against it
  catalog.tsv            header line "id<TAB>title", then one line per item 1..N (tabs/newlines -> spaces)
  reference_weights.bin  the width-m weights for the pure-Java ReferenceEngine (format below)
  golden.json            outputs of the eager fp32 DeployableWidth, for the JVM tests of android_demo/core

reference_weights.bin, version 1. Little-endian throughout, no padding, nothing after the last tensor:

  header   8 bytes  magic b"FMRLRW\\x00\\x01"
           int32    version (1)
           int32    m (width), n_layers, n_items (N, row 0 of E is padding), top_k, max_len
           float32  ln_eps
           int32    n_chunks, then n_chunks x (int32 lo, int32 hi): the chunk bounds of the LayerNorms
  tensors  float32, row-major, in this order (Linear weights are [out, in], as in PyTorch):
           E        [N+1, m]      item table (embeds inputs, scores outputs: scores = x @ E[1:]^T)
           then for each layer l = 0 .. n_layers-1:
           ln1_w [m], ln1_b [m]
           B_w [2m, m], B_b [2m]   rows :m give the real part, rows m: the imaginary part; gamma folded in
           lam_re [m], lam_im [m]
           C_w [m, 2m], C_b [m]    columns :m multiply h_re, columns m: multiply h_im (= [C_re, -C_im])
           ln2_w [m], ln2_b [m]
           W1_w [m, m], W1_b [m], Wg_w [m, m], Wg_b [m], W2_w [m, m], W2_b [m]

One step (what DeployableWidth.step computes; prefill equals steps over the history from the zero state):
  x = E[item];  per layer:  u = B(LN1(x));  h_re, h_im = lam_re*h_re - lam_im*h_im + u[:m],
  lam_re*h_im + lam_im*h_re + u[m:];  x = x + C([h_re, h_im]);  h = LN2(x);  x = x + W2(silu(Wg h) * W1 h)
  scores = x @ E[1:]^T; top-K by score, ids = column + 1.  LN = LayerNorm over each chunk [lo, hi) alone.

The golden vectors are computed with the fp32 eager module, so they test the Java reference engine, not the
.pte (whose own parity against the same module is checked at export time and recorded in model.json).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from fmrlrec_edge.checkpoint import CATALOG, load_catalog, load_run
from fmrlrec_edge.deploy import DEFAULT_TOP_K, DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.fileio import atomic_write_bytes, sha256_file
from fmrlrec_edge.manifest import Manifest

MAGIC = b"FMRLRW\x00\x01"
FORMAT_VERSION = 1
PTE, MODEL_JSON, CATALOG_TSV, WEIGHTS_BIN, GOLDEN_JSON = (
    "model.pte", "model.json", "catalog.tsv", "reference_weights.bin", "golden.json")
QUANT_PREFERENCE = ("fp32", "int8")   # the app ships the most precise program there is
CHAIN_STEPS = 50


# -- the reference weights binary --------------------------------------------------------------------------
def layer_tensors(layer) -> list[tuple[str, torch.Tensor]]:
    """One DeployLayer's tensors in file order (see the module doc)."""
    return [("ln1_w", layer.ln1_w), ("ln1_b", layer.ln1_b), ("B_w", layer.B.weight), ("B_b", layer.B.bias),
            ("lam_re", layer.lam_re), ("lam_im", layer.lam_im), ("C_w", layer.C.weight), ("C_b", layer.C.bias),
            ("ln2_w", layer.ln2_w), ("ln2_b", layer.ln2_b), ("W1_w", layer.W1.weight), ("W1_b", layer.W1.bias),
            ("Wg_w", layer.Wg.weight), ("Wg_b", layer.Wg.bias), ("W2_w", layer.W2.weight), ("W2_b", layer.W2.bias)]


def reference_weights_bytes(dw: DeployableWidth) -> bytes:
    """The width-m module as reference_weights.bin (fp32 item table; see the module doc for the layout)."""
    if not hasattr(dw.items, "weight"):
        raise UserError("reference weights need the fp32 item table; build them before quantize_item_table()")
    bounds = dw.layers[0].bounds
    head = MAGIC + struct.pack("<6i", FORMAT_VERSION, dw.m, dw.n_layers, dw.n_items, dw.top_k, dw.max_len)
    head += struct.pack("<f", dw.layers[0].eps) + struct.pack("<i", len(bounds))
    head += b"".join(struct.pack("<2i", lo, hi) for lo, hi in bounds)
    tensors = [dw.items.weight] + [t for layer in dw.layers for _, t in layer_tensors(layer)]
    body = b"".join(t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes() for t in tensors)
    return head + body


# -- golden vectors ------------------------------------------------------------------------------------------
def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def golden_vectors(dw: DeployableWidth, chain_steps: int = CHAIN_STEPS, seed: int = 0) -> dict:
    """Expected outputs of the eager module: a few prefills, and a chain of steps from the zero state.

    States are flattened row-major from [L, 2, m]. Item ids are drawn with a fixed seed, so the file is
    reproducible for a given run and width.
    """
    rng = np.random.default_rng(seed)
    n, T = dw.n_items, dw.max_len
    histories = [[1], [n], rng.integers(1, n + 1, size=min(5, T)).tolist(),
                 rng.integers(1, n + 1, size=max(1, T // 2)).tolist(), rng.integers(1, n + 1, size=T).tolist()]
    out = {"format": "fmrlrec-edge/android-golden/1", "width": dw.m, "n_layers": dw.n_layers,
           "n_items": dw.n_items, "top_k": dw.top_k, "max_len": dw.max_len,
           "computed_with": "eager fp32 DeployableWidth (torch)", "state_layout": "[n_layers, 2 (re, im), m] row-major",
           "prefill": [], "chain": {}}
    with torch.no_grad():
        for h in histories:
            s, i, st = dw.prefill(torch.tensor(h, dtype=torch.int64))
            out["prefill"].append({"item_ids": [int(x) for x in h], "top_ids": _ints(i),
                                   "top_scores": _floats(s), "state": _floats(st)})
        items = rng.integers(1, n + 1, size=chain_steps).tolist()
        state = dw.zero_state()
        chain = {"item_ids": [int(x) for x in items], "top_ids": [], "top_scores": [], "states": []}
        for item in items:
            s, i, state = dw.step(torch.tensor([item], dtype=torch.int64), state)
            chain["top_ids"].append(_ints(i))
            chain["top_scores"].append(_floats(s))
            chain["states"].append(_floats(state))
        out["chain"] = chain
    return out


# -- catalog -------------------------------------------------------------------------------------------------
def catalog_tsv(titles: list[str]) -> str:
    """`id<TAB>title` for items 1..N (index 0 of `titles` is the padding row)."""
    lines = ["id\ttitle"]
    for i, t in enumerate(titles[1:], start=1):
        lines.append(f"{i}\t{' '.join(str(t).split()) or f'item {i}'}")
    return "\n".join(lines) + "\n"


def _titles(catalog_path: Path, n_items: int) -> list[str]:
    cat = load_catalog(catalog_path)
    titles = cat.get("titles") if isinstance(cat, dict) else None
    if not isinstance(titles, list) or len(titles) != n_items + 1:
        got = len(titles) if isinstance(titles, list) else "no"
        raise UserError(f"{catalog_path} has {got} titles but the model has {n_items} items (+1 padding row); "
                        "it belongs to another run: re-export with --force")
    return titles


# -- writing -------------------------------------------------------------------------------------------------
def _write_files(assets_dir: Path, files: dict[str, bytes], force: bool) -> None:
    """Refuse to overwrite unless forced, then write each file atomically. model.json goes last: if a
    write fails half way, the app sees a model.pte whose sha256 does not match and says so."""
    assets_dir = Path(assets_dir)
    if assets_dir.exists() and not assets_dir.is_dir():
        raise UserError(f"--android-assets {assets_dir} is a file, not a folder")
    existing = [name for name in files if (assets_dir / name).exists()]
    if existing and not force:
        raise UserError(f"{assets_dir} already holds {', '.join(existing)}; pass --force to overwrite")
    for name in sorted(files, key=lambda n: n == MODEL_JSON):
        atomic_write_bytes(assets_dir / name, files[name])


def _reference_files(model, width: int, top_k: int, titles: list[str]) -> dict[str, bytes]:
    dw = DeployableWidth(model, width, top_k)
    golden = golden_vectors(dw)
    return {WEIGHTS_BIN: reference_weights_bytes(dw),
            GOLDEN_JSON: (json.dumps(golden) + "\n").encode("utf-8"),
            CATALOG_TSV: catalog_tsv(titles).encode("utf-8")}


def write_reference_assets(run_dir: str | Path, width: int, assets_dir: str | Path, force: bool = False,
                           top_k: int = DEFAULT_TOP_K, console: Console | None = None) -> dict[str, Path]:
    """reference_weights.bin, golden.json and catalog.tsv straight from a run (no export, no .pte needed)."""
    model, _ = load_run(run_dir)
    if width not in model.cfg.widths:
        raise UserError(f"width {width} was not trained; trained widths: {','.join(map(str, model.cfg.widths))}")
    files = _reference_files(model, width, top_k, _titles(Path(run_dir) / CATALOG, model.cfg.n_items))
    _write_files(Path(assets_dir), files, force)
    if console:
        console.print(f"reference assets for width {width} -> {assets_dir}")
    return {name: Path(assets_dir) / name for name in files}


def pick_entry(entries: list[dict], manifest: Manifest, width: int | None = None) -> dict:
    """The ExecuTorch artifact to ship: of `width` if given, else of the width(s) this export call wrote
    (the widest when several), else the widest in the manifest; fp32 before int8."""
    def best(cands: list[dict]) -> dict | None:
        cands = [a for a in cands if a.get("target") == "executorch" and a.get("quantization") in QUANT_PREFERENCE
                 and (width is None or a.get("width") == width)
                 and any(f["path"].endswith(".pte") for f in a.get("files", []))]
        if not cands:
            return None
        top = max(a["width"] for a in cands)
        return min((a for a in cands if a["width"] == top), key=lambda a: QUANT_PREFERENCE.index(a["quantization"]))

    if (hit := best(entries)) is not None:
        return hit
    widths = {width} if width is not None else {e["width"] for e in entries}
    in_manifest = [a for a in manifest.artifacts if not widths or a.get("width") in widths]
    if (hit := best(in_manifest)) is not None:
        return hit
    want = f"width {','.join(map(str, sorted(widths)))}" if widths else "any width"
    have = ", ".join(a["id"] for a in manifest.artifacts if a.get("target") == "executorch") or "none"
    some = min(widths) if widths else "32"
    raise UserError(f"no ExecuTorch fp32/int8 artifact for {want} in {manifest.root / 'manifest.json'} "
                    f"(ExecuTorch artifacts there: {have}); export one first: `fmrlrec-edge export RUN_DIR "
                    f"--target executorch --dim {some} --out {manifest.root}`")


def write_android_assets(run_dir: str | Path, export_root: str | Path, entries: list[dict], assets_dir: str | Path,
                         force: bool = False, console: Console | None = None, width: int | None = None) -> dict:
    """Copy the chosen .pte + its manifest entry + catalog into `assets_dir`, with the reference weights and
    golden vectors of the same width. Returns the chosen entry."""
    console = console or Console(stderr=True)
    root, assets_dir = Path(export_root), Path(assets_dir)
    man = Manifest.load(root)
    entry = pick_entry(entries or [], man, width)
    man.verify(entry)                                   # refuses a .pte that changed since export
    model, cfg = load_run(run_dir)
    fp = cfg.get("data", {}).get("fingerprint")
    if man.run.get("fingerprint") != fp or entry["n_items"] != model.cfg.n_items:
        raise UserError(f"{root} was exported from another run than {run_dir}; pass the run it came from")
    pte = next(f for f in entry["files"] if f["path"].endswith(".pte"))
    pte_bytes = man.path(pte["path"]).read_bytes()
    files = _reference_files(model, entry["width"], entry["top_k"],
                             _titles(man.shared_path(CATALOG), model.cfg.n_items))
    files[PTE] = pte_bytes
    files[MODEL_JSON] = (json.dumps(entry, indent=2) + "\n").encode("utf-8")
    _write_files(assets_dir, files, force)
    if sha256_file(assets_dir / PTE) != pte["sha256"]:   # the copy itself must be intact
        raise UserError(f"{assets_dir / PTE} does not match its sha256 after copying; check the disk and retry")
    console.print(f"android assets: {entry['id']} ({len(pte_bytes) / 1e6:.2f} MB .pte), "
                  f"{model.cfg.n_items} items, golden vectors -> [bold]{assets_dir}[/]")
    return entry


__all__ = ["write_android_assets", "write_reference_assets", "reference_weights_bytes", "golden_vectors",
           "catalog_tsv", "pick_entry", "MAGIC", "FORMAT_VERSION"]
