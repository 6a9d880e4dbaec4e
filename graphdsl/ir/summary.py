"""What `graphdsl compile` shows: a table per model, JSON, and a Graphviz picture."""

from __future__ import annotations

from typing import Any

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import TensorType, numel


def _type_json(t: TensorType) -> dict[str, Any]:
    return {"dtype": t.dtype, "shape": [d if isinstance(d, int) else str(d)
                                        for d in (t.shape or ())],
            "masked": t.mask is not None}


def model_json(m: ModelGraph) -> dict[str, Any]:
    return {
        "name": m.name,
        "parameters": m.parameter_count,
        "trainable_parameters": m.trainable_count,
        "inputs": [{"name": m.node(n)["name"], **_type_json(m.node(n)["type"])}
                   for n in m.inputs],
        "targets": [{"name": m.node(n)["name"], **_type_json(m.node(n)["type"])}
                    for n in m.targets],
        "outputs": [{"name": m.node(n)["name"], "inference": m.node(n)["inference"],
                     **_type_json(m.node(n)["type"])} for n in m.outputs],
        "losses": [{"name": m.node(n)["name"], "weight": m.node(n)["weight"]}
                   for n in m.losses],
        "metrics": [m.node(n)["name"] for n in m.metrics],
        "ties": [{"parameter": p, "used_by": users} for p, users in m.ties().items()],
        "layers": len(m.layers),
        # The rows of `graphdsl compile`'s table, as printed (layer, op, output, ...).
        "rows": layer_rows(m),
        "hash": m.graph_hash(),
    }


def layer_rows(m: ModelGraph) -> list[dict[str, Any]]:
    ties = m.ties()
    tied_params = set(ties)
    tied_layers = {user for users in ties.values() for user in users}
    rows = []
    for path, record in m.layers.items():
        params = [m.node(n) for n in record.params.values() if m.node(n)["kind"] == "param"]
        own = [p for p in params if p["owner"] == path and p["role"] == "weight"]
        count = sum(numel(p["type"].shape) or 0 for p in own)
        out_types = m.node(record.calls[0])["types"] if record.calls else ()
        flags = []
        if path in tied_layers:
            flags.append("tied")
        if record.shared:
            flags.append(f"shared x{len(record.calls)}")
        if own and not any(p["trainable"] for p in own):
            flags.append("frozen")
        if any(p["constraint"] is not None or p["kernel_mask"] is not None for p in own):
            flags.append("constrained")
        rows.append({"layer": path, "op": record.op,
                     "output": str(out_types[0]) if out_types else "-",
                     "parameters": count, "flags": flags})
    for n in m.params:
        p = m.node(n)
        if p["owner"] is None:
            flags = ["frozen"] if not p["trainable"] else []
            if p["constraint"] is not None:
                flags.append("constrained")
            if p["name"] in tied_params:
                flags.append("tied")
            rows.append({"layer": p["name"], "op": "param", "output": str(p["type"]),
                         "parameters": numel(p["type"].shape) or 0, "flags": flags})
    return rows


SUMMARY_ROWS = 60


def print_model(m: ModelGraph, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"model {m.name}", title_justify="left")
    for col in ("layer", "op", "output", "parameters", "flags"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    rows = layer_rows(m)
    # A long table is summarised: its head and tail, and how many rows lie between
    # (printing thousands of rows cost more than checking the program). --json has all.
    if len(rows) > SUMMARY_ROWS:
        head, tail = SUMMARY_ROWS * 2 // 3, SUMMARY_ROWS // 3
        hidden = rows[head:len(rows) - tail]
        params = sum(r["parameters"] for r in hidden)
        rows = [*rows[:head], {"layer": f"... {len(hidden):,} more layers", "op": "",
                               "output": "(`--json` lists every row)", "parameters": params,
                               "flags": []}, *rows[len(rows) - tail:]]
    for row in rows:
        table.add_row(row["layer"], row["op"], row["output"], f"{row['parameters']:,}",
                      ", ".join(row["flags"]))
    console.print(table)
    ins = ", ".join(f"{m.node(n)['name']}: {m.node(n)['type']}" for n in m.inputs)
    outs = ", ".join(f"{m.node(n)['name']}: {m.node(n)['type']}" for n in m.outputs)
    console.print(f"  inputs:  {ins or '-'}")
    console.print(f"  outputs: {outs or '-'}")
    if m.losses:
        terms = " + ".join(f"{m.node(n)['weight']:g} * {m.node(n)['name']}" for n in m.losses)
        console.print(f"  loss:    {terms}")
    ties = m.ties()
    for p, users in ties.items():
        console.print(f"  tie:     {p} used by {', '.join(users)}")
    frozen = m.parameter_count - m.trainable_count
    console.print(f"  parameters: {m.parameter_count:,} ({m.trainable_count:,} trainable"
                  + (f", {frozen:,} frozen" if frozen else "") + "; tied tensors counted once)")


def to_dot(m: ModelGraph, expand: bool = False) -> str:
    """The Graphviz picture (graphdsl/ir/picture.py)."""
    from graphdsl.ir.picture import to_dot as draw

    return draw(m, expand)
