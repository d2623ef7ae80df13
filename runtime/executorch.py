"""ExecuTorch runner: one `.pte` holding both methods (`prefill`, `step`), on `executorch.runtime`.

Threads: XNNPACK runs on ExecuTorch's process-wide threadpool. executorch 1.5.1 sizes it from Python only
through the experimental `_unsafe_reset_threadpool(n)` of its pybindings, and a method loaded before a
reset deadlocks on its next call (seen here). So the pool is resized before the program is loaded, and
only while no other ExecuTorch runner of this process is open; the count in use is read back into
`threads_used` (and `memory_info()`). One thread count per process: the profiler runs each in a subprocess.

Memory: the planned arenas (the memory-planned activation buffers of each method) are read straight from
the program flatbuffer (`ExecutionPlan.non_const_buffer_sizes`), because `MethodMeta` in 1.5.1's Python
bindings does not expose `memory_planned_buffer_size`. Buffer 0 is reserved (always 0); XNNPACK's own
scratch memory inside the delegate is not part of these figures.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from fmrlrec_edge.errors import UserError

from .base import Runner, StepOutput, register

METHODS = ("prefill", "step")
PTE_MAGIC = b"ET12"   # flatbuffer file identifier of the ExecuTorch program schema


# -- a minimal flatbuffer reader: just enough of the program schema to read the planned arenas ---------------
def _u32(buf, pos):
    return struct.unpack_from("<I", buf, pos)[0]


def _field(buf, table: int, index: int) -> int | None:
    """Absolute position of field `index` of the table at `table`, or None when the field is absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vt_size:
        return None
    off = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + off if off else None


def _deref(buf, pos: int) -> int:
    return pos + _u32(buf, pos)


def _vector(buf, table: int, index: int) -> tuple[int, int]:
    """(position of the first element, length) of a vector field; (0, 0) when absent."""
    pos = _field(buf, table, index)
    if pos is None:
        return 0, 0
    vec = _deref(buf, pos)
    return vec + 4, _u32(buf, vec)


def planned_arenas(pte: bytes) -> dict[str, list[int]]:
    """{method: [bytes of each memory-planned buffer]} read from the .pte's program flatbuffer.

    Program field 1 = execution_plan: [ExecutionPlan]; ExecutionPlan field 0 = name, field 8 =
    non_const_buffer_sizes: [int64] (schema/program.fbs). Index 0 of the sizes is reserved and dropped.
    """
    if len(pte) < 8 or pte[4:8] != PTE_MAGIC:
        raise UserError("not an ExecuTorch program (.pte identifier ET12 missing)")
    try:
        root = _deref(pte, 0)
        plans, n = _vector(pte, root, 1)
        out = {}
        for k in range(n):
            plan = _deref(pte, plans + 4 * k)
            name_pos = _deref(pte, _field(pte, plan, 0))
            name = pte[name_pos + 4:name_pos + 4 + _u32(pte, name_pos)].decode()
            sizes, m = _vector(pte, plan, 8)
            out[name] = [struct.unpack_from("<q", pte, sizes + 8 * i)[0] for i in range(m)][1:]
        return out
    except (struct.error, TypeError, UnicodeDecodeError):
        raise UserError("the .pte program header is corrupt (cannot read its execution plans)") from None


def memory_summary(pte: bytes) -> dict:
    arenas = planned_arenas(pte)
    return {"planned_arena_bytes": {name: int(sum(s)) for name, s in sorted(arenas.items())},
            "planned_buffers": {name: [int(x) for x in s] for name, s in sorted(arenas.items())}}


_OPEN_RUNNERS: "weakref.WeakSet[ExecutorchRunner]" = weakref.WeakSet()


class _Captured:
    def __init__(self, f):
        self.f = f

    def text(self) -> str:
        sys.stderr.flush()
        _libc_fflush()
        self.f.seek(0)
        return self.f.read().decode(errors="replace")


def _libc_fflush() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _native_stderr():
    """Route the runtime's log to a temp file for the duration; yields it for error messages.

    The C++ side writes to fd 2, the pybindings to Python's `sys.stderr` (which pytest, for one, replaces):
    both are pointed at the same file (dup'ed descriptors share one offset, so lines do not overwrite)."""
    sys.stderr.flush()
    saved_fd, saved_py = os.dup(2), sys.stderr
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = open(os.dup(tmp.fileno()), "w", buffering=1, errors="replace")
        try:
            yield _Captured(tmp)
        finally:
            sys.stderr.flush()
            _libc_fflush()  # C stdio may buffer fd 2 when it is not a terminal
            sys.stderr.close()
            sys.stderr = saved_py
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def set_threads(n: int) -> int:
    """Resize ExecuTorch's process-wide threadpool (before any method is loaded); returns the count in use."""
    from executorch.extension.pybindings import portable_lib
    current = int(portable_lib._threadpool_get_thread_count())
    if current != n:
        if len(_OPEN_RUNNERS):  # resizing under loaded methods deadlocks them
            raise UserError(f"ExecuTorch's threadpool is shared by the whole process and runs {current} "
                            f"thread(s) for the runners already open; close them before asking for {n}")
        portable_lib._unsafe_reset_threadpool(n)
        current = int(portable_lib._threadpool_get_thread_count())
    return current


