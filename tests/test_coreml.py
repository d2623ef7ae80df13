"""Core ML export on the tiny run: multifunction packages per width and quantization, the stateful step,
structural validation recorded in the manifest, the validator catching broken packages, and the runner's
refusal off macOS. (Prediction needs macOS: here nothing executes a package, and the manifest says so.)"""

import os
import shutil
import sys

import numpy as np
import pytest

from fmrlrec_edge.checkpoint import load_run
from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.export import ExportRequest, export_run
from fmrlrec_edge.export.coreml import (PACKAGE, STATEFUL_PACKAGE, coreml_width, convert_step, expected_package,
                                        import_coremltools, validate_package)
from fmrlrec_edge.manifest import Manifest
from fmrlrec_edge.runtime import open_runner

OFF_MACOS = sys.platform != "darwin"


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def coreml_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "coreml"
    # the defaults (fp16, int8) at both widths with the stateful step; fp32 and int4 at one width for sizes
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="8,32", targets="coreml", options={"stateful": True}))
    export_run(ExportRequest(run_dir=tiny_run, out=out, dims="32", targets="coreml", quants=["fp32", "int4"]))
    return out


@pytest.fixture(scope="module")
def dw32(tiny_run):
    model, _ = load_run(tiny_run)
    return DeployableWidth(model, 32)


def package_bytes(entry, name=PACKAGE):
    return sum(f["bytes"] for f in entry["files"] if f"/{name}/" in f["path"])


def test_manifest_records_structure_and_not_run(coreml_export):
    man = Manifest.load(coreml_export)
    ids = sorted(a["id"] for a in man.artifacts)
    assert ids == sorted(["coreml-d8-fp16", "coreml-d8-int8", "coreml-d32-fp16", "coreml-d32-int8",
                          "coreml-d32-fp32", "coreml-d32-int4"])
    for a in man.artifacts:
        man.verify(a)                                          # sha256 of every file inside the packages
        names = {f["path"].split("/", 2)[2] for f in a["files"]}    # coreml/d8-fp16/<this>
        assert {f"{PACKAGE}/Manifest.json", f"{PACKAGE}/Data/com.apple.CoreML/model.mlmodel",
                f"{PACKAGE}/Data/com.apple.CoreML/weights/weight.bin"} <= names
        assert (STATEFUL_PACKAGE + "/Manifest.json" in names) == (a["quantization"] in ("fp16", "int8"))
        for f in a["files"]:                                   # readable like any file open() writes
            assert (coreml_export / f["path"]).stat().st_mode & 0o444 == 0o444 & ~umask()
        assert a["min_os"] == "iOS18" and a["extra"]["min_macos"] == "macOS15"
        s = a["checks"]["structure"][PACKAGE]
        assert s["spec_version"] == 9 and s["opset"] == "CoreML8" and s["shared_weights"] is True
        assert set(s["op_histogram"]) == {"prefill", "step"} and s["op_histogram"]["step"]["topk"] == 1
        assert s["io"]["prefill"]["inputs"]["item_ids"] == ["int32", [50], [[1, 50]]]
        assert s["io"]["step"]["outputs"]["next_state"] == ["float32", [2, 2, a["width"]]]
        assert s["weight_dtypes"]["step"] == {a["quantization"]: 1 + 5 * 2}  # item table + 5 linears x 2 layers
        assert 0 <= s["max_dequant_error_over_bound"] <= 1
        if OFF_MACOS:
            assert a["checks"]["parity"] == "not run (Core ML executes only on macOS)"
            assert a["checks"]["quality"] == "not run (Core ML executes only on macOS)"
            assert a["checks"]["gate"]["passed"] is None


