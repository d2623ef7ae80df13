"""LiteRT (TFLite) export: one `model.tflite` per width/quantization holding two signatures, `step` and
`prefill`, that share their weights. fp32 / fp16 weights / int8 dynamic range.

LiteRT conversion cannot take a dynamic T, so `prefill` is exported at max_len: `item_ids[max_len]`
left-padded with 0 plus `length[1]` (padding is masked, so it changes nothing); the manifest says
prefill="padded" and the runner pads for the caller. The converter downcasts int64 I/O to int32; the
real signature dtypes are recorded in the entry's `extra` and the runner casts both ways.

What is converted is `DeployableWidth` itself (its step and padded prefill, with named outputs). Two of
its choices matter most here: the recurrence over a history is a log-step scan (a [T, T, m] decay kernel
would be folded into T*T*m constants at a fixed T: 2.6 MB of a 3.8 MB fp32 file at width 64), and the item
table is one constant used by `F.embedding` (EMBEDDING_LOOKUP, which the int8/fp16 recipes quantize; a plain
gather they skip) and by `x @ E^T` with the padding column dropped after (`x @ E[1:]^T` would be folded into
a second copy of the table).
- int8 is the converter's dynamic-range recipe (int8 weights, per channel = per item row for the table,
  activations quantized per call). Measured on ML-100k width 256 against `quantize_item_table()` (int8
  per-row table with explicit dequant, linears still by the recipe): same Recall@10 (0.1050; eager
  0.1029), file 1.5% larger (1.63 vs 1.60 MB: per-channel parameters), but step 50 us instead of 121 us,
  because the explicit dequant casts the whole table on every call.
- internal tensor names (debug strings) are dropped after conversion (`strip_tensor_names`).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.runtime.litert import quiet_native_output

from .base import Exporter, register

MODEL_FILE = "model.tflite"
# names the signatures are exported with (inputs from the sample kwargs, outputs from the returned dict)
SIGNATURES = {
    "step": (("item_id", "state"), ("top_scores", "top_ids", "next_state")),
    "prefill": (("item_ids", "length"), ("top_scores", "top_ids", "state")),
}


with quiet_native_output():   # an ImportError still propagates (get_exporter turns it into a one-line UserError)
    import litert_torch
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.tools import flatbuffer_utils
    from litert_torch.generative.quantize import quant_recipes


# -- the graph LiteRT converts ---------------------------------------------------------------------------
class LitertStep(nn.Module):
    """`DeployableWidth.step` with named outputs (they become the signature's output names)."""

    def __init__(self, dw: DeployableWidth):
        super().__init__()
        self.dw = dw

    def forward(self, item_id, state):
        top_scores, top_ids, next_state = self.dw.step(item_id, state)
        return {"top_scores": top_scores, "top_ids": top_ids, "next_state": next_state}


class LitertPrefillPadded(LitertStep):
    """`DeployableWidth.prefill_padded(item_ids[max_len] left-padded with 0, length[1])`, named outputs."""

    def forward(self, item_ids, length):
        top_scores, top_ids, state = self.dw.prefill_padded(item_ids, length)
        return {"top_scores": top_scores, "top_ids": top_ids, "state": state}


# -- conversion ------------------------------------------------------------------------------------------
RECIPES = {  # quantization -> (what the manifest says, the litert-torch recipe)
    "fp32": ("none", lambda: None),
    "fp16": ("fp16 weights (dequantized at load/run), fp32 compute", quant_recipes.full_fp16_recipe),
    "int8": ("dynamic-range int8: int8 weights per channel incl. the item table, activations quantized per call",
             quant_recipes.full_dynamic_recipe),
}


def convert(dw: DeployableWidth, quant: str) -> bytes:
    """The .tflite bytes: signatures `step` and `prefill` (padded) in one model."""
    L = dw.max_len
    example_hist = torch.arange(L, dtype=torch.int64) % dw.n_items + 1    # fixed shapes: the values do not matter
    step_kw = {"item_id": torch.tensor([1], dtype=torch.int64), "state": dw.zero_state()}
    prefill_kw = {"item_ids": example_hist, "length": torch.tensor([L], dtype=torch.int64)}
    quant_config = RECIPES[quant][1]()
    old_progress, old_disable = os.environ.get("LITERT_TORCH_SHOW_PROGRESS"), logging.root.manager.disable
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"      # one progress line per pass otherwise
    logging.disable(logging.WARNING)                    # "downcasts 64-bit model I/O" (handled by the runner)
    try:
        with warnings.catch_warnings(), quiet_native_output():
            warnings.simplefilter("ignore")
            model = (litert_torch.signature("step", LitertStep(dw).eval(), sample_kwargs=step_kw)
                     .signature("prefill", LitertPrefillPadded(dw).eval(), sample_kwargs=prefill_kw)
                     .convert(quant_config=quant_config))
            data = model.model_content()
    except Exception as exc:  # the converter raises many types; the user needs the first line only
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"LiteRT conversion of width {dw.m} {quant} failed: {msg}") from None
    finally:
        logging.disable(old_disable)
        if old_progress is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old_progress
    return bytes(data)


