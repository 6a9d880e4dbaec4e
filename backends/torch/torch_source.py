"""`graphdsl export --format torch-source`: a folder with a readable ``model.py`` and the
weights, ``model.safetensors``, that needs only torch and safetensors.

Layers with a direct ``torch.nn`` counterpart become one (``nn.Linear``, ``nn.Embedding``,
``nn.LayerNorm``, ``nn.Dropout``) when the counterpart computes exactly what the op does;
every other op calls a copy of graphdsl's own PyTorch implementation, placed above the
model class (backends/source_copy.py). Each line of ``forward`` carries the output type
as a comment. A tie is one Parameter read in two places (`F.linear(h, self.wte.weight)`).
Constrained and masked parameters are stored as the values the model uses (after the
re-parameterisation, times the mask): the export computes the same outputs, and trains
without the constraint.
"""

from __future__ import annotations

import keyword
import os
from collections.abc import Mapping

import numpy as np
import torch

from graphdsl.compiler import Program
from graphdsl.ir.codegen import Codegen, const_name
from graphdsl.ir.graph import ModelGraph

from ..source_copy import copy_functions
from .module import build_module
from .ops import load_all
from .ops.core import activate


def _access(base: str, dotted: str) -> str:
    expr = base
    for segment in dotted.split("."):
        if segment.isidentifier() and not keyword.iskeyword(segment):
            expr += f".{segment}"
        else:
            expr += f"[{segment!r}]"
    return expr


class _Native:
    """How one layer becomes a torch.nn module: its constructor, the state-dict entries
    of its parameters (name -> (key, transposed)), and its call."""

    def __init__(self, ctor: str, params: dict[str, tuple[str, bool]],
                 call: str, comment: str = ""):
        self.ctor, self.params, self.call, self.comment = ctor, params, call, comment


def _native(model: ModelGraph, path: str) -> _Native | None:
    record = model.layers[path]
    if not record.calls:
        return None
    a = model.node(record.calls[0])["args"]  # checked values (the record keeps text)
    own = {}
    for name, node in record.params.items():
        data = model.node(node)
        if data["kind"] != "param" or data["owner"] != path:
            return None  # a tied parameter comes in from elsewhere: keep the function
        own[name] = data
    first = record.calls[0] if record.calls else None
    in_type = None
    if first is not None:
        for src, edge in model.in_edges(first):
            if edge["port"] in ("x", "ids"):
                src_data = model.node(src)
                in_type = src_data.get("type") or src_data["types"][edge.get("index", 0)]
    width = in_type.shape[-1] if in_type is not None and in_type.shape else None
    if record.op == "Dense" and isinstance(width, int):
        activation = getattr(a.get("activation"), "name", a.get("activation")) or "linear"
        call = "self.{m}({x})" if activation == "linear" else \
            f"activate(self.{{m}}({{x}}), {activation!r})"
        params = {"kernel": ("weight", True)}
        if a.get("use_bias", True):
            params["bias"] = ("bias", False)
        return _Native(f"nn.Linear({width}, {a['units']}, bias={bool(a.get('use_bias', True))})",
                       params, call)
    if record.op == "Embedding":
        return _Native(f"nn.Embedding({a['input_dim']}, {a['output_dim']})",
                       {"embeddings": ("weight", False)}, "self.{m}({x}.long())")
    if record.op == "LayerNormalization" and isinstance(width, int) and \
            a.get("axis", -1) in (-1,) and a.get("center", True) and a.get("scale", True):
        return _Native(f"nn.LayerNorm({width}, eps={a.get('epsilon', 1e-3)!r})",
                       {"gamma": ("weight", False), "beta": ("bias", False)}, "self.{m}({x})")
    if record.op == "Dropout":
        return _Native(f"nn.Dropout({a['rate']!r})", {}, "self.{m}({x})")
    return None


# Ops that are exactly a Python operator on tensors (same broadcasting and dtypes).
_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "matmul": "@"}


