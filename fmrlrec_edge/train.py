"""Train fMRLRec once for every width.

loss = sum_m w_m * CE(x[..., :m] @ E[:, :m]^T, next item) over non-pad positions, w = 1/K by default.

What keeps it fast on a laptop-class CPU (reference/training-notes.md): logits are computed only at
non-pad positions, all widths' logits come from per-chunk partial products summed cumulatively (one pass
over the item table), and batches are grouped by sequence length so little is padding.

Run as a module for multi-process training:  torchrun --nproc_per_node 2 -m fmrlrec_edge.train --out runs/x
(DDP; gloo on CPU, nccl on CUDA). Rank 0 evaluates and writes; every rank steps the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import checkpoint as ckpt
from .config import ModelConfig, TrainConfig, to_json_dict
from .errors import UserError
from .evaluate import PROTOCOL, evaluate_model, evaluate_popularity
from .fileio import atomic_write_json, read_json
from .model import FMRLRec

RESUME = "resume"


# -- data ---------------------------------------------------------------------------------------------
def training_windows(train_seqs, max_len: int) -> list[list[int]]:
    """Cut each training sequence into windows of <= max_len + 1 items, newest first (inputs w[:-1],
    next-item targets w[1:]), so long histories contribute every position, not only the last max_len."""
    out = []
    for s in train_seqs:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            out.append(list(s[start:end]))
            end = start + 1 if start > 0 else 0
    return out


def length_grouped_batches(windows, batch_size: int, rng: np.random.Generator):
    """Batches of similar length (little padding), in random order; left-padded tensors."""
    order = sorted(rng.permutation(len(windows)).tolist(), key=lambda i: len(windows[i]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for c in rng.permutation(len(chunks)):
        ws = [windows[i] for i in chunks[c]]
        T = max(len(w) for w in ws) - 1
        inp = torch.zeros(len(ws), T, dtype=torch.long)
        tgt = torch.zeros(len(ws), T, dtype=torch.long)
        for r, w in enumerate(ws):
            inp[r, T - len(w) + 1:] = torch.tensor(w[:-1])
            tgt[r, T - len(w) + 1:] = torch.tensor(w[1:])
        yield inp, tgt


# -- loss ---------------------------------------------------------------------------------------------
def nested_loss(model: FMRLRec, inp, tgt, weights) -> tuple[torch.Tensor, dict[int, float]]:
    E = model.item_table()
    x, _ = model.encode(inp, E)
    keep = tgt > 0
    xs, ys = x[keep], tgt[keep]                           # [P, D], [P]: only real positions
    total, parts = 0.0, {}
    for (m, logits), w in zip(model.width_logits(xs, E).items(), weights):
        ce = F.cross_entropy(logits.float(), ys - 1)        # column j scores item j + 1
        total = total + w * ce
        parts[m] = float(ce.detach())
    return total, parts


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "id_table" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


# -- the run ------------------------------------------------------------------------------------------
def prepare(tcfg: TrainConfig, model_overrides: dict, console: Console):
    """Dataset -> split -> features -> model config. Heavy imports happen here, not at CLI start."""
    from .data import leave_one_out, load_dataset
    from .features import feature_spec, item_features
    ds = load_dataset(tcfg.dataset)
    split = leave_one_out(ds)
    feats = item_features(ds, text_encoder=tcfg.text_encoder, image_dir=tcfg.image_dir,
                          features_file=tcfg.features_file)
    mcfg = ModelConfig(n_items=ds.n_items, feature_dim=int(feats.shape[1]), **model_overrides)
    if mcfg.id_embedding is False and not np.any(feats[1:]):
        raise UserError("every item feature is zero (no text, images or --features): pass --id-embedding")
    spec = feature_spec(feats, text_encoder=tcfg.text_encoder, image_dir=tcfg.image_dir,
                        features_file=tcfg.features_file)
    data_info = {"name": ds.name, "spec": tcfg.dataset, "fingerprint": ds.fingerprint(), "n_users": ds.n_users,
                 "n_items": ds.n_items, "n_interactions": int(sum(len(s) for s in ds.sequences))}
    return ds, split, torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), mcfg, data_info, spec


def train(tcfg: TrainConfig, out_dir: str | Path, model_overrides: dict | None = None, resume: bool = False,
          force: bool = False, console: Console | None = None, quiet: bool = False) -> dict:
    console = console or Console(stderr=True)
    out = Path(out_dir)
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    main = rank == 0
    if main and out.exists() and any(out.iterdir()) and not (resume or force):
        raise UserError(f"{out} already holds a run; pass --resume to continue it or --force to start over")
    if resume and not (out / RESUME / "progress.json").is_file():
        raise UserError(f"nothing to resume in {out} (no {RESUME}/progress.json); start a new run without --resume")
    if resume:  # the config of the interrupted run wins: resuming with other settings would be another run
        saved = read_json(out / ckpt.CONFIG, "run config")
        tcfg = dataclasses.replace(tcfg, **{k: v for k, v in saved["train"].items()
                                            if k in {f.name for f in dataclasses.fields(TrainConfig)}})
        model_overrides = {k: v for k, v in saved["model"].items() if k not in ("n_items", "feature_dim")}

    device = pick_device(tcfg.device)
    if ddp and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.manual_seed(tcfg.seed)
    ds, split, feats, mcfg, data_info, feat_spec = prepare(tcfg, model_overrides or {}, console)
    model = FMRLRec(mcfg, feats).to(device)
    weights = tcfg.width_weights or [1.0 / len(mcfg.widths)] * len(mcfg.widths)
    if len(weights) != len(mcfg.widths):
        raise UserError(f"--width-weights needs one weight per width ({len(mcfg.widths)}), got {len(weights)}")
    opt = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr, betas=(0.9, 0.98), eps=1e-9)
    net = NestedLoss(model, weights)
    net = torch.nn.parallel.DistributedDataParallel(net) if ddp else net

    windows = training_windows(split.train, mcfg.max_len)
    world = dist.get_world_size() if ddp else 1
    steps_per_epoch = math.ceil(math.ceil(len(windows) / tcfg.batch_size) / world)
    total_steps = steps_per_epoch * tcfg.epochs
    val_h, val_t = _pack(split.val, mcfg.max_len)
    test_h, test_t = _pack(split.test, mcfg.max_len)

    progress = {"epoch": 0, "step": 0, "best_ndcg10": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
                "train_seconds": 0.0}
    if resume:
        ckpt.load_model_weights(model, out / RESUME / "last.safetensors")
        opt_state = ckpt.load_tensors(out / RESUME / "optimizer.safetensors")
        _load_optimizer(opt, opt_state, read_json(out / RESUME / "optimizer.json"))
        progress = read_json(out / RESUME / "progress.json")
        if main:
            console.print(f"resuming {out} at epoch {progress['epoch'] + 1}")
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        run_cfg = {"model": to_json_dict(mcfg), "train": to_json_dict(tcfg), "data": data_info, "features": feat_spec}
        atomic_write_json(out / ckpt.CONFIG, run_cfg)
        ckpt.save_catalog(out / ckpt.CATALOG, ds.item_raw_ids, ds.item_titles)
        ckpt.save_eval_split(out / ckpt.SPLIT, split, mcfg.max_len)
        ckpt.save_model(out / ckpt.WEIGHTS, model)

    pop = evaluate_popularity(split.train, mcfg.n_items, val_h, val_t)
    t_start = time.perf_counter() - progress["train_seconds"]
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, console=console, disable=quiet or not main, transient=False) as bar:
        for epoch in range(progress["epoch"], tcfg.epochs):
            # per-epoch seeds: an epoch replays identically after --resume
            rng = np.random.default_rng(tcfg.seed * 100_003 + epoch)
            torch.manual_seed(tcfg.seed * 100_003 + epoch)
            net.train()
            task = bar.add_task(f"epoch {epoch + 1}/{tcfg.epochs}", total=steps_per_epoch, info="")
            losses = []
            for b, (inp, tgt) in enumerate(length_grouped_batches(windows, tcfg.batch_size, rng)):
                if b % world != rank:
                    continue
                lr = lr_at(progress["step"], total_steps, tcfg.warmup_steps, tcfg.lr)
                for g in opt.param_groups:
                    g["lr"] = lr
                inp, tgt = inp.to(device), tgt.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = net(inp, tgt)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                opt.step()
                progress["step"] += 1
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, info=f"loss {np.mean(losses[-50:]):.3f}")
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None}
            if main and ((epoch + 1) % tcfg.eval_every == 0 or epoch + 1 == tcfg.epochs):
                val = evaluate_model(model, val_h, val_t, device=device, widths=[mcfg.dim])[mcfg.dim]["unmasked"]
                record["val_ndcg@10"], record["val_recall@10"] = val["ndcg@10"], val["recall@10"]
                if val["ndcg@10"] > progress["best_ndcg10"]:
                    progress.update(best_ndcg10=val["ndcg@10"], best_epoch=epoch + 1, bad_epochs=0)
                    ckpt.save_model(out / ckpt.WEIGHTS, model)
                else:
                    progress["bad_epochs"] += 1
                bar.update(task, info=f"loss {record['train_loss']:.3f}  val NDCG@10 {val['ndcg@10']:.4f} "
                                      f"(best {progress['best_ndcg10']:.4f} @ {progress['best_epoch']})")
            progress["epoch"] = epoch + 1
            progress["history"].append(record)
            progress["train_seconds"] = time.perf_counter() - t_start
            stop = progress["bad_epochs"] >= tcfg.patience or (
                tcfg.max_minutes is not None and progress["train_seconds"] > tcfg.max_minutes * 60)
            if ddp:  # every rank must agree on stopping
                flag = torch.tensor([int(stop)], device=device)
                dist.broadcast(flag, 0)
                stop = bool(flag.item())
            if main:
                _save_resume(out, model, opt, progress)
            if stop:
                break

    agree = None
    if ddp:  # every rank must hold the same weights after training (DDP keeps them in sync)
        flat = torch.cat([p.detach().float().reshape(-1).cpu() for p in model.parameters()])
        mine = torch.tensor([float(flat.sum()), float((flat * flat).sum())], dtype=torch.float64)
        gathered = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        agree = [g.tolist() for g in gathered]
    result = {}
    if main:
        ckpt.load_model_weights(model, out / ckpt.WEIGHTS)   # the best epoch, not the last
        val = evaluate_model(model, val_h, val_t, device=device)
        test = evaluate_model(model, test_h, test_t, device=device)
        result = {
            "protocol": PROTOCOL, "dataset": data_info,
            "train_seconds": round(progress["train_seconds"], 1), "epochs_run": progress["epoch"],
            "best_epoch": progress["best_epoch"], "stopped_early": progress["bad_epochs"] >= tcfg.patience,
            "history": progress["history"],
            "popularity": {"val": pop, "test": evaluate_popularity(split.train, mcfg.n_items, test_h, test_t)},
            "widths": {str(m): {"val": val[m], "test": test[m]} for m in mcfg.widths},
            "params": {"stored": model.n_stored_params(), "device": str(device), "world_size": world,
                       "rank_checksums": agree},
        }
        atomic_write_json(out / ckpt.METRICS, result)
    if ddp:
        dist.barrier()
    return result


class NestedLoss(torch.nn.Module):
    """forward(inp, tgt) = the nested loss, so DDP wraps one call that touches every parameter."""

    def __init__(self, model: FMRLRec, weights):
        super().__init__()
        self.model, self.weights = model, list(weights)

    def forward(self, inp, tgt):
        return nested_loss(self.model, inp, tgt, self.weights)[0]


def _pack(pairs, max_len):
    hist = np.zeros((len(pairs), max_len), dtype=np.int64)
    for r, (h, _) in enumerate(pairs):
        h = h[-max_len:]
        if h:
            hist[r, max_len - len(h):] = h
    return hist, np.array([t for _, t in pairs], dtype=np.int64)


def _save_resume(out: Path, model, opt, progress) -> None:
    d = out / RESUME
    tensors, meta = {}, {"groups": [], "state": {}}
    for gi, g in enumerate(opt.state_dict()["param_groups"]):
        meta["groups"].append({k: v for k, v in g.items()})
    for pid, st in opt.state_dict()["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                meta["state"][str(pid)][k] = v
    # weights, optimizer, then progress last: progress.json is the commit point of an epoch
    ckpt.save_model(d / "last.safetensors", model)
    ckpt.save_tensors(d / "optimizer.safetensors", tensors)
    atomic_write_json(d / "optimizer.json", meta)
    atomic_write_json(d / "progress.json", progress)


def _load_optimizer(opt, tensors, meta) -> None:
    state = {}
    for pid, scalars in meta["state"].items():
        st = dict(scalars)
        for name, t in tensors.items():
            p, k = name.split(".", 1)
            if p == pid:
                st[k] = t
        state[int(pid)] = st
    opt.load_state_dict({"state": state, "param_groups": meta["groups"]})


def _main():  # torchrun entry point: python -m fmrlrec_edge.train --out DIR [--epochs N] [--dataset ...]
    import argparse
    ap = argparse.ArgumentParser(description="fMRLRec training (use `fmrlrec-edge train` for the full CLI)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--widths", default=None)
    ap.add_argument("--features", default=None)
    ap.add_argument("--max-users", type=int, default=None)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    from .config import parse_widths
    over = {"widths": parse_widths(a.widths)} if a.widths else {}
    tcfg = TrainConfig(dataset=a.dataset, epochs=a.epochs, features_file=a.features)
    res = train(tcfg, a.out, over, force=a.force)
    if res:
        print(json.dumps({m: v["test"]["unmasked"]["ndcg@10"] for m, v in res["widths"].items()}))


if __name__ == "__main__":
    _main()
