"""Core ML export: one mlprogram `.mlpackage` per width and quantization, holding `prefill` (dynamic T)
and `step` as two functions of one multifunction model that share their weights; optionally a stateful
`step` whose recurrent state lives inside the model (iOS18 `StateType`).

Quantizations: fp32 (FLOAT32 compute), fp16 (FLOAT16 weights and compute), int8 (per-channel symmetric
weights, the item table per row), int4 (per-block symmetric, blocks of 32 along the input axis). The
quantized ones compute in fp16 (the Neural Engine's precision). Everything targets iOS18 / macOS15: that
is what multifunction packages (weight sharing), int4 blocks and `StateType` need.

Core ML executes only on macOS. Elsewhere the package is validated structurally (`validate_package`):
names, dtypes, shapes and ranges, spec version, op histogram, weight storage dtypes, sizes, and the
dequantized weights against the PyTorch width-m weights; the manifest then says the gates were not run.

Naming: MIL reserves the word `state` (coremltools renames it `state_workaround`, and the compiled model
is MIL text where it is a keyword), so the recurrent state is `hidden_state` in Core ML (prefill output,
step input); everything else keeps the DeployableWidth names. Item ids are int32 (Core ML has no int64
inputs). Both facts are recorded in the manifest entry's `extra`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fmrlrec_edge.deploy import DeployableWidth, ItemTable, PrefillModule, StepModule
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.runtime.coreml import import_coremltools  # shared with the runner (runtime never imports export)

from .base import Exporter, register

MIN_IOS, MIN_MACOS = "iOS18", "macOS15"
PACKAGE = "fmrlrec.mlpackage"                  # multifunction: prefill + step
STATEFUL_PACKAGE = "step_stateful.mlpackage"   # --stateful: step with the state kept in the model
STATE = "hidden_state"                         # the Core ML name of the DeployableWidth `state`
STATEFUL_STATE = "lru_state"                   # the StateType buffer of the stateful step
INT4_BLOCK = 32
# storage dtype of the matrices (item table, linears) per quantization, as MIL names it
WEIGHT_DTYPE = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int4": "int4"}
DEQUANT_OP = "constexpr_blockwise_shift_scale"   # iOS18 weight dequantization (int8 and int4)


# -- coremltools, quietly --------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet():
    """The converter draws progress bars on stderr and warns per op: keep the user's terminal readable
    (errors still propagate as exceptions)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# -- the modules that get traced ---------------------------------------------------------------------------
class StatefulStep(nn.Module):
    """step() with the state in a buffer that Core ML turns into a `StateType`. The buffer is updated by
    slice assignment: that is what the converter maps to a state write (`copy_` does not convert).
    Core ML states are fp16 only, so the buffer is fp16 and the step itself runs at the model's precision."""

    def __init__(self, dw: DeployableWidth):
        super().__init__()
        self.dw = dw
        self.register_buffer(STATEFUL_STATE, dw.zero_state().half())

    def forward(self, item_id):
        state = getattr(self, STATEFUL_STATE)
        top_scores, top_ids, new = self.dw.step(item_id, state.float())
        state[:, :, :] = new.half()
        return top_scores, top_ids


def coreml_width(dw: DeployableWidth) -> DeployableWidth:
    dw = copy.deepcopy(dw)
    if type(dw.items) is not ItemTable:
        raise UserError("the coreml exporter expects the fp32 item table (it quantizes the table itself)")
    return dw.eval()


def _example_history(dw):
    T = min(10, dw.max_len)
    return (torch.arange(T, dtype=torch.int64) % dw.n_items) + 1


def _precision(ct, quant):
    return ct.precision.FLOAT32 if quant == "fp32" else ct.precision.FLOAT16


def convert_prefill(ct, dw: DeployableWidth, quant: str):
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(PrefillModule(dw).eval(), (_example_history(dw),))
        return ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
            compute_precision=_precision(ct, quant),
            inputs=[ct.TensorType(name="item_ids", dtype=np.int32,
                                  shape=(ct.RangeDim(1, dw.max_len, default=dw.max_len),))],
            outputs=[ct.TensorType(name="top_scores", dtype=np.float32), ct.TensorType(name="top_ids", dtype=np.int32),
                     ct.TensorType(name=STATE, dtype=np.float32)])


