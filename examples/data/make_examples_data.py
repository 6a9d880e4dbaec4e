"""Write the small .npz files the scenario examples (s01-s20) train on.

MAINTAINER TOOL, not run by the tests or the examples, which read the committed files.
It needs numpy only, reads the two bundled real data sets and writes byte-stable
archives (fixed zip timestamps):

    python3 examples/data/make_examples_data.py     # writes examples/data/*.npz below

Where a scenario has a natural data set, it is cut from the bundled real ones:
- lines of the Shakespeare corpus (shakespeare.txt.gz; the plays and their line ranges are
  listed in SOURCES.md), as word ids, labelled with their play or its genre;
- the scikit-learn digits (digits.npz), flattened for the VAE and the GAN.
The rest have no natural data set (a circulant map, noisy labels, sample weights, a
pretraining task): their data is drawn from a stated rule with a fixed seed, so that
there is something real to learn. SOURCES.md has one line per file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 16  # tokens per line sample; shorter lines are padded with 0

# (first line, end line, genre) of each play, in file order (SOURCES.md, "Works included")
PLAYS = [(0, 6691, "tragedy"), (6692, 10753, "tragedy"), (10754, 16758, "tragedy"),
         (16759, 22990, "tragedy"), (22991, 28168, "tragedy"), (28169, 32728, "tragedy"),
         (32729, 39236, "tragedy"), (39237, 45587, "history"), (45588, 50522, "history"),
         (50523, 54672, "comedy"), (54673, 59133, "comedy"), (59134, 63652, "comedy"),
         (63653, 68101, "comedy"), (68102, 71502, "comedy"), (71503, 76253, "comedy"),
         (76254, 80082, "comedy")]
GENRES = {"tragedy": 0, "history": 1, "comedy": 2}


def write_npz(name: str, **arrays: np.ndarray) -> None:
    """np.savez_compressed's format, with fixed timestamps so the bytes are stable."""
    path = HERE / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in arrays.items())
    print(f"{name}: {path.stat().st_size:,} bytes, sha256 {digest}...: {shapes}")


# ---- Shakespeare lines --------------------------------------------------------------------


def spoken_lines() -> list[tuple[list[str], int]]:
    """(words, play index) of every spoken line of at least four words: no titles, speaker
    names (`HAMLET.`), stage directions or act and scene headings."""
    with gzip.open(HERE / "shakespeare.txt.gz", "rt", encoding="ascii") as fh:
        lines = fh.read().splitlines()
    out = []
    for play, (first, end, _) in enumerate(PLAYS):
        for line in lines[first + 1: end]:
            words = line.split()
            if (len(words) < 4 or line.isupper() or line.startswith(("[", "ACT", "SCENE",
                                                                     "Act", "Scene"))):
                continue
            out.append((words, play))
    return out


def word_ids(lines: list[tuple[list[str], int]], vocab: int) -> dict[str, int]:
    """0 is padding, 1 an unknown word, then the most frequent words."""
    counts = Counter(w for words, _ in lines for w in words)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab - 2]
    return {w: i + 2 for i, (w, _) in enumerate(ranked)}


def encode(words: list[str], index: dict[str, int], steps: int = STEPS) -> np.ndarray:
    ids = np.zeros(steps, np.int32)
    for t, w in enumerate(words[:steps]):
        ids[t] = index.get(w, 1)
    return ids


def length_tags(words: list[str], limit: int, steps: int = STEPS) -> np.ndarray:
    """A per-token tag a model can learn from the word alone: its length, capped."""
    tags = np.zeros(steps, np.int32)
    for t, w in enumerate(words[:steps]):
        tags[t] = min(len(w.strip(".,;:!?'")) or 1, limit - 1)
    return tags


def sample(lines: list, plays: set[int] | None, count: int, seed: int) -> list:
    chosen = [x for x in lines if plays is None or x[1] in plays]
    order = np.random.default_rng(seed).permutation(len(chosen))[:count]
    return [chosen[i] for i in sorted(order)]