@register("executorch")
class ExecutorchRunner(Runner):
    def __init__(self, root, entry, threads: int = 1, verify: bool = True, etdump: bool = False,
                 debug_buffer_size: int = 0):
        self.etdump = etdump                        # per-op profile: write it with `write_etdump(path)`
        self.debug_buffer_size = int(debug_buffer_size)
        super().__init__(root, entry, threads, verify)

    def load(self):
        self.methods = self.program = None
        with _native_stderr() as log:  # the bindings log CPU probing and threadpool resets to fd 2
            try:
                import torch
                from executorch.runtime import Runtime
                if self.entry.get("quantization") != "fp32":
                    # quantized_decomposed::* kernels: our recipes leave none outside XNNPACK, but a .pte made
                    # with ExecuTorch's LLM route (embedding_byte) fails to load without them
                    import executorch.kernels.quantized  # noqa: F401
            except ImportError:
                raise UserError("the executorch target needs the executorch package: pip install executorch") from None
            self._torch = torch
            self.path = self.file(".pte")
            self.pte_memory = memory_summary(self.path.read_bytes())
            self.threads_used = set_threads(self.threads)
            try:
                self.program = Runtime.get().load_program(self.path, enable_etdump=self.etdump,
                                                          debug_buffer_size=self.debug_buffer_size)
                missing = set(METHODS) - set(self.program.method_names)
                if missing:
                    raise UserError(f"{self.entry['id']}: the .pte lacks method(s) {', '.join(sorted(missing))}")
                self.methods = {name: self.program.load_method(name) for name in METHODS}
            except UserError:
                raise
            except Exception as exc:  # RuntimeError / ValueError with an error code; the reason is in the log
                why = [ln for ln in log.text().splitlines()  # the runtime's own lines: "[file.cpp:N] ..."
                       if ln.startswith("[") and not ln.startswith(("[cpuinfo", "[threadpool"))][-2:]
                raise UserError(f"ExecuTorch could not load {self.entry['id']}: {str(exc).splitlines()[0]}"
                                + (f" ({' '.join(why)})" if why else "")) from None
        _OPEN_RUNNERS.add(self)

    def _run(self, name, *args):
        if self.methods is None:
            raise UserError(f"runner for {self.entry['id']} is closed")
        # outputs are copied out of the planned arenas by the bindings, so they can be kept as they are
        s, i, st = self.methods[name].execute(tuple(self._torch.from_numpy(a) for a in args))
        return StepOutput(s.numpy(), i.numpy(), st.numpy())

    def _prefill(self, item_ids):
        return self._run("prefill", item_ids)

    def _step(self, item_id, state):
        return self._run("step", item_id, state)

    def memory_info(self) -> dict:
        """Planned arena bytes per method, read from the loaded program's file, and the threads in use."""
        return {**self.pte_memory, "executorch_threads": self.threads_used}

    def close(self) -> None:
        self.methods, self.program = None, None
        _OPEN_RUNNERS.discard(self)

    def write_etdump(self, etdump_path: str | Path, debug_path: str | Path | None = None) -> Path:
        """Write the ETDump of every call so far (needs `etdump=True`)."""
        if not self.etdump:
            raise UserError("open the runner with etdump=True to record an ETDump")
        if self.program is None:
            raise UserError(f"runner for {self.entry['id']} is closed")
        etdump_path = Path(etdump_path)
        debug_path = Path(debug_path) if debug_path else etdump_path.with_suffix(".debug.bin")
        self.program.write_etdump_result_to_file(str(etdump_path), str(debug_path))
        return etdump_path

    def op_profile(self, etdump_path: str | Path) -> list[dict]:
        """Per-op timings of every call so far, slowest first: [{event, calls, median_ms, total_ms}].

        Events are the runtime's own names: `native_call_<op>` for portable kernels, `DELEGATE_CALL` for
        each XNNPACK partition and XNNPACK's operator names inside it. executorch 1.5.1's Inspector maps
        events to graph nodes through an ETRecord only for a method named `forward`, so the ETRecord that
        `export --etdump` writes is for Inspector sessions on a single method; here events are read as is.
        """
        import warnings
        from executorch.devtools import Inspector
        path = self.write_etdump(etdump_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor dumps were asked for
            df = Inspector(etdump_path=str(path)).to_dataframe()
        times: dict[str, list[float]] = {}
        for name, raw in zip(df["event_name"], df["raw"]):
            times.setdefault(str(name), []).extend(float(x) for x in raw)
        rows = [{"event": n, "calls": len(v), "median_ms": float(np.median(v)), "total_ms": float(np.sum(v))}
                for n, v in times.items() if v]
        return sorted(rows, key=lambda r: -r["total_ms"])
