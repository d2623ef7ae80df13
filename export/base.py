"""The exporter interface. Each target module subclasses `Exporter` and registers itself by name."""

from __future__ import annotations

import importlib
from pathlib import Path

from fmrlrec_edge.deploy import DeployableWidth
from fmrlrec_edge.errors import UserError
from fmrlrec_edge.manifest import TARGETS

# target name -> module that registers its exporter (imported on first use, so a missing optional
# toolchain only matters when that target is asked for)
EXPORTER_MODULES = {t: f"fmrlrec_edge.export.{t}" for t in TARGETS}
_REGISTRY: dict[str, type["Exporter"]] = {}


def register(name: str):
    def deco(cls):
        cls.target = name
        _REGISTRY[name] = cls
        return cls
    return deco


def get_exporter(target: str) -> "Exporter":
    if target not in EXPORTER_MODULES:
        raise UserError(f"unknown target {target!r}; choose one of: {', '.join(EXPORTER_MODULES)}, all")
    if target not in _REGISTRY:
        try:
            importlib.import_module(EXPORTER_MODULES[target])
        except ImportError as exc:
            raise UserError(f"target {target} needs a package that is not installed ({exc}); "
                            "run `make install`") from None
    return _REGISTRY[target]()


class Exporter:
    target = "?"
    quantizations: tuple[str, ...] = ("fp32",)   # every --quant this target accepts
    default_quants: tuple[str, ...] = ("fp32",)  # what is exported when --quant is not given
    prefill_mode = "dynamic"                     # or "padded" (item_ids[max_len] + length[1])
    runs_here = True                             # False: gates cannot execute on this host (Core ML off macOS)

    def check_quant(self, quant: str) -> None:
        if quant not in self.quantizations:
            raise UserError(f"target {self.target} has no quantization {quant!r}; "
                            f"choose one of: {', '.join(self.quantizations)}")

    def export(self, dw: DeployableWidth, quant: str, out_dir: Path, options: dict) -> dict:
        """Write the artifact's files into `out_dir` (a staging folder). Return extra manifest fields:
        {"tool_versions": {...}, "min_os": ..., "runtime_memory": {...}, "extra": {...}}."""
        raise NotImplementedError

    def validate(self, dw: DeployableWidth, quant: str, out_dir: Path, entry: dict) -> dict:
        """Checks that do not need the runtime to execute (structure). Returns a dict for `checks`."""
        return {}

    def runner_options(self, options: dict) -> dict:
        return {}