def _buffer_bytes(raw: bytes, buf) -> bytes:
    if buf.data is not None and len(buf.data):
        return np.asarray(buf.data, dtype=np.uint8).tobytes()
    if buf.offset > 1 and buf.size:      # stored after the flatbuffer (offset/size form)
        return raw[buf.offset:buf.offset + buf.size]
    return b""


def strip_tensor_names(raw: bytes, min_external: int = 1024) -> bytes:
    """Drop the debug names of internal tensors (module paths, ~50-70 KB per model, a fixed cost that
    quantization cannot shrink). Signature names and the names of I/O tensors stay; execution never
    reads the others (`flatbuffer_utils.strip_strings` does the same but also drops the signatures).

    Re-written the way ai-edge-quantizer writes large models: buffers of `min_external` bytes or more
    after the flatbuffer, 16-byte aligned, located by offset/size; small ones inline.
    """
    model = tfl.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    for sd in model.signatureDefs or []:
        keep = {t.tensorIndex for t in (sd.inputs or []) + (sd.outputs or [])}
        for i, t in enumerate(model.subgraphs[sd.subgraphIndex].tensors):
            if i not in keep:
                t.name = None
    external = {}
    for i, buf in enumerate(model.buffers):
        data = _buffer_bytes(raw, buf)
        if len(data) >= min_external:
            external[i] = data
            buf.data, buf.offset, buf.size = None, 1, 1     # placeholders (non-default, so they are packed)
        else:
            buf.data = np.frombuffer(data, dtype=np.uint8).copy() if data else None
            buf.offset, buf.size = 0, 0
    head = flatbuffer_utils.convert_object_to_bytearray(model)
    out = bytearray(head) + bytes(-len(head) % 16)
    packed = tfl.Model.GetRootAs(out, 0)
    for i, data in external.items():
        flatbuffer_utils.update_packed_buffer(packed.Buffers(i), offset=len(out), size=len(data))
        out += data + bytes(-len(data) % 16)
    return bytes(out)


def read_signatures(path: Path) -> dict:
    """{name: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} as stored in the .tflite."""
    types = {v: k.lower() for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    model = tfl.Model.GetRootAs(Path(path).read_bytes(), 0)
    out = {}
    for s in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(s)
        sg = model.Subgraphs(sd.SubgraphIndex())

        def io(n, get):
            d = {}
            for j in range(n):
                t = sg.Tensors(get(j).TensorIndex())
                d[get(j).Name().decode()] = [types.get(t.Type(), str(t.Type())), t.ShapeAsNumpy().tolist()]
            return d
        out[sd.SignatureKey().decode()] = {"inputs": io(sd.InputsLength(), sd.Inputs),
                                           "outputs": io(sd.OutputsLength(), sd.Outputs)}
    return out


def constant_bytes_by_dtype(path: Path) -> dict:
    """Bytes of distinct constant buffers per tensor dtype (what the weights are stored as)."""
    raw = Path(path).read_bytes()
    types = {v: k.lower() for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    model = tfl.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    seen, out = set(), {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.buffer in seen:
                continue
            n = len(_buffer_bytes(raw, model.buffers[t.buffer])) if t.buffer else 0
            if n:
                seen.add(t.buffer)
                name = types.get(t.type, str(t.type))
                out[name] = out.get(name, 0) + n
    return out


@register("litert")
class LitertExporter(Exporter):
    quantizations = ("fp32", "fp16", "int8")
    default_quants = ("fp32", "fp16", "int8")
    prefill_mode = "padded"

    def export(self, dw, quant, out_dir, options):
        self.check_quant(quant)
        path = Path(out_dir) / MODEL_FILE
        data = strip_tensor_names(convert(dw, quant))
        path.write_bytes(data)   # out_dir is the driver's staging folder: it is renamed into place atomically
        return {"tool_versions": _versions("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
                "extra": {"file": MODEL_FILE, "signatures": read_signatures(path),
                          "quant_recipe": RECIPES[quant][0], "prefill_scan": "log-step (Hillis-Steele)",
                          "tensor_names": "stripped (all but signature I/O)"}}

    def validate(self, dw, quant, out_dir, entry):
        """Structure only: both signatures with the names and shapes the runner feeds, weight dtypes."""
        path = Path(out_dir) / MODEL_FILE
        sigs = read_signatures(path)
        L, m, K = dw.n_layers, dw.m, dw.top_k
        want = {"step": {"item_id": [1], "state": [L, 2, m]}, "prefill": {"item_ids": [dw.max_len], "length": [1]}}
        problems = []
        for name, (ins, outs) in SIGNATURES.items():
            got = sigs.get(name)
            if got is None:
                problems.append(f"signature {name} missing")
                continue
            for i in ins:
                if got["inputs"].get(i, [None, None])[1] != want[name][i]:
                    problems.append(f"{name}.{i} is {got['inputs'].get(i)}")
            if sorted(got["outputs"]) != sorted(outs) or got["outputs"]["top_ids"][1] != [K]:
                problems.append(f"{name} outputs are {got['outputs']}")
        if problems:
            raise UserError(f"LiteRT model for width {m} {quant} has the wrong interface: {'; '.join(problems)}")
        return {"signatures": sorted(sigs), "constant_bytes_by_dtype": constant_bytes_by_dtype(path)}


def _versions(*pkgs):
    from .driver import tool_versions
    return tool_versions(*pkgs)
