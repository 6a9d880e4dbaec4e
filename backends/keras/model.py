"""A checked model graph -> a native Keras 3 model (TensorFlow backend).

Why the model computes itself rather than letting a functional graph of layers do it: a tie is one variable used
in two places. Keras keeps a layer that *refers* to another layer's variable tied through
``.keras`` save/load, but loses the tie silently in ``from_config``, ``clone_model`` and
``to_json``, because each layer is rebuilt from its own configuration. One object that
owns the variable and computes every use of it keeps the tie everywhere (the way
``keras.layers.ReversibleEmbedding`` does for its two roles). Here that object is the
model: its configuration is the program's source, so ``from_config`` (used by loading,
cloning and JSON) recompiles the same graph and makes each tied tensor once, for any
tie. Each DSL layer is a :class:`ParameterGroup` sublayer named after the layer's path,
of a subclass named after its op (``Dense``, ``Embedding``) and holding its own variables.
The model is still built as a functional-API subclass, over a graph of those groups that
only records which layer feeds which (layer_graph.py): so ``model.layers``,
``model.summary()`` (output shapes, parameter counts, connections) and
``keras.utils.plot_model`` read like the program, while ``call`` runs the generated forward.

Masks are explicit inputs of the ops that use them (the compiler attaches them), never
Keras' implicit masking, so no op or sub-model can drop one silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from graphdsl.compiler import compile_text
from graphdsl.ir.codegen import Codegen, const_name
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops import REGISTRY
from graphdsl.ops.specs import Spec
from graphdsl.runtime.weights import initial_values

from .layer_graph import layer_graph
from .ops import load_all

PACKAGE = "graphdsl"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ParameterGroup(keras.layers.Layer):
    """The variables of one DSL layer (or of `param` statements under one path)."""

    def __init__(self, tensors: list[dict[str, Any]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.tensor_specs = list(tensors or [])
        self.vars: dict[str, keras.Variable] = {}
        for t in self.tensor_specs:
            self.vars[t["leaf"]] = self.add_weight(
                name=t["leaf"], shape=tuple(t["shape"]), dtype=t["dtype"],
                initializer="zeros", trainable=t["trainable"])
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "tensors": self.tensor_specs}

    # The model computes every layer in its generated forward; a group is called only on
    # symbolic tensors, to link the layers into a functional graph (layer_graph.py).
    def compute_output_spec(self, *inputs: Any, output_shape: tuple[Any, ...] = (None,),
                            output_dtype: str = "float32") -> keras.KerasTensor:
        return keras.KerasTensor(output_shape, dtype=output_dtype)


def _group_class(op: str) -> type[ParameterGroup]:
    """A ParameterGroup subclass named after the program's op, so that `model.summary()`
    says `Dense`, `LayerNormalization`, ... in its type column."""
    if op not in _GROUP_CLASSES:
        cls = type(op, (ParameterGroup,), {"__module__": __name__, "__qualname__": op,
                                            "__doc__": f"The variables of a `{op}` layer."})
        _GROUP_CLASSES[op] = keras.saving.register_keras_serializable(package=PACKAGE)(cls)
    return _GROUP_CLASSES[op]


_GROUP_CLASSES: dict[str, type[ParameterGroup]] = {}


class _Lookup:
    """A plain name -> object map that Keras' attribute tracking leaves alone."""

    def __init__(self, items: dict[str, Any]):
        self.items = items

    def __getitem__(self, key: str) -> Any:
        return self.items[key]


def _read(variable: keras.Variable) -> Any:
    """A variable's value as a TensorFlow tensor (the read is recorded by gradient tapes).
    Under a mixed policy (`precision = "bf16"`/`"fp16"`) float weights are read in the
    compute dtype and stay float32 themselves, as Keras' own layers do."""
    import tensorflow as tf

    value = tf.convert_to_tensor(variable.value)
    compute = keras.mixed_precision.global_policy().compute_dtype
    if value.dtype == tf.float32 and compute != "float32":
        return tf.cast(value, compute)
    return value


def _reparam(spec: Spec) -> Any:
    axis = int(spec.get("axis", 0))
    ops = keras.ops
    if spec.name == "simplex":
        return lambda w: ops.softmax(w, axis=axis)
    if spec.name == "non_neg":
        return ops.softplus
    if spec.name == "unit_norm":
        return lambda w: w / ops.maximum(ops.norm(w, axis=axis, keepdims=True), 1e-12)
    limit = float(spec["max_value"])
    return lambda w: w * ops.minimum(1.0, limit / ops.maximum(
        ops.norm(w, axis=axis, keepdims=True), 1e-12))


