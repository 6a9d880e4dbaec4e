"""Every program in examples/ compiles cleanly, and the published architectures and the
scenario programs (docs: /work/shared/design/scenarios.md, S1-S20) have the parameter
counts, ties, sharing and outputs that their own arithmetic predicts.

Expected counts come from closed-form formulas written out here from the layers'
definitions (Keras' parameter layouts), or from the published totals of GPT-2 small,
BERT-base and ResNet-18, never from a number the compiler printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import graphdsl
from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.gdl"))


# ---- parameter counts of single layers (Keras layouts) --------------------------------

def dense(inputs: int, units: int, bias: bool = True) -> int:
    return inputs * units + (units if bias else 0)


def layer_norm(d: int) -> int:
    return 2 * d                                  # gamma and beta


def attention(d: int, heads: int, key_dim: int) -> int:
    """MultiHeadAttention on d features: q, k, v projections to heads x key_dim, output."""
    return 3 * (d * heads * key_dim + heads * key_dim) + heads * key_dim * d + d


def lstm(inputs: int, units: int) -> int:
    return 4 * units * (inputs + units + 1)       # kernel, recurrent kernel, bias


# ---- helpers ---------------------------------------------------------------------------

def compile_example(name: str) -> Program:
    return graphdsl.compile_file(str(EXAMPLES / name))


def compile_variant(name: str, old: str, new: str, count: int = 1) -> Program:
    """The example with `old` replaced by `new` (which must occur exactly `count` times)."""
    path = EXAMPLES / name
    text = path.read_text()
    assert text.count(old) == count, f"{name}: expected {count} x {old!r} to substitute"
    return graphdsl.compile(text.replace(old, new), file=str(path))


def variant_error_codes(name: str, old: str, new: str) -> list[tuple[str, int]]:
    with pytest.raises(graphdsl.GraphdslError) as caught:
        compile_variant(name, old, new)
    return [(d.code, d.span.line if d.span else 0) for d in caught.value.diagnostics
            if d.is_error]


def line_of(name: str, fragment: str) -> int:
    lines = (EXAMPLES / name).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if fragment in line]
    assert len(hits) == 1, f"{fragment!r} occurs on lines {hits} of {name}"
    return hits[0]


def param_shapes(model: ModelGraph) -> dict[str, tuple[object, ...]]:
    return {model.node(p)["name"]: tuple(model.node(p)["type"].shape)
            for p in model.param_nodes()}


def op_inputs(model: ModelGraph, op: str) -> list[dict[str, str]]:
    """For each call of a function op: input port -> what feeds it (a name or an op)."""
    calls = []
    for node in model.ops():
        if model.node(node)["op"] == op:
            feeds = {}
            for producer, edge in model.in_edges(node):
                data = model.node(producer)
                feeds[edge["port"]] = data.get("name") or data["op"]
            calls.append(feeds)
    return calls


def output_types(model: ModelGraph) -> dict[str, tuple[bool, tuple[str, ...], str]]:
    """output name -> (inference only, shape as text, dtype)."""
    result = {}
    for node in model.outputs:
        data = model.node(node)
        result[data["name"]] = (data["inference"], tuple(str(d) for d in data["type"].shape),
                                data["type"].dtype)
    return result


# ---- every example ---------------------------------------------------------------------

def test_the_examples_are_there() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    for scenario in range(1, 21):
        assert any(n.startswith(f"s{scenario:02d}_") for n in names), f"no example for S{scenario}"
    assert {"gpt2_small.gdl", "bert_base.gdl", "resnet18.gdl", "lstm_lm.gdl"} <= names
    assert {"mobilenet_v2.gdl", "unet_pets.gdl", "lstm_seq2seq.gdl", "transformer_lm.gdl",
            "bigru_imdb.gdl", "resnext50.gdl"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_compiles_without_any_diagnostic(path: Path) -> None:
    program = graphdsl.compile_file(str(path))
    assert program.diagnostics == []
    assert program.models, f"{path.name} defines no model"
    for model in program.models.values():
        assert model.parameter_count > 0
        data = model.train.settings.get("data") if model.train else None
        if data is not None:
            assert Path(data).is_file(), f"{path.name}: train {model.name}: no file {data}"


# ---- published architectures -----------------------------------------------------------

GPT2_SMALL = dict(vocab=50257, context=1024, d=768, layers=12, heads=12)


def gpt2_formula(vocab: int, context: int, d: int, layers: int, heads: int,
                 tied: bool) -> int:
    block = (layer_norm(d) + attention(d, heads, d // heads)
             + layer_norm(d) + dense(d, 4 * d) + dense(4 * d, d))
    head = 0 if tied else dense(d, vocab, bias=False)
    return vocab * d + context * d + layers * block + layer_norm(d) + head


def test_gpt2_small_matches_the_published_count_with_the_head_tied() -> None:
    model = compile_example("gpt2_small.gdl").model("GPT2")
    assert model.formals == GPT2_SMALL
    assert model.parameter_count == 124_439_808                     # Radford et al. 2019
    assert gpt2_formula(**GPT2_SMALL, tied=True) == 124_439_808
    assert model.ties() == {"wte.embeddings": ["dense", "wte"]}


def test_gpt2_small_without_the_tie_adds_one_vocab_by_d_matrix() -> None:
    model = compile_variant("gpt2_small.gdl", ", kernel = wte.embeddings.T", "").model("GPT2")
    assert model.parameter_count == 163_037_184
    assert gpt2_formula(**GPT2_SMALL, tied=False) == 163_037_184
    assert model.ties() == {}


def test_bert_base_matches_the_published_count() -> None:
    model = compile_example("bert_base.gdl").model("BertBase")
    v, c, s, d, n, h, ff = 30522, 512, 2, 768, 12, 12, 3072
    assert model.formals == dict(vocab=v, context=c, segments=s, d=d, layers=n, heads=h, ff=ff)
    layer = (attention(d, h, d // h) + layer_norm(d)
             + dense(d, ff) + dense(ff, d) + layer_norm(d))
    formula = (v + c + s) * d + layer_norm(d) + n * layer + dense(d, d)   # ... + pooler
    assert formula == 109_482_240                                  # Devlin et al. 2019
    assert model.parameter_count == 109_482_240


def test_resnet18_matches_the_published_count() -> None:
    model = compile_example("resnet18.gdl").model("ResNet18")
    assert model.parameter_count == 11_689_512                     # He et al. 2016 (torchvision)


def test_lstm_language_models_follow_the_formula_tied_and_untied() -> None:
    program = compile_example("lstm_lm.gdl")
    v, d = 10000, 650
    body = v * d + 2 * lstm(d, d)
    tied, untied = program.model("TiedLM"), program.model("UntiedLM")
    assert tied.formals["vocab"] == untied.formals["vocab"] == v
    assert tied.formals["dim"] == untied.formals["dim"] == d
    assert tied.parameter_count == body + v                       # the head's bias only
    assert untied.parameter_count == body + dense(d, v)
    assert untied.parameter_count - tied.parameter_count == v * d
    assert tied.ties() == {"embed.embeddings": ["dense", "embed"]}
    assert untied.ties() == {}


# The published totals of issue 9's examples: trainable parameters, and parameters plus
# BatchNormalization's moving statistics. keras.applications and torchvision publish the
# first two; the others are the sources' models as Keras or torch count them
# (tests/keras/test_published_examples.py and tests/torch/test_published_examples.py build
# those references).
PUBLISHED = {
    ("mobilenet_v2.gdl", "MobileNetV2"): (3_504_872, 3_538_984),
    # moving mean and variance of 34,112 BatchNormalization channels: 64 in the stem, then
    # per stage blocks x (2 width + 4 planes) + 4 planes for the downsample
    ("resnext50.gdl", "ResNeXt50"): (25_028_904, 25_028_904 + 2 * 34_112),
    ("unet_pets.gdl", "UNet"): (2_055_203, 2_058_979),
    ("lstm_seq2seq.gdl", "Seq2Seq"): (716_892, 716_892),
    ("transformer_lm.gdl", "TransformerModel"): (13_828_878, 13_828_878),
    ("bigru_imdb.gdl", "BiGRUClassifier"): (2_709_121, 2_709_121),
}


@pytest.mark.parametrize(("name", "model"), sorted(PUBLISHED), ids=lambda v: str(v))
def test_published_architectures_have_their_published_totals(name: str, model: str) -> None:
    graph = compile_example(name).model(model)
    assert (graph.trainable_count, graph.count(graph.param_nodes(None))) == \
        PUBLISHED[(name, model)]
    assert graph.parameter_count == graph.trainable_count


def test_seq2seq_sampling_models_hold_the_training_models_layers() -> None:
    program = compile_example("lstm_seq2seq.gdl")
    trained = param_shapes(program.model("Seq2Seq"))
    for sampler in ("Encoder", "DecoderStep"):
        own = param_shapes(program.model(sampler))
        assert own and all(trained[name] == shape for name, shape in own.items()), sampler
    v_in, v_out, h = 71, 92, 256
    assert program.model("Seq2Seq").parameter_count == \
        lstm(v_in, h) + lstm(v_out, h) + dense(h, v_out)


def test_transformer_lm_positions_are_computed_not_stored() -> None:
    model = compile_example("transformer_lm.gdl").model()
    ops = {model.node(n)["op"] for n in model.ops()}
    assert {"sin", "cos", "arange", "positions"} <= ops
    assert all(model.node(p)["name"].split(".")[-1] != "pe" for p in model.param_nodes(None))


# ---- scenarios -------------------------------------------------------------------------

def test_s01_the_tied_table_is_one_tensor_used_by_embedding_and_head() -> None:
    model = compile_example("s01_tied_embeddings.gdl").model("TiedEmbeddingLM")
    v, d = model.formals["vocab"], model.formals["dim"]
    assert model.ties() == {"embed.embeddings": ["embed", "head"]}
    shapes = param_shapes(model)
    assert [name for name, shape in shapes.items() if set(shape) == {v, d}] == \
        ["embed.embeddings"]
    assert "head.kernel" not in shapes
    assert model.parameter_count == v * d + lstm(d, d)


def test_s02_float_ids_into_the_embedding_are_a_dtype_error() -> None:
    codes = variant_error_codes("s02_embedding_lookup.gdl", "input  ids   : int32[B, T]",
                                "input  ids   : float32[B, T]")
    line = line_of("s02_embedding_lookup.gdl", "Embedding(vocab, dim, mask_zero = true)(ids)")
    assert codes == [("dtype-mismatch", line)]


def test_s02_the_padding_mask_reaches_lstm_pooling_loss_and_metric() -> None:
    model = compile_example("s02_embedding_lookup.gdl").model()
    readers = set()
    for _, consumer, data in model.graph.edges(data=True):
        if data["port"] == "mask":
            node = model.node(consumer)
            readers.add(node.get("layer") or node["op"])
    assert readers == {"lstm", "global_average_pooling1d", "crossentropy", "accuracy"}


def test_s03_the_pretrained_tables_are_frozen_and_read_from_the_file() -> None:
    program = compile_example("s03_pretrained_vectors.gdl")
    for model in program.models.values():
        table = next(p for p in model.param_nodes()
                     if model.node(p)["name"] == "vectors.embeddings")
        assert model.node(table)["trainable"] is False
        init = model.node(table)["init"]
        assert init.name == "from_file"
        assert Path(init["path"]) == EXAMPLES / "data" / "vectors.npy"
        assert model.trainable_count > 0
    small = program.model("FrozenPlusFrequent")
    assert param_shapes(small)["tuned.embeddings"] == (20, 8)


def test_s04_the_structured_layer_has_exactly_three_trainable_scalars() -> None:
    model = compile_example("s04_structured_weights.gdl").model()
    assert model.trainable_count == 3
    assert model.parameter_count == 3
    assert param_shapes(model) == {"a": (), "b": (), "c": ()}


def test_s05_the_kernel_masks_are_recorded_on_the_kernels() -> None:
    import numpy as np

    model = compile_example("s05_masked_conv.gdl").model()
    masks = {model.node(p)["name"]: model.node(p)["kernel_mask"] for p in model.param_nodes()}
    skip = np.array(masks["conv1d.kernel"])                 # [taps, in, filters]
    assert skip.shape == (4, 8, 16)
    assert (skip == np.array([1, 0, 1, 1])[:, None, None]).all()
    per_channel = np.array(masks["conv1d_1.kernel"])
    pattern = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]])
    assert (per_channel == pattern[:, None, :]).all()
    assert masks["conv1d_2.kernel"] is None


def test_s06_unlabelled_samples_only_reach_the_reconstruction_loss() -> None:
    model = compile_example("s06_two_heads_missing_labels.gdl").model()
    assert [c.get("where") for c in op_inputs(model, "crossentropy")] == ["greater_equal"]
    assert [c.get("where") for c in op_inputs(model, "accuracy")] == ["greater_equal"]
    assert [c.get("where") for c in op_inputs(model, "mse")] == [None]
    terms = {model.node(n)["name"]: model.node(n)["weight"] for n in model.losses}
    assert terms == {"classification": 1.0, "reconstruction_error": 0.5}


def test_s07_the_loss_is_the_sum_of_its_named_weighted_terms() -> None:
    model = compile_example("s07_activity_penalty.gdl").model()
    terms = {model.node(n)["name"]: model.node(n)["weight"] for n in model.losses}
    assert terms == {"task": 1.0, "sparsity": 0.001, "dense.kernel.l2": 0.01}
    assert output_types(model)["hidden_code"][0] is True


def test_s09_the_loss_reads_the_embedding_table_as_a_matrix() -> None:
    model = compile_example("s09_expected_embedding.gdl").model()
    (product,) = op_inputs(model, "matmul")
    assert product == {"x": "softmax", "y": "embed.embeddings"}
    table = next(p for p in model.param_nodes() if model.node(p)["name"] == "embed.embeddings")
    assert model.node(table)["trainable"] is True


def test_s10_the_transition_matrix_is_constrained_to_the_simplex() -> None:
    program = compile_example("s10_constrained_params.gdl")
    for name, mode in (("NoisyLabels", "project"), ("NoisyLabelsReparam", "reparam")):
        model = program.model(name)
        q = next(p for p in model.param_nodes() if model.node(p)["name"] == "Q")
        constraint = model.node(q)["constraint"]
        assert (constraint.name, constraint["axis"], constraint["mode"]) == \
            ("simplex", 0, mode)


def test_s13_the_loss_takes_sample_and_class_weights() -> None:
    model = compile_example("s13_sample_class_weights.gdl").model()
    (loss,) = op_inputs(model, "crossentropy")
    assert loss["sample_weight"] == "weight"
    (node,) = [n for n in model.ops() if model.node(n)["op"] == "crossentropy"]
    assert model.node(node)["args"]["class_weight"] == [1.0, 1.0, 3.0, 5.0]


def test_s14_the_combined_model_holds_the_sub_models_weights() -> None:
    program = compile_example("s14_gan.gdl")
    gan = program.model("GAN")
    shapes = param_shapes(gan)
    for prefix, sub in (("generator.", "Generator"), ("discriminator.", "Discriminator")):
        own = param_shapes(program.model(sub))
        assert {prefix + name: shape for name, shape in own.items()} == \
            {name: shape for name, shape in shapes.items() if name.startswith(prefix)}
    assert len(shapes) == len(param_shapes(program.model("Generator"))) + \
        len(param_shapes(program.model("Discriminator")))
    # the discriminator is called on real and on generated samples: one set of layers
    for path, layer in gan.layers.items():
        if path.startswith("discriminator."):
            assert layer.shared and len(layer.calls) == 2, path
        else:
            assert not layer.shared, path
    assert gan.submodels == {"generator": "Generator", "discriminator": "Discriminator"}
    assert gan.ties() == {}


def test_s14_each_half_has_its_own_optimizer_group() -> None:
    gan = compile_example("s14_gan.gdl").model("GAN")
    assert gan.train is not None
    for name, pattern in gan.train.groups.items():
        assert pattern == name.split(".")[0] + ".*"
    assert set(gan.train.groups.values()) == {"generator.*", "discriminator.*"}
    minimises = {pattern: list(spec["loss"]) for pattern, spec, _ in gan.train.optimizers}
    assert minimises == {"discriminator.*": ["discriminator_loss"],
                         "generator.*": ["generator_loss"]}


def test_s15_the_restore_covers_the_trunk_and_not_the_new_head() -> None:
    from graphdsl.ir.patterns import matches

    program = compile_example("s15_transfer.gdl")
    pretrain, transfer = program.model("Pretrain"), program.model("Transfer")
    assert transfer.train is not None
    ((pattern, path),) = transfer.train.restore
    assert Path(path) == EXAMPLES / "checkpoints" / "pretrain.safetensors"
    source, target = param_shapes(pretrain), param_shapes(transfer)
    restored = {n: shape for n, shape in target.items() if matches(pattern, n)}
    assert restored == {n: shape for n, shape in source.items() if n.startswith("trunk.")}
    assert set(target) - set(restored) == {"head.kernel", "head.bias"}


def test_s16_leaving_out_the_head_optimizer_is_a_coverage_error() -> None:
    name = "s16_finetune_groups.gdl"
    with pytest.raises(graphdsl.GraphdslError) as caught:
        compile_variant(name, "optimizer *         = adam(lr = 1e-3)", "")
    errors = [d for d in caught.value.diagnostics if d.is_error]
    assert [d.code for d in errors] == ["optimizer-coverage"]
    assert "`head.kernel`" in errors[0].message and "`head.bias`" in errors[0].message


def test_s16_every_trainable_parameter_has_exactly_one_group() -> None:
    model = compile_example("s16_finetune_groups.gdl").model()
    assert model.train is not None
    names = [model.node(p)["name"] for p in model.trainable_params()]
    assert sorted(model.train.groups) == sorted(names)
    assert {n for n, g in model.train.groups.items() if g == "*"} == {"head.kernel", "head.bias"}


def test_s17_each_parameter_has_the_stated_initialiser() -> None:
    model = compile_example("s17_custom_initializers.gdl").model()
    found = {}
    for p in model.param_nodes():
        data = model.node(p)
        found[data["name"]] = (str(data["init"]), data["trainable"])
    vectors = str(EXAMPLES / "data" / "vectors.npy")
    assert found["vectors.embeddings"] == (f"from_file(path={vectors!r})", True)
    assert found["refine.kernel"] == ("identity(gain=1.0)", True)
    assert found["signs.kernel"] == ("sign(p=0.5)", False)
    assert found["links.kernel"] == ("binary(p=0.25)", False)
    assert found["temperature"] == ("constant(value=1.0)", True)
    assert found["dense.bias"] == ("constant(value=0.1)", True)


@pytest.mark.parametrize("layers", [1, 4, 7])
def test_s18_the_stack_returns_n_plus_one_states(layers: int) -> None:
    model = compile_variant("s18_hidden_states.gdl", "layers: int = 4",
                            f"layers: int = {layers}").model()
    d = model.formals["d"]
    outputs = output_types(model)
    states = {n: t for n, t in outputs.items() if n.startswith("states")}
    assert sorted(states) == [f"states_{i}" for i in range(layers + 1)]
    assert set(states.values()) == {(True, ("B", "T", str(d)), "float32")}
    block = layer_norm(d) + dense(d, 2 * d) + dense(2 * d, d)
    v = model.formals["vocab"]
    assert model.parameter_count == v * d + layers * block + layer_norm(d) + dense(d, v)


def test_s19_a_mismatched_step_dimension_is_found_at_its_line() -> None:
    name = "s19_explicit_shapes.gdl"
    codes = variant_error_codes(name, "input  valid    : bool[B, T]",
                                "input  valid    : bool[B, S]")
    assert codes == [("shape-mismatch", line_of(name, "where = expand_dims(valid, -1)"))]


def test_s19_a_raw_uint8_image_into_a_convolution_is_a_dtype_error() -> None:
    name = "s19_explicit_shapes.gdl"
    codes = variant_error_codes(name, 'image = cast(snapshot, "float32") / 255.0',
                                "image = snapshot")
    assert codes == [("dtype-mismatch", line_of(name, "Conv2D(8, 3"))]


@pytest.mark.parametrize("layers", [1, 3, 6])
def test_s20_separate_layers_count_n_blocks_and_shared_layers_one(layers: int) -> None:
    program = compile_variant("s20_blocks_repeat.gdl", "layers: int = 6",
                              f"layers: int = {layers}", count=2)
    separate, shared = program.model("SeparateLayers"), program.model("SharedLayers")
    f = separate.formals
    assert f == shared.formals and f["layers"] == layers
    v, d, h, ff, classes = f["vocab"], f["d"], f["heads"], f["ff"], f["classes"]
    block = (attention(d, h, d // h) + layer_norm(d)
             + dense(d, ff) + dense(ff, d) + layer_norm(d))
    outside = v * d + dense(d, classes)
    assert separate.parameter_count == outside + layers * block
    assert shared.parameter_count == outside + block
    repeated = [layer for path, layer in shared.layers.items()
                if path.startswith("transformer_layer.")]
    assert repeated and all(len(layer.calls) == layers for layer in repeated)
    distinct = {re.sub(r"\.\d+\.", ".", p) for p in separate.layers
                if p.startswith("transformer_layer.")}
    assert len(distinct) == len(repeated)
