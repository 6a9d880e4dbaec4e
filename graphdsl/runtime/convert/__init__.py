"""Weights from other tools (`graphdsl convert`): read a foreign checkpoint, apply a weight
map (graphdsl/maps/*.map, or a file of the user's), return the model's canonical arrays.
Framework-free: numpy and safetensors; PyTorch or h5py only to read their own files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphdsl.diagnostics import Diagnostic, DiagnosticSink, SourceMap, suggestion_help
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.checkpoint import CheckpointError
from graphdsl.runtime.convert.engine import convert_arrays
from graphdsl.runtime.convert.foreign import read_foreign
from graphdsl.runtime.convert.mapfile import WeightMap, parse_map

MAPS = Path(__file__).resolve().parents[2] / "maps"


def shipped_maps() -> list[str]:
    return sorted(p.stem for p in MAPS.glob("*.map"))


def find_map(name_or_path: str) -> str:
    """A map file's path: the path itself, or the shipped map of that name (`hf_gpt2`)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    shipped = MAPS / f"{name_or_path}.map"
    if shipped.is_file():
        return str(shipped)
    raise CheckpointError([Diagnostic(
        "error", "weight-map", f"no map file or shipped map named `{name_or_path}`",
        help=suggestion_help(name_or_path, shipped_maps()) or
        "shipped maps: " + ", ".join(shipped_maps()))])


def load_map(name_or_path: str, sources: SourceMap) -> WeightMap:
    """The parsed map; its text goes into ``sources`` so diagnostics can quote it."""
    path = find_map(name_or_path)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    sources.add(path, text)
    sink = DiagnosticSink()
    wmap = parse_map(text, path, sink)
    if sink.has_errors:
        raise CheckpointError(sink.sorted())
    return wmap


def convert_file(model: ModelGraph, foreign_path: str, map_name_or_path: str,
                 sources: SourceMap | None = None) -> dict[str, np.ndarray]:
    """The canonical checkpoint arrays of ``model`` from another tool's file."""
    wmap = load_map(map_name_or_path, sources if sources is not None else SourceMap())
    foreign = read_foreign(foreign_path)
    return convert_arrays(foreign, wmap, model, f"`{os.path.basename(foreign_path)}`")


__all__ = ["convert_arrays", "convert_file", "find_map", "load_map", "read_foreign",
           "shipped_maps"]
