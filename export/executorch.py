"""ExecuTorch export: one `model.pte` per width and quantization holding both methods (`prefill` with a
dynamic T in 1..max_len, `step`), lowered to XNNPACK, weights shared between the methods.

Recipes (all through the same path; only the weight format of the linears changes):
  fp32  every matrix fp32.
  int8  8da8w: int8 per-channel weights, activations quantized per call (torchao
        `Int8DynamicActivationIntxWeightConfig`, run by XNNPACK's qd8-f32-qc8w GEMMs); the item table too.
  int4  8da4w: 4-bit weights in groups of 32, same dynamic activations. XNNPACK takes only groups that are
        multiples of 32 (a smaller group, or per channel on fewer than 32 inputs, fails to lower), so int4
        exists from width 32 up.

The item table. XNNPACK has no gather, so the lookup of input items runs on ExecuTorch's portable
kernels while the scoring matmul [1, m] x [m, N+1] (most of a step's work) runs in XNNPACK. A constant
used both inside and outside a delegate is stored twice, so the table is held twice on purpose: a gather
copy (fp32, or int8 with one scale per row for the quantized recipes) and the scorer's GEMM weights
(fp32 / int8 / int4). Measured on /tmp/runs/a d256 (1 thread, method execute): one tied portable copy
makes the fp32 file 5.7 MB instead of 7.4 MB, but every step then slices, transposes and scores the
whole table on portable kernels: 252 us instead of 116 us, and for int8 ~1.1 ms instead of 70 us (the
per-call int8 -> fp32 conversion of the table). The scorer covers all N+1 rows and drops row 0
afterwards (a slice of the constant would be copied on every call).

The kernel of `DeployLayer.sequence` is built so XNNPACK can take it (views with one dynamic dim each;
an embedding lookup for lambda^(t-s)), so fp32 here matches eager PyTorch to ~1e-6.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmrlrec_edge.deploy import DeployableWidth, PrefillModule, QuantizedItemTable, StepModule
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.fileio import atomic_write_bytes

from .base import Exporter, register

PTE_NAME = "model.pte"
ETRECORD_NAME = "model.etrecord"
INT4_GROUP = 32


class XnnpackItemTable(nn.Module):
    """The item table as XNNPACK wants it: a gather copy for inputs and an `nn.Linear` scorer over every
    row (so the quantizer sees a plain linear and XNNPACK gets static weights). Same values as `ItemTable`
    (fp32) or `QuantizedItemTable` (the int8 gather) in eager mode."""

    def __init__(self, E: torch.Tensor, quantized_gather: bool):
        super().__init__()
        E = E.detach()
        self.quantized_gather = quantized_gather
        if quantized_gather:
            qt = QuantizedItemTable(E)
            self.register_buffer("q", qt.q)
            self.register_buffer("scale", qt.scale[:, None].contiguous())
        else:
            self.register_buffer("weight", E.clone().contiguous())
        self.scorer = nn.Linear(E.shape[1], E.shape[0], bias=False)
        self.scorer.weight.data.copy_(E)

    def embed(self, ids):
        if self.quantized_gather:  # F.embedding: a row copy on device (the generic index kernel is slow)
            return F.embedding(ids, self.q).float() * F.embedding(ids, self.scale)
        return F.embedding(ids, self.weight)

    def score(self, x):
        return self.scorer(x)[:, 1:]


def prepare(dw: DeployableWidth, quant: str) -> DeployableWidth:
    """A copy of `dw` laid out for XNNPACK and quantized per `quant` (the caller's module is untouched)."""
    dw = copy.deepcopy(dw)
    dw.items = XnnpackItemTable(dw.items.weight if hasattr(dw.items, "weight") else dw.items.dequantized(),
                                quantized_gather=quant != "fp32")
    if quant in ("int8", "int4"):
        from torchao.quantization.granularity import PerAxis, PerGroup
        from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig, quantize_
        # hqq_scale_only: scales searched to minimise the weight error, as ExecuTorch's own LLM recipes do
        # (`extension.llm.export.quantize`); on /tmp/runs/a it held Recall@10 where min/max scales lost 4%
        # at d64 int4
        bits, granularity = (torch.int8, PerAxis(0)) if quant == "int8" else (torch.int4, PerGroup(INT4_GROUP))
        config = Int8DynamicActivationIntxWeightConfig(weight_dtype=bits, weight_granularity=granularity,
                                                       intx_choose_qparams_algorithm="hqq_scale_only")
        with torch.no_grad():
            quantize_(dw, config, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear))
    return dw.eval()


