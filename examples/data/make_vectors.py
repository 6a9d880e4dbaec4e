"""Write ``vectors.npy``: 200 x 16 float32 "pretrained" word vectors for the S3 and S17
examples (``from_file("data/vectors.npy")``).

MAINTAINER TOOL, not run by the tests. The vectors are synthetic: standard normal draws
from ``numpy.random.default_rng(20240611)``, scaled by 0.1 and rounded to 4 decimals
(the checked-in file was made with numpy 2.4.6; see SOURCES.md for its sha256):

    python3 examples/data/make_vectors.py          # writes examples/data/vectors.npy
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

ROWS, DIM, SEED = 200, 16, 20240611


def make_vectors() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return np.round(0.1 * rng.standard_normal((ROWS, DIM)), 4).astype(np.float32)


def main() -> None:
    out = Path(__file__).with_name("vectors.npy")
    np.save(out, make_vectors())
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out.name}: {out.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
