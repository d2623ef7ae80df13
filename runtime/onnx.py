"""ONNX runner on onnxruntime (CPU execution provider); one session per method."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


from fmrlrec_edge.errors import UserError

from .base import Runner, StepOutput, register


@register("onnx")
class OnnxRunner(Runner):
    def __init__(self, root, entry, threads: int = 1, verify: bool = True, profile: bool = False):
        self.profile = profile
        super().__init__(root, entry, threads, verify)

    def load(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the onnx target needs onnxruntime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if self.profile:  # onnxruntime's own trace carries per-node memory figures
            self._profile_dir = tempfile.mkdtemp(prefix="ort-profile-")
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(self._profile_dir) / "ort")
        try:
            self.sessions = {name: ort.InferenceSession(str(self.file(f"{name}.onnx")), opts,
                                                         providers=["CPUExecutionProvider"])
                             for name in ("prefill", "step")}
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise UserError(f"onnxruntime could not load {self.entry['id']}: {str(exc).splitlines()[0]}") from None

    def _prefill(self, item_ids):
        s, i, st = self.sessions["prefill"].run(None, {"item_ids": item_ids})
        return StepOutput(s, i, st)

    def _step(self, item_id, state):
        s, i, st = self.sessions["step"].run(None, {"item_id": item_id, "state": state})
        return StepOutput(s, i, st)

    def memory_info(self) -> dict:
        """Peak arena figures from onnxruntime's profiler (only when opened with profile=True)."""
        if not self.profile:
            return {}
        peaks = {}
        for name, sess in self.sessions.items():
            trace = json.loads(Path(sess.end_profiling()).read_text())
            vals = [int(e["args"].get("mem_in_use_peak", 0) or 0) for e in trace if isinstance(e, dict) and "args" in e]
            arena = [int(e["args"].get("mem_arena_held", 0) or 0) for e in trace if isinstance(e, dict) and "args" in e]
            peaks[f"ort_{name}_peak_bytes"] = max(vals, default=0)
            peaks[f"ort_{name}_arena_bytes"] = max(arena, default=0)
        return peaks