@contextlib.contextmanager
def _quiet():
    """torch.export / executorch / torchao print warnings and progress per call: keep the terminal readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        before = logging.root.manager.disable
        logging.disable(max(before, logging.WARNING))
        try:
            yield
        finally:
            logging.disable(before)


def lower(dw: DeployableWidth, etrecord: bool = False):
    """torch.export both methods and lower them together to XNNPACK. Returns the ExecutorchProgramManager."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    T = torch.export.Dim("T", min=1, max=dw.max_len)
    example = torch.arange(1, min(dw.max_len, dw.n_items) + 1, dtype=torch.int64)
    with torch.no_grad():
        programs = {
            "prefill": torch.export.export(PrefillModule(dw), (example,), dynamic_shapes=({0: T},)),
            "step": torch.export.export(StepModule(dw), (torch.tensor([1]), dw.zero_state())),
        }
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                           generate_etrecord=etrecord)
        ops = {name: _op_histogram(edge.exported_program(name).graph_module) for name in programs}
        return edge.to_executorch(), ops


def _op_histogram(gm) -> dict:
    """What runs where: XNNPACK delegate calls vs ops left on ExecuTorch's portable kernels."""
    counts = Counter()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name in ("getitem", "sym_size.int", "sym_size"):
            continue
        counts["xnnpack_delegate" if name == "executorch_call_delegate" else name] += 1
    return dict(sorted(counts.items()))


@register("executorch")
class ExecutorchExporter(Exporter):
    quantizations = ("fp32", "int8", "int4")
    default_quants = ("fp32", "int8")

    def export(self, dw, quant, out_dir, options):
        from fmrlrec_edge.runtime.executorch import memory_summary
        self.check_quant(quant)
        if quant == "int4" and dw.m % INT4_GROUP:
            raise UserError(f"executorch int4 needs width >= {INT4_GROUP} (XNNPACK's 4-bit groups are multiples "
                            f"of {INT4_GROUP}); for width {dw.m} use int8 or fp32")
        want_etrecord = bool(options.get("etdump"))
        try:
            with _quiet():
                prog, ops = lower(prepare(dw, quant), etrecord=want_etrecord)
        except ImportError as exc:
            raise UserError(f"the executorch target needs executorch and torchao ({exc}); run `make install`") from None
        except Exception as exc:  # an op or shape XNNPACK/ExecuTorch refuses; skip this artifact, say why
            msg = str(exc).strip().splitlines()
            raise UserError(f"ExecuTorch could not lower d{dw.m} {quant}: {type(exc).__name__}: "
                            f"{msg[0] if msg else ''}") from exc
        pte = bytes(prog.buffer)
        atomic_write_bytes(Path(out_dir) / PTE_NAME, pte)
        extra = {
            "backend": "XnnpackBackend",
            "recipe": {"fp32": "fp32", "int8": "8da8w (int8 per-channel weights, dynamic int8 activations)",
                       "int4": f"8da4w (int4 weights in groups of {INT4_GROUP}, dynamic int8 activations)"}[quant],
            "item_table": ("gather copy " + ("int8 per-row" if quant != "fp32" else "fp32")
                           + " (portable kernel) + scorer GEMM weights in XNNPACK"),
            "ops": ops,
        }
        if want_etrecord:  # for executorch.devtools.Inspector; see runtime/executorch.py on its limits
            with _quiet():
                prog.get_etrecord().save(str(Path(out_dir) / ETRECORD_NAME))
            extra["etrecord"] = ETRECORD_NAME
        return {"tool_versions": _versions("executorch", "torchao"), "runtime_memory": memory_summary(pte),
                "extra": extra}

    def validate(self, dw, quant, out_dir, entry):
        """Structure without running: both methods present, delegated to XNNPACK, arenas planned."""
        from fmrlrec_edge.runtime.executorch import planned_arenas
        arenas = planned_arenas((Path(out_dir) / PTE_NAME).read_bytes())
        missing = {"prefill", "step"} - set(arenas)
        if missing:
            raise UserError(f"{entry['id']}: the .pte lacks method(s) {', '.join(sorted(missing))}")
        delegated = {name: entry["extra"]["ops"][name].get("xnnpack_delegate", 0) for name in arenas}
        if not all(delegated.values()):
            raise UserError(f"{entry['id']}: nothing was delegated to XNNPACK ({delegated})")
        return {"methods": sorted(arenas), "xnnpack_partitions": delegated}


def _versions(*pkgs):
    from .driver import tool_versions
    return tool_versions(*pkgs)
