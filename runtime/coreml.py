"""Core ML runner: the multifunction `.mlpackage` (functions `prefill` and `step`) through coremltools'
`MLModel.predict`, which needs the Core ML framework, i.e. macOS. Elsewhere `load()` refuses with one
line: the export already validated the package structurally (see fmrlrec_edge.export.coreml).

Core ML names the recurrent state `hidden_state` (MIL reserves `state`) and takes int32 item ids; this
runner maps both back to the common contract (state f32[L, 2, m], top_ids int64).
"""

from __future__ import annotations

import logging
import platform
import sys
import warnings

import numpy as np

from fmrlrec_edge.errors import UserError

from .base import Runner, StepOutput, register

COMPUTE_UNITS = {"all": "ALL", "cpu": "CPU_ONLY", "cpu_gpu": "CPU_AND_GPU", "cpu_ne": "CPU_AND_NE"}


def import_coremltools():
    """coremltools on Linux logs that torch 2.13 is untested and that its macOS-only runtime proxy is
    missing; torchao (which it imports) logs missing CUDA kernels. None of it matters here."""
    loggers = [logging.getLogger(n) for n in ("coremltools", "torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import coremltools as ct
    except ImportError:
        raise UserError("the coreml target needs coremltools: pip install coremltools==9.0") from None
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
    return ct


@register("coreml")
class CoremlRunner(Runner):
    """`threads` is accepted for the common interface; Core ML has no thread setting (it schedules
    CPU / GPU / Neural Engine itself); `compute_units` restricts where it may run."""

    def __init__(self, root, entry, threads: int = 1, verify: bool = True, compute_units: str = "all"):
        if compute_units not in COMPUTE_UNITS:
            raise UserError(f"compute_units must be one of: {', '.join(COMPUTE_UNITS)}; got {compute_units!r}")
        self.compute_units = compute_units
        super().__init__(root, entry, threads, verify)

    def load(self):
        if sys.platform != "darwin":
            raise UserError(f"Core ML executes only on macOS (this host is {platform.system()}); the package "
                            "was validated structurally at export — use --target onnx/executorch/litert to run here")
        ct = import_coremltools()
        extra = self.entry.get("extra", {})
        package = extra.get("package", "fmrlrec.mlpackage")
        self.state_name = extra.get("io_names", {}).get("state", "hidden_state")
        path = self.file(f"{package}/Manifest.json").parent
        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[self.compute_units])
        try:
            self.models = {name: ct.models.MLModel(str(path), function_name=name, compute_units=units)
                           for name in ("prefill", "step")}
        except Exception as exc:  # Core ML reports compile / load failures with assorted types
            raise UserError(f"Core ML could not load {self.entry['id']}: {str(exc).splitlines()[0]}") from None

    def _out(self, out: dict, state_key: str) -> StepOutput:
        return StepOutput(np.asarray(out["top_scores"], dtype=np.float32).reshape(-1),
                          np.asarray(out["top_ids"]).astype(np.int64).reshape(-1),
                          np.asarray(out[state_key], dtype=np.float32).reshape(self.n_layers, 2, self.width))

    def _prefill(self, item_ids):
        out = self.models["prefill"].predict({"item_ids": item_ids.astype(np.int32)})
        return self._out(out, self.state_name)

    def _step(self, item_id, state):
        out = self.models["step"].predict({"item_id": item_id.astype(np.int32), self.state_name: state})
        return self._out(out, "next_state")