def project(value: Any, spec: Spec) -> Any:
    """The projection of a `mode = "project"` constraint (graphdsl/runtime/weights.py)."""
    ops = keras.ops
    axis = int(spec.get("axis", 0))
    if spec.name == "non_neg":
        return ops.maximum(value, 0.0)
    if spec.name == "unit_norm":
        return value / ops.maximum(ops.norm(value, axis=axis, keepdims=True), 1e-12)
    if spec.name == "max_norm":
        norm = ops.maximum(ops.norm(value, axis=axis, keepdims=True), 1e-12)
        return value * ops.minimum(1.0, float(spec["max_value"]) / norm)
    moved = ops.moveaxis(value, axis, -1)
    u = ops.flip(ops.sort(moved, axis=-1), axis=-1)
    cumulative = ops.cumsum(u, axis=-1) - 1.0
    index = ops.cast(ops.arange(1, u.shape[-1] + 1), value.dtype)
    condition = ops.cast(u - cumulative / index > 0, "int32")
    rho = ops.argmax(condition * ops.arange(u.shape[-1]), axis=-1)
    theta = ops.take_along_axis(cumulative, ops.expand_dims(rho, -1), axis=-1) / \
        ops.cast(ops.expand_dims(rho, -1) + 1, value.dtype)
    return ops.moveaxis(ops.maximum(moved - theta, 0.0), -1, axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GraphModel(keras.Model):
    """A graphdsl model as a Keras model: ``model(inputs_dict)`` -> dict of outputs.

    ``compute_losses(inputs, targets)`` returns (outputs, weighted terms, metrics); ``fit``
    trains all loss terms in one call and reports each term separately.
    """

    # The positional arguments are Functional's, so that keras.models.clone_model builds the
    # clone with this class (see _run_through_graph); a model is made from its program,
    # given by keyword: GraphModel(source=..., file=..., model_name=..., ...).
    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 **program: Any):
        if "source" not in program:
            made_by = keras.tree.flatten(outputs)[0]._keras_history.operation \
                if outputs is not None else None
            if not isinstance(made_by, GraphModel):
                raise TypeError("a GraphModel is made from a graphdsl program: use "
                                "graphdsl.compile(...) or GraphModel.from_config(...)")
            program = made_by.get_config()
        if name is not None:
            program["name"] = name
        self._make(**program)

    def _make(self, source: str, file: str, model_name: str,
              files: dict[str, str] | None = None, seed: int = 0,
              arguments: dict[str, Any] | None = None, base_dir: str | None = None,
              **kwargs: Any) -> None:
        kwargs.setdefault("name", model_name)
        self.program_source = source
        self.program_file = file
        self.model_name = model_name
        self.program_files = dict(files or {})
        self.seed = seed
        # The model's parameters given from outside (`--set`, ``args=``): part of the
        # configuration, so that the rebuilt model has the same sizes.
        self.arguments = dict(arguments or {})
        # Where the root's imports resolve (a string compiled with `base_dir=`); their
        # texts are in `files`, keyed by the absolute paths resolved from here.
        self.base_dir = base_dir
        program = compile_text(source, file, model=model_name, files=self.program_files,
                               args=self.arguments, base_dir=base_dir)
        self.ir: ModelGraph = program.models[model_name]
        self._build_variables(initial_values(self.ir, seed))
        codegen = Codegen(self.ir, load_all(), self._param_access,
                          constant_access=lambda n: f"self._consts[{const_name(n)!r}]",
                          training="training", extra_args="training=False")
        codegen.globals["_read"] = _read
        generated = codegen.generate()
        self._source = _Lookup({"generated": generated.source})
        functions = generated.functions()
        self._forward_fn = _Lookup(functions)
        self.input_names = tuple(self.ir.node(n)["name"] for n in self.ir.inputs)
        self.target_names = tuple(self.ir.node(n)["name"] for n in self.ir.targets)
        self.output_names_ = tuple(self.ir.node(n)["name"] for n in self.ir.outputs)
        trackers = {"loss": keras.metrics.Mean(name="loss")}
        for n in self.ir.losses + self.ir.metrics:
            name = self.ir.node(n)["name"]
            trackers[name] = keras.metrics.Mean(name=name)
        self._trackers = _Lookup(trackers)
        self._training = _Lookup({"groups": [], "clip_norm": None, "optimizer": None})
        # Keras' functional-subclass constructor: the layers' graph, for Keras' tools.
        inputs, outputs = layer_graph(self.ir, self._groups_by_path, self._output_group)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._convert_input_args = True  # numpy inputs become tensors, as in any layer

    @property
    def groups(self) -> list[tuple[Spec, Any, list[str]]]:
        """(spec, Keras optimizer, parameter names) per optimizer group."""
        return self._training["groups"]  # type: ignore[no-any-return]

    @groups.setter
    def groups(self, value: list[tuple[Spec, Any, list[str]]]) -> None:
        self._training.items["groups"] = value

    @property
    def clip_norm(self) -> float | None:
        return self._training["clip_norm"]  # type: ignore[no-any-return]

    @clip_norm.setter
    def clip_norm(self, value: float | None) -> None:
        self._training.items["clip_norm"] = value

    @property
    def generated_source(self) -> str:
        return self._source["generated"]  # type: ignore[no-any-return]

    # ---- variables
    def _build_variables(self, values: Mapping[str, np.ndarray]) -> None:
        by_path: dict[str, list[dict[str, Any]]] = {}
        self._reparams: dict[str, Any] = {}
        self._projections: list[tuple[str, Spec]] = []
        masks: dict[str, Any] = {}
        for node in self.ir.params:
            data = self.ir.node(node)
            path, _, leaf = data["name"].rpartition(".")
            by_path.setdefault(path or "params", []).append({
                "leaf": leaf, "name": data["name"], "shape": [int(d) for d in data["type"].shape],
                "dtype": "float32" if data["type"].dtype == "bfloat16" else data["type"].dtype,
                "trainable": bool(data["trainable"]) and data["role"] == "weight"})
            if data["kernel_mask"] is not None:
                masks[data["name"]] = keras.ops.convert_to_tensor(
                    np.asarray(data["kernel_mask"], dtype="float32"))
            constraint = data["constraint"]
            if constraint is not None:
                if constraint.get("mode") == "reparam":
                    self._reparams[data["name"]] = _reparam(constraint)
                else:
                    self._projections.append((data["name"], constraint))
        # One group per layer of the program, in its order (the layers without variables
        # too, so the summary lists every layer), then the `param` statements' groups.
        self.parameter_groups = []
        for path, record in self.ir.layers.items():
            self.parameter_groups.append(
                _group_class(record.op)(by_path.pop(path, []), name=path))
        for path, tensors in by_path.items():
            self.parameter_groups.append(ParameterGroup(tensors, name=path))
        self._groups_by_path = _Lookup({g.name: g for g in self.parameter_groups})
        variables = {}
        for group in self.parameter_groups:
            for t in group.tensor_specs:
                variables[t["name"]] = group.vars[t["leaf"]]
        self._vars = _Lookup(variables)
        self._masks = _Lookup(masks)
        consts = {}
        for node in self.ir.ops():
            data = self.ir.node(node)
            if data["op"] == "constant":
                consts[const_name(node)] = keras.ops.convert_to_tensor(
                    np.asarray(data["args"]["value"], dtype=data["args"]["dtype"]))
            elif not REGISTRY[data["op"]].inputs:  # a static value (arange)
                consts[const_name(node)] = load_all()[data["op"]](**data["args"])
        self._consts = _Lookup(consts)
        self.load_arrays(values)

    def _output_group(self, name: str) -> ParameterGroup:
        """The box where an output computed from several layers joins them."""
        taken = name in self._groups_by_path.items
        return _group_class("Output")([], name=f"{name}_output" if taken else name)

    def _param_access(self, data: dict[str, Any]) -> str:
        name = data["name"]
        # A weight is read as a tensor (what every op accepts; the tape records the read);
        # state such as moving statistics stays a variable, which its op `assign`s.
        access = f"self._vars[{name!r}]"
        if data["role"] == "weight":
            access = f"_read({access})"
        if name in self._reparams:
            access = f"self._reparams[{name!r}]({access})"
        if data["kernel_mask"] is not None:
            access = f"({access} * self._masks[{name!r}])"
        return access

    def submodel(self, path: str) -> GraphModel:
        """A model used as a layer at ``path``, as a Keras model of its own that reads this
        model's variables (training either trains both)."""
        if path not in self.ir.submodels:
            raise KeyError(f"`{path}` is not a model used as a layer in `{self.ir.name}`; "
                           f"those are: {', '.join(self.ir.submodels) or 'none'}")
        child = GraphModel(source=self.program_source, file=self.program_file,
                           model_name=self.ir.submodels[path], files=self.program_files,
                           seed=self.seed, base_dir=self.base_dir)
        mine = self._vars.items
        for name in list(child._vars.items):
            child._vars.items[name] = mine[f"{path}.{name}"]
        return child

    def canonical_variables(self) -> dict[str, keras.Variable]:
        return dict(self._vars.items)

    def export_arrays(self) -> dict[str, np.ndarray]:
        out = {name: np.asarray(keras.ops.convert_to_numpy(v))
               for name, v in self._vars.items.items()}
        for name, mask in self._masks.items.items():
            out[f"{name}_mask"] = np.asarray(keras.ops.convert_to_numpy(mask))
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            if name in self._vars.items:
                self._vars[name].assign(np.asarray(value, dtype=self._vars[name].dtype))

    def project_constraints(self) -> None:
        for name, spec in self._projections:
            self._vars[name].assign(project(self._vars[name], spec))

    # ---- the layers' graph: it records connections, and cannot compute
    def _run_through_graph(self, inputs: Any, operation_fn: Any = lambda op: op,
                           call_fn: Any = None) -> Any:
        # Keras runs through a functional graph to check it (with no inputs, in the
        # constructor) and, in keras.models.clone_model, to rebuild it from copies of its
        # layers. A GraphModel's copy is the same program with fresh weights: one operation
        # from the inputs to the outputs, whose program the constructor above adopts.
        if all(x is None for x in keras.tree.flatten(inputs)):
            return super()._run_through_graph(inputs, operation_fn, call_fn)
        return type(self).from_config(self.get_config())(inputs)

    def compute_output_spec(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        return keras.tree.map_structure(
            lambda x: keras.KerasTensor(x.shape, dtype=x.dtype), self._outputs_struct)

    # ---- running
    # The generated forward reads the program's inputs by name (a batch may carry targets
    # too); the functional graph's exact-structure check is not this model's contract.
    def _assert_input_compatibility(self, *args: Any) -> None:
        pass

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        return self._forward_fn["_run_forward"](self, dict(inputs),  # type: ignore[no-any-return]
                                                training=bool(training))

    def compute_losses(self, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                       training: bool = False) -> tuple[dict[str, Any], dict[str, Any],
                                                         dict[str, Any]]:
        return self._forward_fn["_run_losses"](self, dict(inputs), dict(targets),  # type: ignore[no-any-return]
                                               training=bool(training))

    # ---- training with fit()
    def compile(self, optimizer: Any = None, **kwargs: Any) -> None:
        """Without an optimizer, the train block's optimizer groups are used."""
        from .step import make_groups

        self.groups = make_groups(self, optimizer)
        self._training.items["optimizer"] = optimizer
        if self.ir.train is not None and optimizer is None:
            self.clip_norm = self.ir.train.settings.get("clip_norm")
        super().compile(optimizer=self.groups[0][1] if self.groups else "adam", **kwargs)

    def get_compile_config(self) -> dict[str, Any] | None:
        if not self.groups:
            return None
        optimizer = self._training["optimizer"]
        # Without an explicit optimizer the groups come from the program's train block.
        return {"optimizer": keras.saving.serialize_keras_object(optimizer)
                if optimizer is not None else None}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        optimizer = config.get("optimizer")
        self.compile(keras.saving.deserialize_keras_object(optimizer)
                     if optimizer is not None else None)

    @property
    def metrics(self) -> list[Any]:
        return list(self._trackers.items.values())

    def _split(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        x, y = (data[0], data[1]) if isinstance(data, (tuple, list)) else (data, {})
        return dict(x), dict(y or {})

    def train_step(self, data: Any) -> dict[str, Any]:
        from .step import apply_step

        x, y = self._split(data)
        _, terms, metrics = apply_step(self, x, y, lr_factor=None)
        return self._track(terms, metrics)

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y = self._split(data)
        _, terms, metrics = self.compute_losses(x, y, training=False)
        return self._track(terms, metrics)

    def _track(self, terms: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        total = sum(terms.values()) if terms else keras.ops.zeros(())
        trackers = self._trackers.items
        trackers["loss"].update_state(total)
        for name, value in terms.items():
            trackers[name].update_state(value)
        for name, (s, c) in metrics.items():
            trackers[name].update_state(s / keras.ops.maximum(c, 1e-12), sample_weight=c)
        return {name: t.result() for name, t in trackers.items()}

    # ---- serialisation: the program is the configuration
    def get_config(self) -> dict[str, Any]:
        return {"source": self.program_source, "file": self.program_file,
                "model_name": self.model_name, "files": self.program_files,
                "seed": self.seed, "arguments": self.arguments, "base_dir": self.base_dir,
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> GraphModel:
        return cls(**config)


def build_model(program: Any, model: ModelGraph, seed: int = 0,
                values: Mapping[str, np.ndarray] | None = None) -> GraphModel:
    """A GraphModel for ``model`` of a compiled program."""
    texts = program.sources.texts
    root = program.file
    # (`<arguments>` and other names in angle brackets are not files.)
    files = {os.path.abspath(p): t for p, t in texts.items()
             if p != root and not p.startswith("<")}
    # The root's absolute path: rebuilt elsewhere, its imports resolve to the saved texts.
    file = root if root.startswith("<") else os.path.abspath(root)
    result = GraphModel(source=texts[root], file=file, model_name=model.name, files=files,
                        seed=seed, arguments=model.arguments, base_dir=program.base_dir)
    if values is not None:
        result.load_arrays(values)
    return result
