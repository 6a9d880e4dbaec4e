"""A checked model graph -> a native ``torch.nn.Module``.

Parameters live in submodules whose paths mirror the DSL names, so ``state_dict()`` keys
read like the program (``gpt2_block.3.dense.kernel``). A tied tensor is one Parameter;
its other uses read it (transposed uses are views made at use time). The forward pass
is generated Python source, straight-line over the graph in topological order, so it
costs what a hand-written module costs and ``torch.compile(fullgraph=True)`` traces it
without graph breaks. The source is kept (``module.generated_source``) and registered
in ``linecache`` so tracebacks show it.
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from graphdsl.ir import ModelGraph
from graphdsl.ops import REGISTRY
from graphdsl.ops.specs import Spec
from graphdsl.weights import initial_values

from .constraints import Reparametrization, project_
from .ops import load_all

_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                 "float64": torch.float64, "int8": torch.int8, "int16": torch.int16,
                 "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
                 "bool": torch.bool}
_counter = itertools.count()


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


class LossResult(NamedTuple):
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # weighted: they add up to total
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]]  # (sum over valid samples, count)
    outputs: dict[str, torch.Tensor]


class Container(nn.Module):
    """A node of the parameter tree: holds a layer's parameters or deeper containers."""


class GraphModule(nn.Module):
    """Base of every generated module. ``forward(**inputs)`` returns the named outputs."""

    generated_source: str = ""
    input_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def __init__(self, model: ModelGraph, values: Mapping[str, np.ndarray] | None = None,
                 seed: int = 0, program_models: Mapping[str, ModelGraph] | None = None):
        super().__init__()
        self.ir = model
        self.program_models = program_models
        arrays = dict(values) if values is not None else initial_values(model, seed)
        self._constrained: list[tuple[nn.Module, str, Spec]] = []
        self._canonical: dict[str, tuple[nn.Module, str]] = {}
        for node in model.params:
            self._add_tensor(model.node(node), arrays)
        for node in model.ops():
            data = model.node(node)
            if data["op"] == "constant":
                value = torch.tensor(data["args"]["value"],
                                     dtype=torch_dtype(data["args"]["dtype"]))
                self.register_buffer(_const_name(node), value, persistent=False)

    # ---- building
    def _container(self, path: list[str]) -> nn.Module:
        module: nn.Module = self
        for segment in path:
            child = module._modules.get(segment)
            if child is None:
                if hasattr(module, segment):
                    raise ValueError(f"the name `{segment}` clashes with an attribute of "
                                     "torch.nn.Module; rename that layer")
                child = Container()
                module.add_module(segment, child)
            module = child
        return module

    def _add_tensor(self, data: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        name = data["name"]
        *path, leaf = name.split(".")
        owner = self._container(path)
        if name not in arrays:
            raise KeyError(f"no value for `{name}`")
        tensor = torch.from_numpy(np.array(arrays[name], copy=True))
        if data["role"] == "state":
            owner.register_buffer(leaf, tensor)
        else:
            owner.register_parameter(leaf, nn.Parameter(tensor,
                                                        requires_grad=data["trainable"]))
        if data["kernel_mask"] is not None:
            owner.register_buffer(f"{leaf}_mask", torch.tensor(data["kernel_mask"],
                                                               dtype=tensor.dtype))
            self._canonical[f"{name}_mask"] = (owner, f"{leaf}_mask")
        constraint = data["constraint"]
        if constraint is not None:
            if constraint.get("mode") == "reparam":
                parametrize.register_parametrization(owner, leaf,
                                                     Reparametrization(constraint),
                                                     unsafe=True)
            else:
                self._constrained.append((owner, leaf, constraint))
        self._canonical[name] = (owner, leaf)

    # ---- the canonical view, for checkpoints
    def canonical_tensors(self) -> dict[str, torch.Tensor]:
        """Canonical name -> the stored tensor (unconstrained for re-parameterisations)."""
        out = {}
        for name, (owner, leaf) in self._canonical.items():
            if parametrize.is_parametrized(owner, leaf):
                out[name] = owner.parametrizations[leaf].original  # type: ignore[index]
            elif leaf in owner._parameters:
                out[name] = owner._parameters[leaf]  # type: ignore[assignment]
            else:
                out[name] = owner._buffers[leaf]  # type: ignore[assignment]
        return out

    def export_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().to("cpu").float().numpy() if v.dtype == torch.bfloat16 else
                v.detach().to("cpu").numpy() for k, v in self.canonical_tensors().items()}

    @torch.no_grad()
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        targets = self.canonical_tensors()
        for name, value in arrays.items():
            target = targets[name]
            target.copy_(torch.from_numpy(np.asarray(value)).to(target.dtype))

    def submodel(self, path: str) -> GraphModule:
        """A model used as a layer at ``path``, as a module of its own that shares this
        module's parameters (training either trains both)."""
        if path not in self.ir.submodels or self.program_models is None:
            raise KeyError(f"`{path}` is not a model used as a layer in `{self.ir.name}`; "
                           f"those are: {', '.join(self.ir.submodels) or 'none'}")
        child = build_module(self.program_models[self.ir.submodels[path]],
                             program_models=self.program_models)
        mine = self.canonical_tensors()
        for name, (owner, leaf) in child._canonical.items():
            shared = mine[f"{path}.{name}"]
            if isinstance(shared, nn.Parameter):
                owner.register_parameter(leaf, shared)
            else:
                owner.register_buffer(leaf, shared)
        return child

    @torch.no_grad()
    def project_constraints(self) -> None:
        """Apply every `mode = "project"` constraint; call after each optimizer step."""
        for owner, leaf, spec in self._constrained:
            project_(getattr(owner, leaf), spec)

    # ---- running
    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if args:
            inputs = {**dict(zip(self.input_names, args, strict=False)), **inputs}
        return self._run_forward(inputs)  # type: ignore[attr-defined, no-any-return]

    def compute_losses(self, inputs: Mapping[str, torch.Tensor],
                       targets: Mapping[str, torch.Tensor]) -> LossResult:
        """The total loss, each weighted term, each metric, and the outputs, in one pass."""
        outputs, terms, metrics = self._run_losses(inputs, targets)  # type: ignore[attr-defined]
        total = sum(terms.values()) if terms else torch.zeros(())
        return LossResult(total, terms, metrics, outputs)  # type: ignore[arg-type]


