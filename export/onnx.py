"""ONNX export: one graph per method (prefill with a dynamic T, step), fp32 / fp16 / int8 dynamic.

fp16 goes through onnxruntime's own converter with fp32 inputs/outputs kept (the app feeds fp32 state);
int8 is onnxruntime's dynamic quantization (int8 weights, activations quantized per call), per-channel,
applied to every MatMul/Gemm; the item table (most of the bytes, and skipped by onnxruntime's quantizer
because it feeds both a Gather and a transposed MatMul) is stored int8 per row (`QuantizedItemTable`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from pathlib import Path

import torch

from fmrlrec_edge.deploy import DeployableWidth, PrefillModule, StepModule

from .base import Exporter, register

METHOD_IO = {
    "prefill": (["item_ids"], ["top_scores", "top_ids", "state"]),
    "step": (["item_id", "state"], ["top_scores", "top_ids", "next_state"]),
}


def export_fp32(dw: DeployableWidth, out_dir: Path) -> dict[str, Path]:
    paths = {}
    T = torch.export.Dim("T", min=1, max=dw.max_len)
    example_hist = torch.arange(1, min(dw.max_len, dw.n_items) + 1, dtype=torch.int64)
    calls = {
        "prefill": (PrefillModule(dw), (example_hist,), {"item_ids": {0: T}}),
        "step": (StepModule(dw), (torch.tensor([1]), dw.zero_state()), None),
    }
    for name, (module, args, dyn) in calls.items():
        ins, outs = METHOD_IO[name]
        path = out_dir / f"{name}.onnx"
        # the exporter prints progress lines and warnings per call: keep the user's terminal readable
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=True, input_names=ins, output_names=outs,
                              dynamic_shapes=dyn, external_data=False, verbose=False)
        strip_debug_info(path)
        paths[name] = path
    return paths


def strip_debug_info(path: Path) -> None:
    """Drop what the exporter records for debugging (per-node source metadata, intermediate shape info):
    ~70 KB per graph, a third of a small int8 artifact; onnxruntime re-infers shapes at load."""
    import onnx
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def to_fp16(path: Path) -> None:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel
    model = OnnxModel(onnx.load(str(path)))
    model.convert_float_to_float16(keep_io_types=True)
    onnx.save(model.model, str(path))


def to_int8(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    tmp = path.with_suffix(".fp32.onnx")
    os.replace(path, tmp)
    try:
        quantize_dynamic(str(tmp), str(path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"],
                         extra_options={"MatMulConstBOnly": True})
    finally:
        tmp.unlink(missing_ok=True)


@register("onnx")
class OnnxExporter(Exporter):
    quantizations = ("fp32", "fp16", "int8")
    default_quants = ("fp32", "fp16", "int8")

    def export(self, dw, quant, out_dir, options):
        self.check_quant(quant)
        if quant == "int8":  # the table as int8 + per-row scales; onnxruntime then quantizes the linears
            dw = copy.deepcopy(dw).quantize_item_table()
        paths = export_fp32(dw, out_dir)
        for p in paths.values():
            if quant == "fp16":
                to_fp16(p)
            elif quant == "int8":
                to_int8(p)
        return {"tool_versions": _versions("onnx", "onnxscript", "onnxruntime"), "extra": {"opset": _opset(paths["step"])}}


def _opset(path: Path) -> int:
    import onnx
    return max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))


def _versions(*pkgs):
    from .driver import tool_versions
    return tool_versions(*pkgs)
