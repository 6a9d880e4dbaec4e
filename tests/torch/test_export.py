"""`graphdsl export` (onnx, torch-source), `graphdsl predict`, and the compiled module as a
first-class PyTorch object: layer submodules with readable reprs, hooks, pickle, deepcopy,
torch.save, torch.jit.trace.

References are independent of the code under test: onnxruntime runs the ONNX file; the
torch-source folder runs in a fresh interpreter where `import graphdsl` fails; both are
compared with the module graphdsl compiles.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import graphdsl
from graphdsl.cli.main import main
from graphdsl.runtime.checkpoint import model_metadata, save_checkpoint

from .conftest import example_module, example_program, run_cli, synthetic_arrays

pytestmark = pytest.mark.torch

TIED = """
model Tied(vocab: int = 30, dim: int = 8) {
    input  ids : int32[B, T]
    target next : int32[B, T]
    layer embed = Embedding(vocab, dim)
    h = LSTM(dim, return_sequences = true)(embed(ids))
    logits = Dense(vocab, kernel = embed.embeddings.T)(h)
    output logits
    inference output probs = softmax(logits)
    loss crossentropy(logits, next, from_logits = true)
}
"""


def _with_weights(tmp_path: Path, source: str, seed: int = 3) -> tuple[Path, Path, object]:
    """The program as a file and a checkpoint of random (non-initial) weights."""
    path = tmp_path / "tied.gdl"
    path.write_text(source)
    module = graphdsl.compile_file(str(path), backend="torch", seed=seed).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    program = graphdsl.compile_file(str(path))
    ckpt = tmp_path / "w.safetensors"
    save_checkpoint(str(ckpt), module.export_arrays(),
                    model_metadata(program.model(), str(path)))
    return path, ckpt, module


def _run(*args: str) -> int:
    return main(list(args))


# ---- predict --------------------------------------------------------------------------


def test_predict_writes_every_output_over_all_samples_in_batches(tmp_path: Path) -> None:
    path, ckpt, module = _with_weights(tmp_path, TIED)
    ids = np.random.default_rng(0).integers(0, 30, (7, 5)).astype("int32")
    np.savez(tmp_path / "in.npz", ids=ids)  # no targets needed
    code = _run("predict", str(path), "--weights", str(ckpt), "--data",
                str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"), "--batch", "3")
    assert code == 0
    with np.load(tmp_path / "out.npz") as out:
        got = {k: out[k] for k in out.files}
    assert set(got) == {"logits", "probs"}
    with torch.no_grad():
        ref = module(ids=torch.from_numpy(ids))
    for name in got:
        assert got[name].shape == tuple(ref[name].shape)
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-5)


def test_predict_reports_a_missing_input_array(tmp_path: Path, capsys) -> None:
    path, ckpt, _ = _with_weights(tmp_path, TIED)
    np.savez(tmp_path / "in.npz", tokens=np.zeros((2, 3), "int32"))
    code = _run("predict", str(path), "--weights", str(ckpt), "--data",
                str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"))
    assert code == 1
    assert "no array `ids`" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


# ---- onnx -------------------------------------------------------------------------------


def test_onnx_export_runs_in_onnxruntime_with_program_names_and_dynamic_sizes(
        tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in graphdsl[dev]")
    path, ckpt, module = _with_weights(tmp_path, TIED)
    out = tmp_path / "m.onnx"
    # In a process of its own, as the command runs: torch.onnx keeps state between exports
    # in one process, and a second export of an LSTM fixes its number of steps.
    done = run_cli("export", str(path), "--weights", str(ckpt), "--format", "onnx",
                   "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr
    session = ort.InferenceSession(str(out))
    assert [i.name for i in session.get_inputs()] == ["ids"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probs"]
    assert session.get_inputs()[0].shape == ["B", "T"]
    for batch, steps in ((1, 9), (5, 2)):  # sizes other than the ones traced
        ids = np.random.default_rng(batch).integers(0, 30, (batch, steps)).astype("int32")
        got = session.run(None, {"ids": ids})
        with torch.no_grad():
            ref = module(ids=torch.from_numpy(ids))
        np.testing.assert_allclose(got[0], ref["logits"].numpy(), atol=1e-5)
        np.testing.assert_allclose(got[1], ref["probs"].numpy(), atol=1e-6)


# ---- torch-source ------------------------------------------------------------------------

# Runs the exported folder with graphdsl unimportable; prints the outputs' largest
# differences from the reference arrays.
RUN_EXPORTED = """
import sys
sys.modules["graphdsl"] = None
try:
    import graphdsl
except ImportError:
    pass
else:
    raise SystemExit("graphdsl is importable")
sys.path.insert(0, sys.argv[1])
import json, numpy as np, torch
import model
m = model.load()
inputs = dict(np.load(sys.argv[2]))
ref = dict(np.load(sys.argv[3]))
with torch.no_grad():
    out = m(**{k: torch.from_numpy(v) for k, v in inputs.items()})
params = dict(m.named_parameters())
print(json.dumps({"diff": {k: float(np.abs(out[k].float().numpy() - ref[k]).max()) for k in ref},
                  "parameters": len(params), "keys": sorted(out),
                  "modules": sorted({type(x).__name__ for x in m.modules()})}))