def test_sizes_shrink_with_the_weights(coreml_export):
    man = Manifest.load(coreml_export)
    size = {a["quantization"]: package_bytes(a) for a in man.artifacts if a["width"] == 32}
    weights = {a["quantization"]: a["checks"]["structure"][PACKAGE]["sizes"]["weights_bytes"]
               for a in man.artifacts if a["width"] == 32}
    assert size["int4"] < size["int8"] < size["fp16"] < size["fp32"]
    # the weights file halves from fp32 to fp16 (give or take blob headers) and shrinks again at int8
    assert weights["fp16"] < 0.6 * weights["fp32"] and weights["int8"] < 0.8 * weights["fp16"]
    errs = {a["quantization"]: a["checks"]["structure"][PACKAGE]["max_dequant_abs_error"]
            for a in man.artifacts if a["width"] == 32}
    assert errs["fp32"] == 0.0 and 0 < errs["fp16"] < errs["int8"] < errs["int4"]


def test_stateful_step_package(coreml_export):
    a = Manifest.load(coreml_export).find(32, "coreml", "int8")
    s = a["checks"]["structure"][STATEFUL_PACKAGE]
    assert s["io"]["main"]["inputs"] == {"item_id": ["int32", [1]]}
    assert s["io"]["main"]["states"] == {"lru_state": ["float16", [2, 2, 32]]}
    assert set(s["io"]["main"]["outputs"]) == {"top_scores", "top_ids"}
    hist = s["op_histogram"]["main"]
    assert hist["read_state"] == 1 and hist["coreml_update_state"] == 1
    assert s["weight_dtypes"]["main"] == {"int8": 11}
    assert a["extra"]["stateful"]["package"] == STATEFUL_PACKAGE


# -- the validator on deliberately broken packages -------------------------------------------------------
def broken_copy(coreml_export, tmp_path, quant="fp16", width=32):
    src = coreml_export / "coreml" / f"d{width}-{quant}" / PACKAGE
    dst = tmp_path / PACKAGE
    shutil.copytree(src, dst)
    return dst


def edit_spec(path, edit):
    ct = import_coremltools()
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    edit(spec)
    (path / "Data/com.apple.CoreML/model.mlmodel").write_bytes(spec.SerializeToString())


def step_description(spec):
    return next(f for f in spec.description.functions if f.name == "step")


def test_validator_passes_the_real_package(coreml_export, dw32):
    facts = validate_package(coreml_export / "coreml/d32-int8" / PACKAGE, expected_package(dw32, "int8"))
    assert facts["weight_dtypes"]["prefill"] == {"int8": 11}


def test_validator_catches_renamed_output(coreml_export, dw32, tmp_path):
    pkg = broken_copy(coreml_export, tmp_path)

    def rename(spec):
        step_description(spec).output[2].name = "new_state"
    edit_spec(pkg, rename)
    with pytest.raises(UserError, match=r"step outputs are \['top_scores', 'top_ids', 'new_state'\], "
                                        r"expected \['top_scores', 'top_ids', 'next_state'\]"):
        validate_package(pkg, expected_package(dw32, "fp16"))


def test_validator_catches_wrong_shape_and_range(coreml_export, dw32, tmp_path):
    pkg = broken_copy(coreml_export, tmp_path)

    def reshape(spec):
        step_description(spec).input[1].type.multiArrayType.shape[2] = 16
        prefill = next(f for f in spec.description.functions if f.name == "prefill")
        prefill.input[0].type.multiArrayType.shapeRange.sizeRanges[0].upperBound = 10
    edit_spec(pkg, reshape)
    with pytest.raises(UserError) as err:
        validate_package(pkg, expected_package(dw32, "fp16"))
    msg = str(err.value)
    assert "\n" not in msg
    assert "step hidden_state is float32[2, 2, 16], expected float32[2, 2, 32]" in msg
    assert "prefill item_ids shape range is [(1, 10)], expected [(1, 50)]" in msg


def test_validator_catches_wrong_width_and_quantization(coreml_export, tiny_run, dw32):
    model, _ = load_run(tiny_run)
    d8 = coreml_export / "coreml/d8-int8" / PACKAGE
    with pytest.raises(UserError, match=r"expected float32\[2, 2, 32\]"):
        validate_package(d8, expected_package(dw32, "int8"))
    with pytest.raises(UserError, match="stored as int8, expected fp16"):
        validate_package(d8, expected_package(DeployableWidth(model, 8), "fp16"))