def make_line_sets(lines: list[tuple[list[str], int]]) -> None:
    genre = np.array([GENRES[p[2]] for p in PLAYS])
    # s16, s20: tragedy (0) or comedy (1) of a line; vocabularies of 1000 and 8000 words.
    picked = sample(lines, {p for p, x in enumerate(PLAYS) if x[2] != "history"}, 3000, 1)
    index = word_ids(lines, 1000)
    write_npz("lines_genre.npz", ids=np.stack([encode(w, index) for w, _ in picked]),
              label=np.array([genre[p] // 2 for _, p in picked], np.int32))
    # bigru_imdb: the same two-way task as IMDB's positive / negative, comedy (1.0) or
    # tragedy (0.0) of a line, over the model's 20,000-word Embedding (0 is padding).
    picked = sample(lines, {p for p, x in enumerate(PLAYS) if x[2] != "history"}, 3000, 5)
    index = word_ids(lines, 20000)
    write_npz("lines_comedy.npz", words=np.stack([encode(w, index) for w, _ in picked]),
              label=np.array([[genre[p] // 2] for _, p in picked], np.float32))
    # s03 (4 plays) and s17 (5 plays): which tragedy a line is from, 200 words.
    index = word_ids(lines, 200)
    for name, plays in (("lines_play4.npz", 4), ("lines_play5.npz", 5)):
        picked = sample(lines, set(range(plays)), 2000, plays)
        write_npz(name, ids=np.stack([encode(w, index) for w, _ in picked]),
                  label=np.array([p for _, p in picked], np.int32))
    # s02: each word's length as its tag (12 tags), and the genre of the line (3 classes).
    picked = sample(lines, None, 3000, 2)
    index = word_ids(lines, 5000)
    write_npz("lines_tagged.npz", ids=np.stack([encode(w, index) for w, _ in picked]),
              tag=np.stack([length_tags(w, 12) for w, _ in picked]),
              label=np.array([genre[p] for _, p in picked], np.int32))
    # s12: words, their length tags (20), the next line as the query; tragedy or comedy.
    pairs = [(lines[i][0], lines[i + 1][0], lines[i][1]) for i in range(len(lines) - 1)
             if lines[i][1] == lines[i + 1][1] and PLAYS[lines[i][1]][2] != "history"]
    order = np.random.default_rng(3).permutation(len(pairs))[:3000]
    pairs = [pairs[i] for i in sorted(order)]
    index = word_ids(lines, 2000)
    write_npz("lines_query.npz", words=np.stack([encode(w, index) for w, _, _ in pairs]),
              tags=np.stack([length_tags(w, 20) for w, _, _ in pairs]),
              query=np.stack([encode(q, index, 8) for _, q, _ in pairs]),
              label=np.array([genre[p] // 2 for _, _, p in pairs], np.int32))
    # s09: a line without its last word, and that word's vector in a fixed random table.
    index = word_ids(lines, 1000)
    table = np.random.default_rng(9).standard_normal((1000, 32))
    table = np.round(table / np.linalg.norm(table, axis=1, keepdims=True), 3).astype(np.float32)
    picked = [x for x in sample(lines, None, 2000, 4) if x[0][-1] in index][:600]
    write_npz("lines_next_vector.npz",
              context=np.stack([encode(w[:-1], index) for w, _ in picked]),
              vector=np.stack([table[index[w[-1]]] for w, _ in picked]))


# ---- digits -------------------------------------------------------------------------------


def make_digit_sets() -> None:
    with np.load(HERE / "digits.npz") as digits:
        images = digits["image"]
    flat = images.reshape(len(images), 64).astype(np.float32)
    write_npz("digits_flat.npz", x=flat)  # s11: the VAE reconstructs digits
    real = flat[:600]
    noise = np.round(np.random.default_rng(14).standard_normal((len(real), 16)), 2)
    write_npz("digits_gan.npz", real=real, noise=noise.astype(np.float32))  # s14: the GAN's real samples


# ---- rules, where no natural data set exists ----------------------------------------------


def make_rule_sets() -> None:
    rng = np.random.default_rng(2024)
    n = 512

    def features(*shape: int) -> np.ndarray:  # two decimals: small files, same task
        return np.round(rng.standard_normal(shape), 2).astype(np.float32)

    # s04: y = C x for the circulant C of (a, b, c) = (0.5, -1, 2), plus a little noise.
    x = features(n, 3)
    a, b, c = 0.5, -1.0, 2.0
    circulant = np.array([[a, b, c], [c, a, b], [b, c, a]], np.float32)
    write_npz("cyclic.npz", x=x, y=(x @ circulant.T + 0.01 * rng.standard_normal((n, 3)))
              .astype(np.float32))
    # s07: 5 classes decided by 3 of the 20 features (a sparse code suffices).
    x = features(n, 20)
    w = np.zeros((20, 5), np.float32)
    w[[2, 7, 11]] = rng.standard_normal((3, 5))
    write_npz("sparse_features.npz", x=x, y=np.argmax(x @ w, axis=1).astype(np.int32))
    # s10: 10 clean classes from a linear rule; 30% of labels flipped to the next class.
    x = features(n, 32)
    clean = np.argmax(x @ rng.standard_normal((32, 10)), axis=1)
    flip = rng.random(n) < 0.3
    write_npz("noisy_labels.npz", x=x, noisy=np.where(flip, (clean + 1) % 10, clean)
              .astype(np.int32))
    # s13: 4 imbalanced classes (70/20/7/3%) and per-sample weights 0, 0.5 or 1.
    x = features(n, 16)
    scores = x @ rng.standard_normal((16, 4)) + np.log([0.7, 0.2, 0.07, 0.03])
    write_npz("weighted.npz", x=x, y=np.argmax(scores, axis=1).astype(np.int32),
              weight=rng.choice(np.array([0.0, 0.5, 1.0], np.float32), n, p=[0.1, 0.3, 0.6]))
    # s15: a 20-way pretraining task and a 3-way task on the same features (its classes
    # are groups of the 20), so a pretrained trunk transfers.
    x = features(n, 32)
    fine = np.argmax(x @ rng.standard_normal((32, 20)), axis=1)
    write_npz("pretrain_20.npz", x=x, y=fine.astype(np.int32))
    write_npz("transfer_3.npz", x=x, y=(fine % 3).astype(np.int32))
    # s19: 16-step series from 50 stations with missing steps, a digit image of the site;
    # the class is the sign pattern of the mean of the first channel over valid steps.
    readings = features(n, STEPS, 6)
    station = rng.integers(0, 50, n).astype(np.int64)
    readings[:, :, 0] += (station[:, None] % 3 - 1) * 0.8
    valid = np.arange(STEPS)[None, :] < rng.integers(4, STEPS + 1, n)[:, None]
    level = (readings[:, :, 0] * valid).sum(1) / valid.sum(1)
    with np.load(HERE / "digits.npz") as digits:
        snapshot = np.round(digits["image"][rng.integers(0, 1797, n)] * 255).astype(np.uint8)
    write_npz("sensors.npz", readings=readings, valid=valid, station=station,
              snapshot=snapshot, label=np.digitize(level, [-0.4, 0.4]).astype(np.int32))


def main() -> None:
    make_line_sets(spoken_lines())
    make_digit_sets()
    make_rule_sets()


if __name__ == "__main__":
    main()