def convert_step(ct, dw: DeployableWidth, quant: str):
    L, m = dw.n_layers, dw.m
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(StepModule(dw).eval(), (torch.tensor([1]), dw.zero_state()))
        return ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
            compute_precision=_precision(ct, quant),
            inputs=[ct.TensorType(name="item_id", shape=(1,), dtype=np.int32),
                    ct.TensorType(name=STATE, shape=(L, 2, m), dtype=np.float32)],
            outputs=[ct.TensorType(name="top_scores", dtype=np.float32), ct.TensorType(name="top_ids", dtype=np.int32),
                     ct.TensorType(name="next_state", dtype=np.float32)])


def convert_stateful_step(ct, dw: DeployableWidth, quant: str):
    L, m = dw.n_layers, dw.m
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(StatefulStep(dw).eval(), (torch.tensor([1]),))
        return ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
            compute_precision=_precision(ct, quant),
            inputs=[ct.TensorType(name="item_id", shape=(1,), dtype=np.int32)],
            states=[ct.StateType(wrapped_type=ct.TensorType(shape=(L, 2, m), dtype=np.float16),
                                 name=STATEFUL_STATE)],
            outputs=[ct.TensorType(name="top_scores", dtype=np.float32), ct.TensorType(name="top_ids", dtype=np.int32)])


def quantize(ct, mlmodel, quant: str, width: int):
    """int8 per channel / int4 per block on every matrix: the item table (per row) and the linears.
    The [max_len, m] tables of lambda powers stay fp16: prefill must decay exactly as step does.
    int4 blocks run along the input axis: 32 dims, or the whole width below 32."""
    if quant not in ("int8", "int4"):
        return mlmodel
    from coremltools.optimize import coreml as cto
    if quant == "int8":
        cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                          weight_threshold=0)
    else:
        cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                          block_size=min(INT4_BLOCK, width), weight_threshold=0)
    names = {}
    for func in mlmodel._mil_program.functions.values():
        for op in func.operations:
            if op.op_type == "const" and op.outputs[0].rank == 2 and "pow_" not in op.name:
                names[op.name] = cfg
    with quiet():
        return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=names))


def export_packages(dw: DeployableWidth, quant: str, out_dir: Path, stateful: bool) -> dict:
    """Write PACKAGE (and STATEFUL_PACKAGE) into out_dir; returns what goes into the manifest's extra."""
    ct = import_coremltools()
    if quant == "int4" and dw.m % min(INT4_BLOCK, dw.m):
        raise UserError(f"int4 blocks of {INT4_BLOCK} do not tile width {dw.m}; use int8 for this width")
    cdw = coreml_width(dw)
    with tempfile.TemporaryDirectory(prefix="coreml-") as tmp:
        parts = {}
        for name, convert in (("prefill", convert_prefill), ("step", convert_step)):
            parts[name] = Path(tmp) / f"{name}.mlpackage"
            quantize(ct, convert(ct, cdw, quant), quant, dw.m).save(str(parts[name]))
        # one package, two functions: save_multifunction stores identical weights once
        desc = ct.utils.MultiFunctionDescriptor()
        for name, path in parts.items():
            desc.add_function(str(path), src_function_name="main", target_function_name=name)
        desc.default_function_name = "step"
        with quiet():
            ct.utils.save_multifunction(desc, str(out_dir / PACKAGE))
    extra = {"package": PACKAGE, "functions": ["prefill", "step"], "default_function": "step",
             "min_macos": MIN_MACOS, "io_names": {"state": STATE},
             "io_dtypes": "item ids and top_ids are int32 in Core ML (no int64 inputs); scores and state float32",
             "weights": _weights_note(quant), "compute_precision": "fp32" if quant == "fp32" else "fp16"}
    if stateful:
        quantize(ct, convert_stateful_step(ct, cdw, quant), quant, dw.m).save(str(out_dir / STATEFUL_PACKAGE))
        extra["stateful"] = {"package": STATEFUL_PACKAGE, "input": "item_id", "state": STATEFUL_STATE,
                             "state_dtype": "float16", "state_shape": [dw.n_layers, 2, dw.m], "min_os": MIN_IOS}
    _plain_file_modes(out_dir)
    return extra


