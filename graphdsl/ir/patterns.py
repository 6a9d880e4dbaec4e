"""Parameter-name patterns, shared by optimizer groups, freezing and partial restores."""

from __future__ import annotations

import fnmatch


def matches(pattern: str, name: str) -> bool:
    """`*` matches any run of characters, dots included; a pattern without wildcards
    matches that name and everything below it (`encoder` matches `encoder.dense.kernel`)."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")