class _SourceCodegen(Codegen):
    """The generated forward, written for people: inputs by name, torch.nn layers called
    as modules, one output type comment per line."""

    def __init__(self, model: ModelGraph, natives: dict[str, _Native],
                 param_expr: dict[str, str]):
        super().__init__(model, load_all(), lambda d: param_expr[d["name"]],
                         constant_access=lambda n: f"self.{const_name(n)}",
                         training="self.training")
        self.natives = natives

    def var(self, node: str) -> str:
        data = self.model.node(node)
        if data["kind"] == "input" and data["name"].isidentifier() and \
                not keyword.iskeyword(data["name"]):
            return str(data["name"])
        if data["kind"] == "param":  # read where used: `self.wte.weight.T`
            return str(self.param_access(data))
        return super().var(node)

    def body(self, keep: set[str]) -> list[str]:
        m = self.model
        lines = []
        for node in m.ops():
            if node in keep:
                data = m.node(node)
                types = data["types"]
                comment = ", ".join(str(t) for t in types)
                where = f"{data['layer']}: " if data["layer"] else ""
                lines.append(f"{self.var(node)} = {self.op_call(node)}  # {where}{comment}")
        return lines

    def op_call(self, node: str) -> str:
        data = self.model.node(node)
        native = self.natives.get(data["layer"]) if data["layer"] else None
        if data["op"] in _OPERATORS and not data["args"]:
            refs = {e["port"]: self.ref(src, e.get("index", 0))
                    for src, e in self.model.in_edges(node)}
            return f"{refs['x']} {_OPERATORS[data['op']]} {refs['y']}"
        if native is None:
            return super().op_call(node)
        x = next(self.ref(src, e.get("index", 0)) for src, e in self.model.in_edges(node)
                 if e["port"] in ("x", "ids"))
        return native.call.format(m=_access("", data["layer"])[1:], x=x)


def write_source(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                 out: str) -> None:
    graph_module = build_module(model, weights, program_models=program.models)
    natives = {path: n for path in model.layers if (n := _native(model, path)) is not None}
    state: dict[str, torch.Tensor] = {}
    param_expr: dict[str, str] = {}
    init_lines: list[str] = []
    containers: set[str] = set()

    def container(path: str) -> None:
        parts = path.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in containers:
                containers.add(prefix)
                init_lines.append(f"{_access('self', prefix)} = nn.ModuleDict()")

    generic_owner: dict[str, list[str]] = {}
    for node in model.params:
        data = model.node(node)
        name = data["name"]
        owner, leaf = graph_module._canonical[name]
        value = getattr(owner, leaf).detach()
        if data["kernel_mask"] is not None:
            value = value * getattr(owner, f"{leaf}_mask")
        path, _, leaf = name.rpartition(".")
        native = natives.get(data["owner"] or "")
        if native is not None and leaf in native.params:
            key, transposed = native.params[leaf]
            state[f"{path}.{key}"] = (value.T if transposed else value).contiguous()
            param_expr[name] = _access("self", f"{path}.{key}") + (".T" if transposed else "")
        else:
            state[name] = value.contiguous()
            param_expr[name] = _access("self", name)
            generic_owner.setdefault(path, []).append(node)
    order = list(dict.fromkeys([*model.layers, *generic_owner]))
    for path in order:
        if path in natives:
            container(path)
            init_lines.append(f"{_access('self', path)} = {natives[path].ctor}")
            continue
        if path not in generic_owner:
            continue
        nodes = generic_owner[path]
        target = "self"
        if path and any(p.startswith(path + ".") for p in model.layers):
            container(path + ".")  # `param` statements beside layers: in their ModuleDict
            target = _access("self", path)
        elif path:
            container(path)
            containers.add(path)
            init_lines.append(f"{_access('self', path)} = Parameters()  # "
                              f"{model.layers[path].op if path in model.layers else 'param'}")
            target = _access("self", path)
        for node in nodes:
            data = model.node(node)
            leaf = data["name"].rpartition(".")[2]
            shape = [int(d) for d in data["type"].shape]
            dtype = "float32" if data["type"].dtype == "bfloat16" else data["type"].dtype
            if data["role"] == "state":
                init_lines.append(f"{target}.register_buffer({leaf!r}, torch.zeros({shape}, "
                                  f"dtype=torch.{dtype}))")
            else:
                init_lines.append(f"{target}.register_parameter({leaf!r}, nn.Parameter("
                                  f"torch.zeros({shape}, dtype=torch.{dtype}), "
                                  f"requires_grad={bool(data['trainable'])}))")
    consts = []
    for node in model.ops():
        data = model.node(node)
        if data["op"] == "constant":
            consts.append(f"self.register_buffer({const_name(node)!r}, torch.tensor("
                          f"{np.asarray(data['args']['value']).tolist()!r}, "
                          f"dtype=torch.{data['args']['dtype']}), persistent=False)")
    codegen = _SourceCodegen(model, natives, param_expr)
    outputs = {model.node(n)["name"]: n for n in model.outputs}
    body = codegen.body(codegen.needed(list(outputs.values())))
    returned = ", ".join(f"{name!r}: {codegen.ref(*codegen.source_of(n))}"
                         for name, n in outputs.items())
    used_ops = sorted({name[len("_op_"):] for name in codegen.globals if name.startswith("_op_")})
    impls = load_all()
    functions = [(f"_op_{op}", impls[op]) for op in used_ops]
    if any("activate(" in n.call for n in natives.values()):
        functions.append(("activate", activate))
    imports, functions_source = copy_functions(functions)
    constants = [f"{k} = {v!r}" for k, v in codegen.globals.items() if not k.startswith("_op_")]
    text = _render(program, model, imports, functions_source, constants, init_lines + consts,
                   codegen, body, returned)
    os.makedirs(out, exist_ok=True)
    from safetensors.torch import save_file

    save_file(state, os.path.join(out, "model.safetensors"),
              metadata={"format": "graphdsl-torch-source/1", "model": model.name})
    with open(os.path.join(out, "model.py"), "w", encoding="utf-8") as fh:
        fh.write(text)


