"""`graphdsl export --format keras-source`: a folder with a readable ``model.py`` (a
Keras 3 model class) and the weights, ``model.safetensors``, that runs without graphdsl.

Layers with an exact Keras counterpart become one (``keras.layers.Dense``, ``Embedding``,
``LayerNormalization``, ``Dropout``); every other op calls a copy of graphdsl's own Keras
implementation (backends/source_copy.py), written in ``keras.ops`` and ``keras.random``,
so model.py imports Keras, NumPy and safetensors alone (run and tested on Keras'
TensorFlow backend). The weights keep graphdsl's canonical names and layouts (Keras' own);
``model.weights_by_name()`` lists them. A tie is one variable read in two places.
Constrained and masked parameters are stored as the values the model uses.
"""

from __future__ import annotations

import keyword
import os
import re
from collections.abc import Mapping

import numpy as np

from graphdsl.compiler import Program
from graphdsl.ir.codegen import Codegen, const_name
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops import REGISTRY

from ..source_copy import copy_functions
from .model import build_model
from .ops import load_all
from .ops.core import activate

# Ops that are exactly a Python operator on tensors.
_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*"}


def _attr(path: str, taken: dict[str, str]) -> str:
    """A Python attribute for a layer path (`gpt2_block.0.dense` -> `gpt2_block_0_dense`)."""
    base = re.sub(r"\W", "_", path)
    if not base.isidentifier() or keyword.iskeyword(base):
        base = "l_" + base
    name, n = base, 1
    while name in taken.values() and taken.get(path) != name:
        n += 1
        name = f"{base}_{n}"
    taken[path] = name
    return name


class _Native:
    def __init__(self, ctor: str, input_shape: str, params: dict[str, str], call: str):
        self.ctor, self.input_shape, self.params, self.call = ctor, input_shape, params, call


def _native(model: ModelGraph, path: str) -> _Native | None:
    record = model.layers[path]
    if not record.calls:
        return None
    a = model.node(record.calls[0])["args"]
    for node in record.params.values():
        data = model.node(node)
        if data["kind"] != "param" or data["owner"] != path:
            return None
    in_type = None
    for src, edge in model.in_edges(record.calls[0]):
        if edge["port"] in ("x", "ids"):
            d = model.node(src)
            in_type = d.get("type") or d["types"][edge.get("index", 0)]
    if in_type is None or in_type.shape is None:
        return None
    shape = "(" + ", ".join(str(d) if isinstance(d, int) else "None"
                            for d in in_type.shape) + ("," if len(in_type.shape) == 1 else "") \
        + ")"
    width = in_type.shape[-1] if in_type.shape else None
    name = f"name={path!r}"
    if record.op == "Dense" and isinstance(width, int):
        activation = getattr(a.get("activation"), "name", a.get("activation")) or "linear"
        call = "self.{m}({x})" if activation == "linear" else \
            f"activate(self.{{m}}({{x}}), {activation!r})"
        params = {"kernel": "kernel"}
        if a.get("use_bias", True):
            params["bias"] = "bias"
        return _Native(f"keras.layers.Dense({a['units']}, use_bias="
                       f"{bool(a.get('use_bias', True))}, {name})", shape, params, call)
    if record.op == "Embedding":
        return _Native(f"keras.layers.Embedding({a['input_dim']}, {a['output_dim']}, {name})",
                       shape, {"embeddings": "embeddings"}, "self.{m}({x})")
    if record.op == "LayerNormalization" and a.get("axis", -1) == -1 and \
            a.get("center", True) and a.get("scale", True) and isinstance(width, int):
        return _Native(f"keras.layers.LayerNormalization(epsilon={a.get('epsilon', 1e-3)!r}, "
                       f"{name})", shape, {"gamma": "gamma", "beta": "beta"}, "self.{m}({x})")
    if record.op == "Dropout":
        return _Native(f"keras.layers.Dropout({a['rate']!r}, {name})", shape, {},
                       "self.{m}({x}, training=training)")
    return None


