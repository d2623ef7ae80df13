"""Run folders: safetensors weights + JSON, never pickle.

  RUN_DIR/config.json            {"model": ModelConfig, "train": TrainConfig, "data": {...}, "features": {...}}
  RUN_DIR/model.safetensors      best weights (by validation NDCG@10), features buffer included
  RUN_DIR/metrics.json           per-width validation/test metrics and the training history
  RUN_DIR/catalog.json           item raw ids and titles (index = item id; 0 = padding)
  RUN_DIR/eval_split.safetensors val/test histories (left-padded to max_len) and targets, so exporters and
                                 runners can measure quality without the original data files
  RUN_DIR/resume/                last-epoch weights + optimizer + progress, for --resume
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .config import ModelConfig, model_config_from_dict
from .errors import UserError
from .fileio import atomic_write_bytes, atomic_write_json, read_json
from .model import FMRLRec

CONFIG, WEIGHTS, METRICS, CATALOG, SPLIT = "config.json", "model.safetensors", "metrics.json", "catalog.json", "eval_split.safetensors"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
    atomic_write_bytes(path, data)


def load_tensors(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]}); "
                        "it may be truncated: re-run training or restore it.") from None


def save_model(path: Path, model: FMRLRec) -> None:
    save_tensors(path, model.state_dict())


def load_model_weights(model: FMRLRec, path: Path) -> None:
    state = load_tensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or wrong:
        raise UserError(f"{path} does not match its config.json (missing {missing[:3]}, wrong shape {wrong[:3]}); "
                        "was it copied from another run?")
    model.load_state_dict(state)


def save_eval_split(path: Path, split, max_len: int) -> None:
    def pack(pairs):
        hist = np.zeros((len(pairs), max_len), dtype=np.int32)
        for r, (h, _) in enumerate(pairs):
            h = h[-max_len:]
            if h:
                hist[r, max_len - len(h):] = h
        tgt = np.array([t for _, t in pairs], dtype=np.int32)
        return torch.from_numpy(hist), torch.from_numpy(tgt)
    vh, vt = pack(split.val)
    th, tt = pack(split.test)
    save_tensors(path, {"val_history": vh, "val_target": vt, "test_history": th, "test_target": tt})


def load_eval_split(path: Path, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(histories int32 [U, max_len] left-padded with 0, targets int32 [U])."""
    t = load_tensors(path, "evaluation split")
    if f"{part}_history" not in t:
        raise UserError(f"{path} has no '{part}' split (has {sorted(k.split('_')[0] for k in t)})")
    return t[f"{part}_history"].numpy(), t[f"{part}_target"].numpy()


def load_run(run_dir: str | Path) -> tuple[FMRLRec, dict]:
    """Model (eval mode) and the run's config dict; one-line errors for anything missing or mismatched."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir} (create one with `fmrlrec-edge train --out {run_dir}`)")
    cfg = read_json(run_dir / CONFIG, "run config")
    if "model" not in cfg:
        raise UserError(f"{run_dir / CONFIG} has no 'model' section: not an fmrlrec-edge run folder")
    mcfg = model_config_from_dict(cfg["model"], str(run_dir / CONFIG))
    feats = torch.zeros(mcfg.n_items + 1, mcfg.feature_dim)
    model = FMRLRec(mcfg, feats)
    load_model_weights(model, run_dir / WEIGHTS)
    return model.eval(), cfg


def save_catalog(path: Path, item_raw_ids: list[str], titles: list[str]) -> None:
    atomic_write_json(path, {"item_raw_ids": list(item_raw_ids), "titles": list(titles)})


def load_catalog(path: Path) -> dict:
    return read_json(path, "item catalog")


__all__ = ["save_tensors", "load_tensors", "save_model", "load_model_weights", "save_eval_split",
           "load_eval_split", "load_run", "save_catalog", "load_catalog", "ModelConfig",
           "CONFIG", "WEIGHTS", "METRICS", "CATALOG", "SPLIT"]