def _render(program: Program, model: ModelGraph, imports: list[str], functions: str,
            constants: list[str], init_lines: list[str], codegen: _SourceCodegen,
            body: list[str], returned: str) -> str:
    class_name = "".join(ch for ch in model.name if ch.isalnum()) or "Model"
    ins = [model.node(n) for n in model.inputs]
    outs = [model.node(n) for n in model.outputs]
    signature = ", ".join(codegen.var(n) for n in model.inputs)
    doc_ins = "\n".join(f"    {d['name']}: {d['type']}" for d in ins)
    doc_outs = "\n".join(f"    {d['name']}: {d['type']}" for d in outs)
    head = [f'"""`{model.name}`, exported by graphdsl from {os.path.basename(program.file)}.',
            "",
            "Plain PyTorch: needs only torch and safetensors. `load()` returns the module with",
            "the weights in model.safetensors beside this file; call it as `m(**inputs)`, which",
            "returns a dict of outputs.",
            "",
            "Inputs:", doc_ins, "Outputs:", doc_outs, '"""', "",
            "from __future__ import annotations", "", "import os", ""]
    std = sorted(i for i in imports if i.split()[1].split(".")[0] not in ("torch",))
    framework = sorted(i for i in imports if i.split()[1].split(".")[0] == "torch")
    head += std + ["", "import torch"] + [i for i in framework if i != "import torch"]
    head += ["from safetensors.torch import load_file", "from torch import nn", "", ""]
    if functions:
        head += ["# ---- op implementations (graphdsl's PyTorch backend, as it computes them)",
                 "", functions, "", ""]
    head += constants + ([""] if constants else [])
    head += ["class Parameters(nn.Module):",
             '    """The parameters of a layer that the functions above compute."""', "", ""]
    lines = head + [f"class {class_name}(nn.Module):",
                    "    def __init__(self) -> None:", "        super().__init__()"]
    lines += [f"        {line}" for line in init_lines]
    lines += ["", f"    def forward(self, {signature}) -> dict[str, torch.Tensor]:"]
    lines += [f"        {line}" for line in body]
    lines += [f"        return {{{returned}}}", "", "",
              f"def load(path: str | None = None) -> {class_name}:",
              '    """The model with its weights (model.safetensors beside this file by default),'
              ' in eval mode."""',
              f"    module = {class_name}()",
              "    if path is None:",
              '        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '
              '"model.safetensors")',
              "    module.load_state_dict(load_file(path))",
              "    return module.eval()", ""]
    return "\n".join(lines)

