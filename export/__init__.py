"""Exporters: one module per target behind the small `Exporter` interface, registered by name.

Adding a target = one module here (an `Exporter` subclass with `@register("name")`) plus its runner in
`fmrlrec_edge.runtime`; `export_run` drives slicing, staging, gates and the manifest for all of them.
"""

from .base import EXPORTER_MODULES, Exporter, get_exporter, register
from .driver import ExportRequest, export_run

__all__ = ["Exporter", "register", "get_exporter", "EXPORTER_MODULES", "ExportRequest", "export_run"]