def _plain_file_modes(folder: Path) -> None:
    """coremltools writes model.mlmodel through a temp file (mode 0600): give every file the mode a plain
    open() would, so other users (an app build, a web server) can read the export."""
    mask = os.umask(0)
    os.umask(mask)
    for f in folder.rglob("*"):
        if f.is_file():
            os.chmod(f, 0o666 & ~mask)


def _weights_note(quant):
    return {"fp32": "fp32", "fp16": "fp16",
            "int8": "int8 symmetric per output channel (item table per row); lambda powers fp16",
            "int4": f"int4 symmetric per block of {INT4_BLOCK} input dims; lambda powers fp16"}[quant]


# -- structural validation ---------------------------------------------------------------------------------
def reference_weights(dw: DeployableWidth) -> dict[str, np.ndarray]:
    """The PyTorch width-m matrices under the names the converter gives their constants."""
    refs = {"dw_items_weight": dw.items.weight.detach().numpy()}
    for name, mod in dw.named_modules():
        if isinstance(mod, nn.Linear):
            refs[f"dw_{name.replace('.', '_')}_weight"] = mod.weight.detach().numpy()
    return refs


def expected_package(dw: DeployableWidth, quant: str, stateful: bool = False) -> dict:
    """What `validate_package` checks a package against (names, dtypes, shapes, ranges, ops, weights)."""
    L, m, K, T = dw.n_layers, dw.m, dw.top_k, dw.max_len
    top = {"top_scores": ("float32", [K]), "top_ids": ("int32", [K])}
    if stateful:
        functions = {"main": {"inputs": {"item_id": ("int32", [1])}, "outputs": top,
                              "states": {STATEFUL_STATE: ("float16", [L, 2, m])},
                              "ops": ["gather", "linear", "topk", "read_state", "coreml_update_state"]}}
    else:
        functions = {
            "prefill": {"inputs": {"item_ids": ("int32", [T], (1, T))}, "outputs": {**top, STATE: ("float32", [L, 2, m])},
                        "ops": ["gather", "linear", "topk", "concat"]},
            "step": {"inputs": {"item_id": ("int32", [1]), STATE: ("float32", [L, 2, m])},
                     "outputs": {**top, "next_state": ("float32", [L, 2, m])}, "ops": ["gather", "linear", "topk"]},
        }
    # iOS18 = Core ML specification version 9 = MIL opset CoreML8
    return {"spec_version": 9, "opset": "CoreML8", "min_target": MIN_IOS, "functions": functions, "quant": quant,
            "weights": reference_weights(dw), "n_items": dw.n_items, "width": m}


def _feature(ft) -> tuple:
    """(dtype, shape, shape range or None) of a feature description (multiarray or state)."""
    from coremltools.proto import FeatureTypes_pb2
    kind = ft.type.WhichOneof("Type")
    if kind == "multiArrayType":
        arr = ft.type.multiArrayType
    elif kind == "stateType":
        arr = ft.type.stateType.arrayType
    else:
        return kind, [], None
    dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower().replace("double", "float64")
    rng = None
    if arr.WhichOneof("ShapeFlexibility") == "shapeRange":
        rng = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
    elif arr.WhichOneof("ShapeFlexibility") is not None:
        rng = arr.WhichOneof("ShapeFlexibility")
    return dtype, list(arr.shape), rng