class _SourceCodegen(Codegen):
    def __init__(self, model: ModelGraph, natives: dict[str, _Native],
                 attrs: dict[str, str], param_expr: dict[str, str]):
        super().__init__(model, load_all(), lambda d: param_expr[d["name"]],
                         constant_access=lambda n: f"ops.convert_to_tensor({const_name(n)})",
                         training="training")
        self.natives, self.attrs = natives, attrs

    def var(self, node: str) -> str:
        data = self.model.node(node)
        if data["kind"] == "param":
            return str(self.param_access(data))
        return super().var(node)

    def body(self, keep: set[str]) -> list[str]:
        m = self.model
        lines = []
        for node in m.inputs:
            if node in keep:
                lines.append(f"{self.var(node)} = inputs[{m.node(node)['name']!r}]")
        for node in m.ops():
            if node in keep:
                data = m.node(node)
                comment = ", ".join(str(t) for t in data["types"])
                where = f"{data['layer']}: " if data["layer"] else ""
                lines.append(f"{self.var(node)} = {self.op_call(node)}  # {where}{comment}")
        return lines

    def op_call(self, node: str) -> str:
        data = self.model.node(node)
        if data["op"] in _OPERATORS and not data["args"]:
            refs = {e["port"]: self.ref(src, e.get("index", 0))
                    for src, e in self.model.in_edges(node)}
            return f"{refs['x']} {_OPERATORS[data['op']]} {refs['y']}"
        native = self.natives.get(data["layer"]) if data["layer"] else None
        if native is None:
            return super().op_call(node)
        x = next(self.ref(src, e.get("index", 0)) for src, e in self.model.in_edges(node)
                 if e["port"] in ("x", "ids"))
        return native.call.format(m=self.attrs[data["layer"]], x=x)


def write_source(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                 out: str) -> None:
    keras_model = build_model(program, model, values=weights)
    natives = {p: n for p in model.layers if (n := _native(model, p)) is not None}
    taken: dict[str, str] = {}
    init_lines: list[str] = []
    param_expr: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for path, native in natives.items():
        attr = _attr(path, taken)
        init_lines.append(f"self.{attr} = {native.ctor}")
        init_lines.append(f"self.{attr}.build({native.input_shape})")
    state: dict[str, np.ndarray] = {}
    for node in model.params:
        data = model.node(node)
        name = data["name"]
        path, _, leaf = name.rpartition(".")
        value = _effective(keras_model, name)
        state[name] = value
        native = natives.get(data["owner"] or "")
        if native is not None and leaf in native.params:
            var = f"self.{taken[path]}.{native.params[leaf]}"
        else:
            attr = _attr(name, taken)
            dtype = str(value.dtype)
            trainable = bool(data["trainable"]) and data["role"] == "weight"
            init_lines.append(f"self.{attr} = self.add_weight(name={name!r}, shape="
                              f"{tuple(value.shape)!r}, dtype={dtype!r}, initializer='zeros', "
                              f"trainable={trainable})")
            var = f"self.{attr}"
        by_name[name] = var
        # a weight is read as a tensor (`ops.copy`, an identity: `convert_to_tensor` would
        # return the Keras variable itself, which some TensorFlow ops refuse); state
        # (moving statistics) stays a variable, which its op assigns
        param_expr[name] = f"ops.copy({var})" if data["role"] == "weight" else var
    constants = []
    for node in model.ops():
        data = model.node(node)
        if data["op"] == "constant":
            value = np.asarray(data["args"]["value"], dtype=data["args"]["dtype"])
        elif not REGISTRY[data["op"]].inputs:  # a static value (arange), computed here
            value = np.asarray(load_all()[data["op"]](**data["args"]))
        else:
            continue
        constants.append(f"{const_name(node)} = np.asarray({value.tolist()!r}, "
                         f"dtype={str(value.dtype)!r})")
    codegen = _SourceCodegen(model, natives, taken, param_expr)
    outputs = {model.node(n)["name"]: n for n in model.outputs}
    body = codegen.body(codegen.needed(list(outputs.values())))
    returned = ", ".join(f"{k!r}: {codegen.ref(*codegen.source_of(n))}"
                         for k, n in outputs.items())
    impls = load_all()
    functions = [(name, impls[name[len("_op_"):]]) for name in codegen.globals
                 if name.startswith("_op_")]
    if any("activate(" in n.call for n in natives.values()):
        functions.append(("activate", activate))
    imports, functions_source = copy_functions(functions)
    constants += [f"{k} = {v!r}" for k, v in codegen.globals.items() if not k.startswith("_op_")]
    text = _render(program, model, imports, functions_source, constants, init_lines, by_name,
                   body, returned)
    os.makedirs(out, exist_ok=True)
    from safetensors.numpy import save_file

    save_file({k: np.asarray(v, order="C") for k, v in state.items()},
              os.path.join(out, "model.safetensors"),
              metadata={"format": "graphdsl-keras-source/1", "model": model.name})
    with open(os.path.join(out, "model.py"), "w", encoding="utf-8") as fh:
        fh.write(text)