def test_validator_catches_corrupted_weights(coreml_export, dw32, tmp_path):
    """Change a few int8 codes of the item table inside weight.bin: the package still loads, and only the
    comparison of dequantized weights with PyTorch can tell."""
    import struct
    pkg = broken_copy(coreml_export, tmp_path, quant="int8")
    ct = import_coremltools()
    spec = ct.models.MLModel(str(pkg), skip_model_load=True).get_spec()
    ops = spec.mlProgram.functions["step"].block_specializations["CoreML8"].operations
    table = next(op for op in ops if op.outputs[0].name.startswith("dw_items_weight"))
    assert table.type == "constexpr_blockwise_shift_scale"     # int8 codes and scales held inline
    blob = pkg / "Data/com.apple.CoreML/weights/weight.bin"
    data = bytearray(blob.read_bytes())
    # a blob starts with a 64-byte header: sentinel u32, dtype u32, size u64, data offset u64, ...
    where = table.inputs["data"].arguments[0].value.blobFileValue.offset
    _, _, size, start = struct.unpack_from("<IIQQ", data, where)
    for i in range(start, start + size, size // 7):
        data[i] ^= 0x40                                  # an int8 code moves by 64 steps of its scale
    blob.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"dw_items_weight\[.*dequantizes to .* > int8 bound"):
        validate_package(pkg, expected_package(dw32, "int8"))


def test_validator_catches_a_duplicated_item_table(tiny_run, tmp_path):
    """Scoring against a slice of the table (`x @ E[1:]^T`) makes the converter store a second copy;
    `ItemTable.score` avoids it, and the validator notices if it comes back."""
    import copy

    from fmrlrec_edge.deploy import ItemTable

    class SlicedScore(ItemTable):
        def score(self, x):
            return x @ self.weight[1:].T

    ct = import_coremltools()
    model, _ = load_run(tiny_run)
    dw = DeployableWidth(model, 8)
    dup = copy.deepcopy(dw)
    dup.items = SlicedScore(dw.items.weight)
    path = tmp_path / "dup.mlpackage"
    convert_step(ct, dup.eval(), "fp32").save(str(path))             # sliced table: duplicated
    exp = expected_package(dw, "fp32")
    exp["functions"] = {"main": exp["functions"]["step"]}
    with pytest.raises(UserError, match="item table is stored 2 times"):
        validate_package(path, exp)
    good = tmp_path / "good.mlpackage"
    convert_step(ct, coreml_width(dw), "fp32").save(str(good))
    assert validate_package(good, exp)["max_dequant_abs_error"] == 0.0


# -- the runner ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not OFF_MACOS, reason="on macOS the runner executes the package")
def test_runner_refuses_off_macos_in_one_line(coreml_export):
    with pytest.raises(UserError) as err:
        open_runner(coreml_export, 8, "coreml", "fp16")
    msg = str(err.value)
    assert msg.startswith("Core ML executes only on macOS (this host is ")
    assert "validated structurally at export" in msg and "--target onnx/executorch/litert" in msg
    assert "\n" not in msg


@pytest.mark.skipif(OFF_MACOS, reason="Core ML predicts only on macOS")
def test_runner_matches_eager_on_macos(coreml_export, dw32):
    import torch
    r = open_runner(coreml_export, 32, "coreml", "fp32")
    hist = np.array([3, 6, 9, 12, 15], dtype=np.int64)
    full = r.prefill(hist)
    inc = r.step(hist[-1], r.prefill(hist[:-1]).state)
    ref = dw32.prefill(torch.from_numpy(hist))
    np.testing.assert_allclose(full.top_scores, ref[0].detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(full.top_scores, inc.top_scores, atol=1e-4)
    assert 0 not in full.top_ids