def _const_name(node: str) -> str:
    return "_const_" + "".join(ch if ch.isalnum() else "_" for ch in node)


def _attr_chain(base: str, dotted: str) -> str:
    expr = base
    for segment in dotted.split("."):
        if segment.isidentifier() and not keyword.iskeyword(segment):
            expr += f".{segment}"
        else:
            expr = f"getattr({expr}, {segment!r})"
    return expr


def _literal(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (int, str, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_literal(v) for v in value)
    return False


class _Codegen:
    """Writes the generated methods: one line per node, in topological order."""

    def __init__(self, model: ModelGraph):
        self.model = model
        self.impls = load_all()
        self.globals: dict[str, Any] = {"torch": torch}
        self.names: dict[str, str] = {}

    def const(self, value: Any) -> str:
        if _literal(value):
            return repr(value)
        name = f"_k{len(self.globals)}"
        self.globals[name] = value
        return name

    def needed(self, sinks: list[str]) -> set[str]:
        import networkx as nx

        keep = set(sinks)
        for s in sinks:
            keep |= nx.ancestors(self.model.graph, s)
        return keep

    def body(self, keep: set[str]) -> list[str]:
        m = self.model
        lines: list[str] = []
        for node in m.inputs:
            if node in keep:
                var = self.var(node)
                lines.append(f"{var} = inputs[{m.node(node)['name']!r}]")
        for node in m.targets:
            if node in keep:
                lines.append(f"{self.var(node)} = targets[{m.node(node)['name']!r}]")
        for node in m.params:
            if node not in keep:
                continue
            data = m.node(node)
            access = _attr_chain("self", data["name"])
            if data["kernel_mask"] is not None:
                access = f"{access} * {_attr_chain('self', data['name'] + '_mask')}"
            lines.append(f"{self.var(node)} = {access}")
        for node in m.ops():
            if node not in keep:
                continue
            lines.append(f"{self.var(node)} = {self.op_call(node)}")
        return lines

    def var(self, node: str) -> str:
        if node not in self.names:
            kind = self.model.node(node)["kind"]
            self.names[node] = f"{kind[0]}{len(self.names)}"
        return self.names[node]

    def ref(self, src: str, index: int) -> str:
        data = self.model.node(src)
        if data["kind"] == "op" and len(data["types"]) > 1:
            return f"{self.var(src)}[{index}]"
        return self.var(src)

    def op_call(self, node: str) -> str:
        m = self.model
        data = m.node(node)
        op = REGISTRY[data["op"]]
        if op.name == "constant":
            return f"self.{_const_name(node)}"
        fn = f"_op_{op.name}"
        self.globals[fn] = self.impls[op.name]
        ports: dict[str, list[tuple[int, str]]] = {}
        for src, edge in m.in_edges(node):
            ports.setdefault(edge["port"], []).append((edge.get("position", 0),
                                                       self.ref(src, edge.get("index", 0))))
        parts = []
        variadic = {i.name for i in op.inputs if i.variadic}
        for port, refs in ports.items():
            if port in variadic:
                parts.append(f"{port}=[{', '.join(r for _, r in sorted(refs))}]")
            else:
                parts.append(f"{port}={refs[0][1]}")
        for slot in op.inputs:
            if slot.name not in ports:
                parts.append(f"{slot.name}={'[]' if slot.variadic else 'None'}")
        for spec in op.params:
            if spec.name not in ports:
                parts.append(f"{spec.name}=None")
        for key, value in data["args"].items():
            parts.append(f"{key}={self.const(value.name if isinstance(value, Spec) and value.kind == 'activation' else value)}")
        if op.random:
            parts.append("training=self.training")
        return f"{fn}({', '.join(parts)})"

    def source(self, class_name: str) -> str:
        m = self.model
        outputs = {m.node(n)["name"]: n for n in m.outputs}
        fwd_keep = self.needed(list(outputs.values()))
        lines = ["def _run_forward(self, inputs):"]
        lines += ["    " + line for line in self.body(fwd_keep)]
        lines.append("    return {" + ", ".join(
            f"{name!r}: {self.ref(*self.source_of(n))}" for name, n in outputs.items()) + "}")
        loss_keep = self.needed(list(outputs.values()) + m.losses + m.metrics)
        lines.append("")
        lines.append("def _run_losses(self, inputs, targets):")
        lines += ["    " + line for line in self.body(loss_keep)]
        lines.append("    outputs = {" + ", ".join(
            f"{name!r}: {self.ref(*self.source_of(n))}" for name, n in outputs.items()) + "}")
        terms = []
        for n in m.losses:
            d = m.node(n)
            src = self.ref(*self.source_of(n))
            weight = d["weight"]
            terms.append(f"{d['name']!r}: {src}" if weight == 1.0 else
                         f"{d['name']!r}: {self.const(weight)} * {src}")
        lines.append("    terms = {" + ", ".join(terms) + "}")
        metrics = [f"{m.node(n)['name']!r}: {self.ref(*self.source_of(n))}" for n in m.metrics]
        lines.append("    metrics = {" + ", ".join(metrics) + "}")
        lines.append("    return outputs, terms, metrics")
        return "\n".join(lines) + "\n"

    def source_of(self, node: str) -> tuple[str, int]:
        (src, edge), = self.model.in_edges(node)
        return src, edge.get("index", 0)


def module_class(model: ModelGraph) -> type[GraphModule]:
    """A GraphModule subclass with this model's generated forward and loss methods."""
    gen = _Codegen(model)
    class_name = "".join(ch for ch in model.name if ch.isalnum()) + "Module"
    source = gen.source(class_name)
    filename = f"<graphdsl:{model.name}:{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = dict(gen.globals)
    exec(compile(source, filename, "exec"), namespace)  # generated from the checked graph
    attrs = {
        "_run_forward": namespace["_run_forward"],
        "_run_losses": namespace["_run_losses"],
        "generated_source": source,
        "input_names": tuple(model.node(n)["name"] for n in model.inputs),
        "target_names": tuple(model.node(n)["name"] for n in model.targets),
        "output_names": tuple(model.node(n)["name"] for n in model.outputs),
        "__module__": __name__,
    }
    return type(class_name, (GraphModule,), attrs)


def build_module(model: ModelGraph, values: Mapping[str, np.ndarray] | None = None,
                 seed: int = 0,
                 program_models: Mapping[str, ModelGraph] | None = None) -> GraphModule:
    return module_class(model)(model, values, seed, program_models)