def _effective(keras_model: object, name: str) -> np.ndarray:
    """The value the model computes with: re-parameterised, times its kernel mask."""
    import keras

    variable = keras_model._vars[name]  # type: ignore[attr-defined]
    value = keras.ops.convert_to_tensor(variable.value)
    reparam = keras_model._reparams.get(name)  # type: ignore[attr-defined]
    if reparam is not None:
        value = reparam(value)
    masks = keras_model._masks.items  # type: ignore[attr-defined]
    if name in masks:
        value = value * masks[name]
    return np.asarray(keras.ops.convert_to_numpy(value))


def _render(program: Program, model: ModelGraph, imports: list[str], functions: str,
            constants: list[str], init_lines: list[str], by_name: dict[str, str],
            body: list[str], returned: str) -> str:
    class_name = "".join(ch for ch in model.name if ch.isalnum()) or "Model"
    doc_ins = "\n".join(f"    {model.node(n)['name']}: {model.node(n)['type']}"
                        for n in model.inputs)
    doc_outs = "\n".join(f"    {model.node(n)['name']}: {model.node(n)['type']}"
                         for n in model.outputs)
    head = [f'"""`{model.name}`, exported by graphdsl from {os.path.basename(program.file)}.',
            "",
            "Plain Keras 3: `load()` returns the model with the weights in model.safetensors",
            "beside this file; call it as `m(inputs)` with a dict of inputs; it returns a dict",
            "of outputs.", "", "Inputs:", doc_ins, "Outputs:", doc_outs, '"""', "",
            "from __future__ import annotations", "", "import os", ""]
    framework = {"keras", "numpy", "tensorflow", "safetensors"}
    std = sorted(i for i in imports if i.split()[1].split(".")[0] not in framework)
    others = sorted(i for i in imports if i.split()[1].split(".")[0] in framework)
    head += std + ["", "import keras", "import numpy as np"] + \
        [i for i in others if i not in ("import keras", "import numpy as np")]
    head += ["from keras import ops", "from safetensors.numpy import load_file", "", ""]
    if functions:
        head += ["# ---- op implementations (graphdsl's Keras backend, as it computes them)", "",
                 functions, "", ""]
    head += constants + (["", ""] if constants else [])
    lines = head + [f"class {class_name}(keras.Model):",
                    "    def __init__(self, **kwargs):",
                    f"        super().__init__(name={model.name!r}, **kwargs)"]
    lines += [f"        {line}" for line in init_lines]
    lines += ["", "    def weights_by_name(self) -> dict:",
              '        """Each variable under its graphdsl name (the keys of model.safetensors)."""',
              "        return {"]
    lines += [f"            {k!r}: {v}," for k, v in by_name.items()]
    lines += ["        }", "", "    def call(self, inputs, training=False):"]
    lines += [f"        {line}" for line in body]
    lines += [f"        return {{{returned}}}", "", "",
              f"def load(path: str | None = None) -> {class_name}:",
              '    """The model with its weights (model.safetensors beside this file by default)."""',
              f"    model = {class_name}()",
              "    if path is None:",
              '        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '
              '"model.safetensors")',
              "    tensors = load_file(path)",
              "    for name, variable in model.weights_by_name().items():",
              "        variable.assign(tensors[name])",
              "    return model", ""]
    return "\n".join(lines)