def _weight_base(name: str) -> str:
    """dw_items_weight_to_fp16_quantized_data_0 -> dw_items_weight (the converter's suffixes)."""
    for suffix in ("_0", "_data", "_scale", "_quantized", "_to_fp16"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _blob_offsets(spec, refs) -> dict[str, dict[str, int]]:
    """function -> {weight: offset in the weights file}, for the blobs of the reference weights: a const's
    value, or the data / scale a dequantize op holds inline. Two functions share a weight when both point
    at the same offset."""
    out = {}
    for fname, func in spec.mlProgram.functions.items():
        offs = {}
        for block in func.block_specializations.values():
            for op in block.operations:
                name = op.outputs[0].name if op.outputs else ""
                if _weight_base(name) not in refs:
                    continue
                if op.type == "const" and op.attributes["val"].HasField("blobFileValue"):
                    offs[name] = op.attributes["val"].blobFileValue.offset
                for arg, binding in op.inputs.items():
                    for b in binding.arguments:
                        if b.HasField("value") and b.value.HasField("blobFileValue"):
                            offs[f"{name}.{arg}"] = b.value.blobFileValue.offset
        out[fname] = offs
    return out


def _dequant_bound(quant: str, op, ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per element: the error this quantization may make by its own definition, nothing more.

    fp16: one rounding of the weight (relative 2^-11). int8/int4 (scale s per channel or block, stored
    fp16): w -> fp16 (|w| 2^-11), rounding to the grid (s/2), the scale's own fp16 rounding (|q| ds ~
    |w| 2^-11) and the fp16 product q*s at dequantization (|w| 2^-11)."""
    if quant == "fp32":
        return np.full(ref.shape, 1e-7)
    ulp = 2.0 ** -11
    if quant == "fp16":
        return np.abs(ref) * ulp + 1e-7
    scale = np.asarray(op.scale.val, dtype=np.float64)
    for axis, (n, s) in enumerate(zip(ref.shape, scale.shape)):   # per channel / per block -> per element
        scale = np.repeat(scale, n // s, axis=axis)
    return scale / 2 * (1 + ulp) + (np.abs(ref) + 2 * np.abs(got)) * ulp + 1e-7


def _check_io(fname, desc, exp, problems) -> dict:
    got = {"inputs": {f.name: _feature(f) for f in desc.input}, "outputs": {f.name: _feature(f) for f in desc.output},
           "states": {f.name: _feature(f) for f in getattr(desc, "state", [])}}
    for kind in ("inputs", "outputs", "states"):
        want = exp.get(kind, {})
        if list(got[kind]) != list(want):
            problems.append(f"{fname} {kind} are {list(got[kind])}, expected {list(want)}")
            continue
        for name, w in want.items():
            dtype, shape, rng = got[kind][name]
            if dtype != w[0] or shape != list(w[1]):
                problems.append(f"{fname} {name} is {dtype}{shape}, expected {w[0]}{list(w[1])}")
            want_rng = [tuple(w[2])] if len(w) > 2 else None
            if rng != want_rng:
                problems.append(f"{fname} {name} shape range is {rng}, expected {want_rng}")
    return {kind: {n: [v[0], v[1]] + ([v[2]] if v[2] else []) for n, v in feats.items()}
            for kind, feats in got.items() if feats}


def _check_weights(fname, func, exp, problems) -> dict:
    """Storage dtype and dequantized values of every matrix vs PyTorch; the item table held once."""
    from coremltools.converters.mil.mil import types
    quant, refs, want = exp["quant"], exp["weights"], WEIGHT_DTYPE[exp["quant"]]
    found, tables, dtypes, max_err, worst = {}, 0, collections.Counter(), 0.0, 0.0
    for op in func.operations:
        if op.op_type not in ("const", DEQUANT_OP) or op.outputs[0].rank != 2:
            continue
        if op.op_type == "const" and any(c.op_type == DEQUANT_OP for c in op.outputs[0].child_ops):
            continue                                            # quantized data / scales of a dequantize op
        if list(op.outputs[0].shape)[1:] == [exp["width"]] and op.outputs[0].shape[0] in (exp["n_items"], exp["n_items"] + 1) \
                and "pow_" not in op.name:
            tables += 1                                         # a (full or sliced) copy of the item table
        base = _weight_base(op.outputs[0].name)
        if base in refs:
            found[base] = op
    if tables != 1:
        problems.append(f"{fname}: the item table is stored {tables} times (expected once)")
    missing = sorted(set(refs) - set(found))
    if missing:
        problems.append(f"{fname}: weights not found: {', '.join(missing[:3])}")
    for base, op in found.items():
        ref = refs[base].astype(np.float64)
        if op.op_type == "const":
            stored, got = types.builtin_to_string(op.outputs[0].dtype), op.outputs[0].val
        else:
            stored, got = types.builtin_to_string(op.data.dtype), op.materialized_val_inference()
        got = np.asarray(got, dtype=np.float64)
        dtypes[stored] += 1
        if stored != want:
            problems.append(f"{fname} {base} is stored as {stored}, expected {want}")
            continue
        if got.shape != ref.shape:
            problems.append(f"{fname} {base} has shape {list(got.shape)}, PyTorch {list(ref.shape)}")
            continue
        err, bound = np.abs(got - ref), _dequant_bound(quant, op, ref, got)
        max_err, worst = max(max_err, float(err.max())), max(worst, float((err / bound).max()))
        if (err > bound).any():
            i = np.unravel_index(int(np.argmax(err / bound)), err.shape)
            problems.append(f"{fname} {base}{[int(j) for j in i]} dequantizes to {got[i]:.6g}, PyTorch {ref[i]:.6g} "
                            f"(|diff| {err[i]:.2e} > {quant} bound {bound[i]:.2e})")
    return {"dtypes": dict(dtypes), "max_abs_error": max_err, "max_error_over_bound": worst}


def validate_package(path: str | Path, expected: dict) -> dict:
    """Structural checks of one `.mlpackage` without executing it (works on any OS): spec version and
    opset, function / input / output / state names, dtypes, shapes and ranges, required ops, weight
    storage dtypes, dequantized weights vs PyTorch, weight sharing between functions, sizes.

    Raises a one-line UserError naming the first failures; returns the measured facts otherwise."""
    ct = import_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    path, problems = Path(path), []
    try:
        with quiet():
            model = ct.models.MLModel(str(path), skip_model_load=True)
            spec = model.get_spec()
            if spec.WhichOneof("Type") != "mlProgram":
                raise UserError(f"Core ML package {path.name} is a {spec.WhichOneof('Type')}, expected an mlprogram")
            prog = load_mil(spec, spec.specificationVersion, model.weights_dir)
    except UserError:
        raise
    except Exception as exc:  # coremltools raises assorted types for unreadable packages
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"Core ML package {path} does not load: {first}") from None

    if spec.specificationVersion != expected["spec_version"]:
        problems.append(f"spec version {spec.specificationVersion}, expected {expected['spec_version']} "
                        f"({expected['min_target']})")
    opsets = {name: f.opset for name, f in spec.mlProgram.functions.items()}
    if set(opsets.values()) != {expected["opset"]}:
        problems.append(f"opsets {sorted(set(opsets.values()))}, expected {expected['opset']}")
    described = {f.name: f for f in spec.description.functions} or {"main": spec.description}
    if set(described) != set(expected["functions"]) or set(prog.functions) != set(expected["functions"]):
        problems.append(f"functions {sorted(described)}, expected {sorted(expected['functions'])}")

    io, hist, weights = {}, {}, {}
    for fname, exp in expected["functions"].items():
        if fname not in described or fname not in prog.functions:
            continue
        io[fname] = _check_io(fname, described[fname], exp, problems)
        func = prog.functions[fname]
        hist[fname] = dict(sorted(collections.Counter(op.op_type for op in func.operations).items()))
        for op_type in exp["ops"]:
            if op_type not in hist[fname]:
                problems.append(f"{fname} has no {op_type} op")
        quantized = expected["quant"] in ("int8", "int4")
        if (DEQUANT_OP in hist[fname]) != quantized:
            problems.append(f"{fname}: {DEQUANT_OP} ops {'present' if not quantized else 'missing'} "
                            f"in a {expected['quant']} package")
        weights[fname] = _check_weights(fname, func, expected, problems)

    offsets = _blob_offsets(spec, expected["weights"])
    shared = None                    # one function: nothing to share
    if len(offsets) > 1:
        shared = all(o == next(iter(offsets.values())) for o in offsets.values())
    for fname, offs in offsets.items():
        if not any(_weight_base(k.split(".")[0]) == "dw_items_weight" for k in offs):
            problems.append(f"{fname}: the item table is not in the weights file")
    if shared is False:
        problems.append(f"functions {sorted(offsets)} do not share their weights")

    files = [p for p in path.rglob("*") if p.is_file()]
    sizes = {"total_bytes": sum(p.stat().st_size for p in files),
             "weights_bytes": sum(p.stat().st_size for p in files if p.parent.name == "weights"),
             "spec_bytes": sum(p.stat().st_size for p in files if p.suffix == ".mlmodel")}
    if not sizes["weights_bytes"]:
        problems.append("no weights file in the package")

    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"Core ML package {path.name} failed structural validation: "
                        f"{'; '.join(problems[:3])}{more}")
    return {"spec_version": spec.specificationVersion, "opset": expected["opset"],
            "min_target": expected["min_target"], "io": io, "op_histogram": hist,
            "weight_dtypes": {f: w["dtypes"] for f, w in weights.items()},
            "weights_checked": len(expected["weights"]),
            "max_dequant_abs_error": max(w["max_abs_error"] for w in weights.values()),
            "max_dequant_error_over_bound": round(max(w["max_error_over_bound"] for w in weights.values()), 4),
            "shared_weights": shared, "sizes": sizes}


# -- macOS only: the stateful step against eager -------------------------------------------------------------
def stateful_chain_parity(dw: DeployableWidth, path: Path, items: list[int]) -> dict:
    """Feed `items` one by one through the stateful package (state kept in MLState) and through eager
    step(); report the top-K overlap and score difference. Needs the Core ML runtime (macOS)."""
    ct = import_coremltools()
    model = ct.models.MLModel(str(path))
    state, ref_state = model.make_state(), dw.zero_state()
    worst_diff, overlaps = 0.0, []
    for item in items:
        out = model.predict({"item_id": np.array([item], dtype=np.int32)}, state=state)
        with torch.no_grad():
            s, i, ref_state = dw.step(torch.tensor([item]), ref_state)
        worst_diff = max(worst_diff, float(np.abs(out["top_scores"] - s.numpy()).max()))
        overlaps.append(len(set(out["top_ids"].astype(int).tolist()) & set(i.tolist())) / len(i))
    return {"steps": len(items), "max_abs_diff": worst_diff, "min_topk_overlap": float(min(overlaps))}


@register("coreml")
class CoremlExporter(Exporter):
    quantizations = ("fp32", "fp16", "int8", "int4")
    default_quants = ("fp16", "int8")
    runs_here = sys.platform == "darwin"
    not_runnable_reason = "Core ML executes only on macOS"

    def export(self, dw, quant, out_dir, options):
        self.check_quant(quant)
        extra = export_packages(dw, quant, Path(out_dir), bool(options.get("stateful")))
        return {"tool_versions": _versions("coremltools"), "min_os": MIN_IOS, "extra": extra}

    def validate(self, dw, quant, out_dir, entry):
        out_dir = Path(out_dir)
        checks = {PACKAGE: validate_package(out_dir / PACKAGE, expected_package(dw, quant))}
        stateful = out_dir / STATEFUL_PACKAGE
        if stateful.exists():
            checks[STATEFUL_PACKAGE] = validate_package(stateful, expected_package(dw, quant, stateful=True))
            if sys.platform == "darwin":  # the driver's gates cover prefill/step; this covers MLState
                items = [int(i) for i in (np.arange(64) * 7 % dw.n_items) + 1]
                checks[STATEFUL_PACKAGE]["chain_parity"] = stateful_chain_parity(dw, stateful, items)
        return checks

    def runner_options(self, options):
        # gates (macOS) on the CPU: the fp32 parity bound (1e-4) is not what GPU / Neural Engine promise
        return {"compute_units": "cpu"}


def _versions(*pkgs):
    from .driver import tool_versions
    return tool_versions(*pkgs)
