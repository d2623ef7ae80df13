"""The `Runner` interface shared by every target, with the input checks every runner gets for free.

A runner loads one manifest entry (verifying every file's sha256 first), then answers
`prefill(item_ids)` and `step(item_id, state)` with numpy arrays, exactly the deployable contract:
top_scores f32[K], top_ids i64[K], state f32[L, 2, m]. Inputs are checked *before* they reach the
runtime (native runtimes crash or silently read out of bounds on bad ids or shapes).
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fmrlrec_edge.errors import UserError
from fmrlrec_edge.manifest import TARGETS, Manifest

# target name -> module that registers its runner (imported on first use)
RUNNER_MODULES = {t: f"fmrlrec_edge.runtime.{t}" for t in TARGETS}
_REGISTRY: dict[str, type["Runner"]] = {}


class StepOutput(NamedTuple):
    top_scores: np.ndarray   # float32 [K]
    top_ids: np.ndarray      # int64 [K]
    state: np.ndarray        # float32 [L, 2, m]


def register(name: str):
    def deco(cls):
        cls.target = name
        _REGISTRY[name] = cls
        return cls
    return deco


def get_runner_class(target: str) -> type["Runner"]:
    if target not in RUNNER_MODULES:
        raise UserError(f"unknown target {target!r}; choose one of: {', '.join(RUNNER_MODULES)}")
    if target not in _REGISTRY:
        importlib.import_module(RUNNER_MODULES[target])
    return _REGISTRY[target]


class Runner(ABC):
    target = "?"

    def __init__(self, root: str | Path, entry: dict, threads: int = 1, verify: bool = True):
        self.root, self.entry, self.threads = Path(root), entry, int(threads)
        if self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        if verify:
            Manifest(self.root).verify(entry)
        self.width, self.n_items = int(entry["width"]), int(entry["n_items"])
        self.n_layers, self.top_k, self.max_len = int(entry["n_layers"]), int(entry["top_k"]), int(entry["max_len"])
        self.padded_prefill = entry.get("prefill") == "padded"
        t0 = time.perf_counter()
        self.load()
        self.load_ms = (time.perf_counter() - t0) * 1e3

    def file(self, suffix: str) -> Path:
        """The artifact's file whose name ends with `suffix` (e.g. '.onnx', 'step.onnx')."""
        for rec in self.entry["files"]:
            if rec["path"].endswith(suffix):
                return Manifest(self.root).path(rec["path"])
        raise UserError(f"artifact {self.entry['id']} has no *{suffix} file in the manifest")

    # -- what each target implements -------------------------------------------------------------------
    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def _prefill(self, item_ids: np.ndarray) -> StepOutput:
        """item_ids: int64 [T] checked (or [max_len] left-padded when `padded_prefill`, see `prefill`)."""

    @abstractmethod
    def _step(self, item_id: np.ndarray, state: np.ndarray) -> StepOutput: ...

    def memory_info(self) -> dict:
        """The runtime's own memory figures, where it has them (planned arenas, profiler peaks)."""
        return {}

    # -- the checked public API ------------------------------------------------------------------------
    def zero_state(self) -> np.ndarray:
        return np.zeros((self.n_layers, 2, self.width), dtype=np.float32)

    def check_ids(self, ids, what: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or
                                       (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))):
            raise UserError(f"{what} must be integer item ids, got {arr.dtype} values")
        arr = arr.astype(np.int64).reshape(-1)
        bad = arr[(arr < 1) | (arr > self.n_items)]
        if bad.size:
            raise UserError(f"{what} has item id {int(bad[0])} outside 1..{self.n_items} (0 is padding)")
        return arr

    def check_state(self, state) -> np.ndarray:
        shape = (self.n_layers, 2, self.width)
        arr = np.asarray(state)
        if arr.shape != shape:
            raise UserError(f"state must have shape {list(shape)} (layers, re/im, width), got {list(arr.shape)}")
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
            raise UserError("state must be finite floats (pass the state returned by the previous call, or zeros)")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def prefill(self, item_ids) -> StepOutput:
        ids = self.check_ids(item_ids, "history")
        if not 1 <= ids.size <= self.max_len:
            raise UserError(f"history must hold 1..{self.max_len} items, got {ids.size} "
                            f"(keep the last {self.max_len}, or feed older items with step)")
        return self._prefill(ids)

    def step(self, item_id, state) -> StepOutput:
        ids = self.check_ids(item_id, "item_id")
        if ids.size != 1:
            raise UserError(f"step takes exactly one item id, got {ids.size}")
        return self._step(ids, self.check_state(state))

    def pad_left(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For runtimes without dynamic T: (item_ids[max_len] left-padded with 0, length[1])."""
        padded = np.zeros(self.max_len, dtype=np.int64)
        padded[self.max_len - ids.size:] = ids
        return padded, np.array([ids.size], dtype=np.int64)

    def close(self) -> None:
        pass


def open_runner(root: str | Path, width: int, target: str, quant: str | None = None, threads: int = 1,
                **kwargs) -> Runner:
    cls = get_runner_class(target)
    man = Manifest.load(root)
    return cls(root, man.find(width, target, quant), threads=threads, **kwargs)
