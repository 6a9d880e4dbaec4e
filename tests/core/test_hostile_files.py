"""Files a run reads are checked before they are trusted: a declared size is compared with
the bytes present and the memory available before anything is decompressed or read, and
every malformed file is a diagnostic, never an exception. Each hostile file is made here,
small (a zip bomb is a few KB compressed), in tmp_path. No framework is needed.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import graphdsl
from graphdsl.checks import resources
from graphdsl.compiler import compile_text
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime import data, streams

CLASSIFIER = """\
model Classifier {
    input  ids   : int32[B, T]
    target label : int32[B]
    h = GlobalAveragePooling1D()(Embedding(50, 4)(ids))
    output logits = Dense(3)(h)
    loss crossentropy(logits, label, from_logits = true)
}
"""

MASKED = """\
model Masked {
    input  x     : float32[B, 4]
    target label : int32[B]
    output logits = Dense(3)(x)
    loss crossentropy(logits, label, from_logits = true, where = label >= 0)
}
"""

LM = """\
model LM {
    input  tokens : int32[B, T]
    target next   : int32[B, T]
    output logits = Dense(20)(Embedding(20, 4)(tokens))
    loss crossentropy(logits, next, from_logits = true)
}
"""


def model(source: str) -> Any:
    return graphdsl.compile(source).model()


def bad_data(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(data.DataError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert [d.code for d in info.value.diagnostics] == ["bad-data"]
    diagnostic = info.value.diagnostics[0]
    return " ".join([diagnostic.message, *(n.message for n in diagnostic.notes)])


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (and nothing after it)."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


# ---- .npz -----------------------------------------------------------------------------------


def test_an_array_header_declaring_hundreds_of_gigabytes_is_refused_unread(
        tmp_path: Path) -> None:
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ids.npy", npy_header((400_000, 250_000), "<i4") + b"\0" * 64)
        archive.writestr("label.npy", npy_header((400_000,), "<i4"))
    message = bad_data(data.load_npz, str(path), model(CLASSIFIER))
    assert "`ids` declares shape [400000, 250000] (372.5 GiB)" in message


def test_a_zip_bomb_is_refused_before_it_is_decompressed(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    path = tmp_path / "bomb.npz"
    zeros = np.zeros((4096, 1024), np.int32)  # 16 MiB of zeros: about 16 KB deflated
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, zeros)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ids.npy", buffer.getvalue())
        archive.writestr("label.npy", npy_header((4096,), "<i4") + b"\0" * 4096 * 4)
    assert path.stat().st_size < 64 * 1024
    monkeypatch.setattr(data, "available_memory", lambda: 8 * 1024**2)
    message = bad_data(data.load_npz, str(path), model(CLASSIFIER))
    assert "decompresses to at least 16.0 MiB" in message
    assert "4.0 MiB this run can hold" in message


def test_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ids.npy", npy_header((2, 3), "|O") + b"\0" * 64)
    assert "holds Python objects" in bad_data(data.load_npz, str(path), model(CLASSIFIER))


@pytest.mark.parametrize(("labels", "expected"), [
    ([0, 1, 3], "`label` holds 3 (1 value outside 0 .. 2): `crossentropy` has 3 classes"),
    ([0, -1, 2], "`label` holds -1"),
])
def test_labels_outside_the_class_count_are_a_data_error(tmp_path: Path, labels: list[int],
                                                         expected: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, ids=np.ones((3, 5), np.int32), label=np.array(labels, np.int32))
    assert expected in bad_data(data.load_npz, str(path), model(CLASSIFIER))


def test_ids_beyond_the_embedding_are_a_data_error_even_in_int64(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    ids = np.ones((2, 4), np.int64)
    ids[1, 2] = 2**32 + 1  # would wrap to 1 as int32 and pass unseen
    np.savez(path, ids=ids, label=np.zeros(2, np.int32))
    message = bad_data(data.load_npz, str(path), model(CLASSIFIER))
    assert f"`ids` holds {2**32 + 1}" in message and "has input_dim 50" in message


def test_labels_a_where_mask_hides_may_be_negative(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 4), np.float32), label=np.array([0, -1, 2], np.int32))
    assert len(data.load_npz(str(path), model(MASKED))) == 3


# ---- text corpora and vocab.json ------------------------------------------------------------


def test_a_corrupt_gzip_corpus_is_a_data_error(tmp_path: Path) -> None:
    # A corpus is streamed line by line to a file of ids, so a gzip bomb never sits in
    # memory; a damaged stream must still end in a diagnostic, not a zlib traceback.
    path = tmp_path / "broken.txt.gz"
    whole = gzip.compress(b"a b c\n" * 1000, 9)
    path.write_bytes(whole[:20] + bytes(64) + whole[84:])
    message = bad_data(lambda: list(streams._lines(str(path))))
    assert "cannot read" in message


@pytest.mark.parametrize("content", [
    "{not json", "[1, 2]", '{"tokens": "abc"}', '{"tokens": [1, 2]}',
    '{"tokens": ["a", "b"]}', '{"tokens": ["<pad>", "<unk>", "<eos>", "a", "a"]}',
])
def test_a_malformed_vocab_json_is_a_data_error(tmp_path: Path, content: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\nd e f\n" * 20)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(content)
    message = bad_data(streams.open_text_corpus, str(corpus), model(LM), sequence_length=4,
                       tokenizer="word", vocab_size=None, validation=0.1,
                       vocab_file=str(vocab), scratch=str(tmp_path))
    assert "vocab" in message


# ---- checkpoints, state files, latest.json --------------------------------------------------


def safetensors_header(header: dict) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text


def test_a_6_gb_sparse_checkpoint_is_refused_before_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 6 * 1024**3
    path = tmp_path / "big.safetensors"
    head = safetensors_header({"__metadata__": {"format": ckpt.FORMAT},
                               "w": {"dtype": "F32", "shape": [size // 4],
                                     "data_offsets": [0, size]}})
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + size)  # sparse: no disk used
    monkeypatch.setattr(resources, "available_memory", lambda: 2 * 1024**3)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(str(path))
    assert "its tensors need 6.0 GiB, more than the 1.0 GiB" in str(info.value)


@pytest.mark.parametrize("content", [
    b"", b"\xff" * 8 + b"{}", struct.pack("<Q", 10) + b"not json!!", safetensors_header([1]),
])
def test_a_malformed_checkpoint_is_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(str(path))
    assert [d.code for d in info.value.diagnostics] == ["bad-checkpoint"]


def test_a_checkpoint_is_read_memory_mapped_and_equal(tmp_path: Path) -> None:
    path = tmp_path / "ok.safetensors"
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int32)}
    ckpt.save_checkpoint(str(path), tensors, {"format": ckpt.FORMAT, "model": "M"})
    loaded = ckpt.load_checkpoint(str(path))
    assert loaded.metadata["model"] == "M"
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], value)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600), "a checkpoint is not private"


@pytest.mark.parametrize("state", [
    "not json", json.dumps([1]), json.dumps({"step": 1}),
    json.dumps({"step": -1, "epoch": 0, "batch_in_epoch": 0}),
    json.dumps({"step": "3", "epoch": 0, "batch_in_epoch": 0}),
])
def test_a_malformed_state_file_is_a_checkpoint_error(tmp_path: Path, state: str) -> None:
    from safetensors.numpy import save

    path = tmp_path / "s.state.safetensors"
    path.write_bytes(save({"x": np.zeros(1, np.float32)},
                          metadata={"format": ckpt.STATE_FORMAT, "state": state}))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_state(str(path))


@pytest.mark.parametrize("content", [
    "{", "[]", '{"weights": 3, "state": "s", "graph_hash": "h"}', '{"weights": "w"}',
])
def test_a_malformed_latest_json_is_a_checkpoint_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "latest.json"
    path.write_text(content)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.read_pointer(str(path))


# ---- the memory limit -----------------------------------------------------------------------


def test_the_default_memory_limit_is_the_machines_memory() -> None:
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert resources.machine_memory() == physical
    too_big = int(physical / 4 / 3) + 1  # parameters alone just over the machine's memory
    source = f"""model Big {{
    input ids : int32[B]
    inference output h = Embedding({too_big}, 3)(ids)
}}"""
    with pytest.raises(graphdsl.GraphdslError) as info:
        graphdsl.compile(source)
    assert [d.code for d in info.value.diagnostics] == ["memory-limit"]
    assert "KiB" not in str(info.value)  # the machine's memory is shown rounded, in GiB
    compile_text(source, memory_limit=64 * 1024**4)  # an explicit limit still rules
