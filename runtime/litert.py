"""LiteRT runner: `model.tflite` with signatures `step` and `prefill` on the LiteRT interpreter.

`ai_edge_litert.interpreter` is the runtime (it works with numpy 2); `tflite_runtime.interpreter`, its
legacy name, is used only when it is the one installed. `prefill` in these models takes
`item_ids[max_len]` left-padded with 0 plus `length[1]` (LiteRT has no dynamic T): `prefill(history)`
pads for the caller; `prefill_padded` is the checked door to the raw signature. The converter stores
ids as int32: inputs are cast to the dtype each signature declares and ids come back as int64.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from fmrlrec_edge.errors import UserError

from .base import Runner, StepOutput, register

STEP_IN, STEP_OUT = ("item_id", "state"), ("top_scores", "top_ids", "next_state")
PREFILL_IN, PREFILL_OUT = ("item_ids", "length"), ("top_scores", "top_ids", "state")


@contextlib.contextmanager
def quiet_native_output():
    """Silence what native code writes straight to fd 1/2 (e.g. "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU."); Python exceptions still carry every error."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:  # the legacy package; it only imports with numpy < 2
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except (ImportError, AttributeError):
        raise UserError("the litert target needs ai-edge-litert (pip install ai-edge-litert), "
                        "or tflite-runtime where numpy < 2") from None


@register("litert")
class LitertRunner(Runner):
    def load(self):
        Interpreter = interpreter_class()
        path = self.file(".tflite")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=self.threads)
            with quiet_native_output():   # applies the XNNPACK delegate (and logs that it did)
                self.interpreter.allocate_tensors()
            sigs = self.interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"LiteRT could not load {self.entry['id']} ({path.name}): "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        for name, ins, outs in (("step", STEP_IN, STEP_OUT), ("prefill", PREFILL_IN, PREFILL_OUT)):
            got = sigs.get(name)
            if got is None or sorted(got["inputs"]) != sorted(ins) or sorted(got["outputs"]) != sorted(outs):
                raise UserError(f"{path} has no signature {name}({', '.join(ins)}) -> {', '.join(outs)} "
                                f"(it has {sigs}); re-export it with `fmrlrec-edge export --target litert`")
        self.runners = {name: self.interpreter.get_signature_runner(name) for name in ("step", "prefill")}
        # what each input really is in the file (int64 ids are stored as int32), checked against the entry
        self.in_dtypes, shapes = {}, {}
        for name, r in self.runners.items():
            for key, d in r.get_input_details().items():
                self.in_dtypes[(name, key)] = d["dtype"]
                shapes[(name, key)] = list(d["shape"])
        want = {("step", "item_id"): [1], ("step", "state"): [self.n_layers, 2, self.width],
                ("prefill", "item_ids"): [self.max_len], ("prefill", "length"): [1]}
        for key, shape in want.items():
            if shapes[key] != shape:
                raise UserError(f"{path}: input {key[0]}.{key[1]} has shape {shapes[key]}, the manifest entry "
                                f"says {shape}; the file does not belong to {self.entry['id']}")

    def _run(self, name: str, **inputs) -> StepOutput:
        feed = {k: np.ascontiguousarray(v, dtype=self.in_dtypes[(name, k)]) for k, v in inputs.items()}
        out = self.runners[name](**feed)
        state = out["next_state" if name == "step" else "state"]
        # the interpreter returns copies, so a state held by the caller is never overwritten by a later call
        return StepOutput(out["top_scores"].astype(np.float32, copy=False), out["top_ids"].astype(np.int64),
                          state.astype(np.float32, copy=False))

    def _prefill(self, item_ids):
        padded, length = self.pad_left(item_ids)
        return self._run("prefill", item_ids=padded, length=length)

    def _step(self, item_id, state):
        return self._run("step", item_id=item_id, state=state)

    def prefill_padded(self, item_ids, length) -> StepOutput:
        """The raw `prefill` signature: item_ids[max_len] left-padded with 0, length[1] real items at the end."""
        arr = np.asarray(item_ids).reshape(-1)
        if arr.size != self.max_len:
            raise UserError(f"padded item_ids must hold exactly max_len={self.max_len} ids (left-padded with 0), "
                            f"got {arr.size}; or call prefill(history), which pads for you")
        n = np.asarray(length).reshape(-1)
        if n.size != 1 or not np.issubdtype(n.dtype, np.integer) or not 1 <= int(n[0]) <= self.max_len:
            raise UserError(f"length must be one integer in 1..{self.max_len}, got {np.asarray(length).tolist()}")
        n = int(n[0])
        ids = self.check_ids(arr[self.max_len - n:], "item_ids")
        pad = np.asarray(arr[:self.max_len - n])
        if pad.size and np.any(pad != 0):
            raise UserError(f"item_ids must be left-padded with 0: the first {self.max_len - n} entries "
                            f"(before the {n} real items) must be 0")
        padded = np.zeros(self.max_len, dtype=np.int64)
        padded[self.max_len - n:] = ids
        return self._run("prefill", item_ids=padded, length=np.array([n], dtype=np.int64))