"""


def _export_source(tmp_path: Path, stem: str) -> tuple[dict, str]:
    from graphdsl.backends.torch.export import export_source

    program = example_program(stem)
    model = program.model()
    module = example_module(stem, model.name).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path / stem
    export_source(program, model, module.export_arrays(), str(folder))
    arrays = synthetic_arrays(model)
    inputs = {k: arrays[k] for k in module.input_names}
    with torch.no_grad():
        ref = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    np.savez(tmp_path / "in.npz", **inputs)
    np.savez(tmp_path / "ref.npz", **{k: v.float().numpy() for k, v in ref.items()})
    done = subprocess.run([sys.executable, "-c", RUN_EXPORTED, str(folder),
                           str(tmp_path / "in.npz"), str(tmp_path / "ref.npz")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), (folder / "model.py").read_text()


# A transformer with masks and two heads, convolutions with batch norm, a constrained
# parameter and a masked kernel (every example passes; these cover the kinds of layer).
@pytest.mark.parametrize("stem", ["bert_base", "resnet18", "s10_constrained_params",
                                  "s05_masked_conv"])
def test_torch_source_runs_without_graphdsl_and_matches(tmp_path: Path, stem: str) -> None:
    result, source = _export_source(tmp_path, stem)
    assert max(result["diff"].values()) < 1e-5, result["diff"]
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    # torch, safetensors and the standard library only
    assert imported <= {"torch", "safetensors", "math", "os", "typing", "collections",
                        "json", "__future__"}, imported
    assert "graphdsl" not in source.replace("graphdsl's", "").replace("by graphdsl", "")


def test_torch_source_reads_like_pytorch_and_keeps_the_tie(tmp_path: Path) -> None:
    result, source = _export_source(tmp_path, "gpt2_small")
    assert {"Linear", "Embedding", "LayerNorm", "Dropout"} <= set(result["modules"])
    assert "# gpt2_block.0.dense: float32[B, T, 64]" in source  # shape comments
    # the output projection reads the token table: no parameter of its own
    assert "self.wte.weight" in source.split("def forward")[1]
    module = example_module("gpt2_small")
    assert result["parameters"] == len(list(module.parameters()))


# ---- the module as a PyTorch object ----------------------------------------------------------


def test_print_shows_one_typed_submodule_per_layer() -> None:
    module = graphdsl.compile(TIED, backend="torch")
    text = repr(module)
    assert "(embed): Embedding(input_dim=30, output_dim=8)" in text
    assert "(dense): Dense(in_features=8, units=30, tied kernel)" in text
    assert "(lstm): LSTM(in_features=8, units=8, return_sequences=True)" in text
    assert "Container()" not in text


def test_state_dict_keys_are_the_canonical_names() -> None:
    from graphdsl.runtime.checkpoint import expected_tensors

    for stem in ("gpt2_small", "resnet18", "s05_masked_conv"):
        module = example_module(stem)
        expected = {k for k in expected_tensors(module.ir) if not k.endswith("_mask")}
        keys = {k.replace(".parametrizations.", ".").replace(".original", "")
                for k in module.state_dict() if not k.endswith("_mask")}
        assert keys == expected, stem


def test_forward_hooks_fire_per_layer_call() -> None:
    module = graphdsl.compile(TIED, backend="torch").eval()
    seen: list[tuple[str, tuple[int, ...]]] = []
    for name, sub in module.named_modules():
        if name:
            sub.register_forward_hook(
                lambda m, args, out, name=name: seen.append((name, tuple(out.shape))))
    ids = torch.zeros(2, 4, dtype=torch.int32)
    module(ids=ids)
    assert seen == [("embed", (2, 4, 8)), ("lstm", (2, 4, 8)), ("dense", (2, 4, 30))]
    seen.clear()
    module.compute_losses({"ids": ids}, {"next": ids})  # the training pass too
    assert [name for name, _ in seen] == ["embed", "lstm", "dense"]


# Tracing records Python-level shape checks as constants, and says so: expected here.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_pickle_deepcopy_torch_save_and_jit_trace() -> None:
    module = example_module("gpt2_small").eval()
    ids = torch.from_numpy(synthetic_arrays(module.ir)["input_ids"])
    with torch.no_grad():
        ref = module(input_ids=ids)["logits"]
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    copies = [pickle.loads(pickle.dumps(module)), copy.deepcopy(module),
              torch.load(buffer, weights_only=False)]
    for other in copies:
        assert type(other).__name__ == type(module).__name__
        with torch.no_grad():
            torch.testing.assert_close(other(input_ids=ids)["logits"], ref, rtol=0, atol=0)
    deep = copies[1]
    with torch.no_grad():
        deep.wte.embeddings.add_(1.0)
    assert not torch.equal(deep.wte.embeddings, module.wte.embeddings), "a deep copy"
    traced = torch.jit.trace(module, (ids,), strict=False)
    torch.testing.assert_close(traced(ids)["logits"], ref)


def test_a_pickled_tie_is_still_one_parameter() -> None:
    module = pickle.loads(pickle.dumps(graphdsl.compile(TIED, backend="torch")))
    assert len(list(module.parameters())) == len(module.state_dict())
    assert module.canonical_tensors()["embed.embeddings"] is module.embed.embeddings
