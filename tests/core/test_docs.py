"""docs/ tells the truth: its generated parts are current and every example does what the
page says (compiles clean, or produces exactly the diagnostic code it is marked with)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from graphdsl import docgen
from graphdsl.errorcodes import CODES

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.md"))


def section(page: str, code: str) -> str:
    """The text of `## code` in a page, up to the next `## ` heading."""
    text = (DOCS / page).read_text("utf-8")
    match = re.search(rf"^## {re.escape(code)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"{page} has no section `## {code}`"
    return match.group(1)


def test_ops_md_is_generated_from_the_registry() -> None:
    assert (DOCS / "ops.md").read_text("utf-8") == docgen.ops_markdown(), \
        "docs/ops.md is stale: run `python -m graphdsl.docgen`"


def test_generated_regions_and_outputs_are_current() -> None:
    stale = [p.name for p in docgen.stale_files(DOCS)]
    assert not stale, f"stale: {stale}; run `python -m graphdsl.docgen`"


@pytest.mark.parametrize("block", docgen.gdl_blocks(DOCS), ids=lambda b: b.where)
def test_gdl_block_compiles_clean_or_as_expected(block: docgen.Block) -> None:
    assert docgen.example_problems(block, EXAMPLES) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_output_of_a_file_produces_its_expected_code(page: Path) -> None:
    assert docgen.output_expectation_problems(page, EXAMPLES) == []


def test_the_pages_have_gdl_examples() -> None:
    """The parametrised test above must not pass by finding nothing."""
    pages = {b.page.name for b in docgen.gdl_blocks(DOCS)}
    assert {"tutorial.md", "language.md", "errors.md"} <= pages


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_has_a_section_with_an_example(code: str) -> None:
    text = section("errors.md", code)
    markers = re.findall(r"^<!-- expect: ([\w-]+) -->$", text, flags=re.M)
    if "<!-- runtime -->" in text:
        assert not markers, f"`{code}` is marked runtime but has a compile example"
        return
    assert markers, f"the section `{code}` has no `<!-- expect: {code} -->` example"
    assert set(markers) == {code}, f"the section `{code}` expects {markers}"


def test_errors_md_has_no_section_for_an_unknown_code() -> None:
    text = (DOCS / "errors.md").read_text("utf-8")
    after_index = text.split("## All codes", 1)[1]
    headings = re.findall(r"^## (.+)$", after_index, flags=re.M)
    assert [h for h in headings if h not in CODES] == []
    assert headings == list(CODES), "sections should follow the order of errorcodes.CODES"


def test_every_tutorial_file_is_shown_verbatim_in_the_tutorial() -> None:
    shown = {b.markers.get("file") for b in docgen.blocks(DOCS / "tutorial.md")}
    files = {p.name for p in EXAMPLES.glob("tutorial_*.gdl")}
    assert files, "docs/examples/ has no tutorial files"
    assert files <= shown, f"not in tutorial.md: {sorted(files - shown)}"


def test_every_example_file_is_used_by_a_page() -> None:
    used = {value for page in PAGES for b in docgen.blocks(page)
            for key, value in b.markers.items() if key in ("file", "output") and value}
    imported = {m for page in PAGES for b in docgen.blocks(page) if b.lang == "gdl"
                for m in re.findall(r'"([\w.-]+\.gdl)"', b.text)}
    orphans = {p.name for p in EXAMPLES.iterdir()} - used - imported
    assert not orphans, f"docs/examples files no page uses: {sorted(orphans)}"


# --- the checks themselves can fail ----------------------------------------------------------

BROKEN_PAGE = """\
# A page

```gdl
model M {
    input x : float32[B, 4]
    inference output y = Dense(2)(z)
}
```

<!-- expect: shape-mismatch -->
```gdl
model M {
    input x : float32[B, 4]
    inference output y = Dense(2)(z)
}
```

<!-- file: tutorial_classifier.gdl -->
```gdl
model M {
    input x : float32[B, 4]
    inference output y = x
}
```

<!-- output -->
```text
stale
```
"""


def test_a_broken_block_without_a_marker_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(BROKEN_PAGE, "utf-8")
    unmarked, wrong_code, not_a_copy = [b for b in docgen.blocks(page) if b.lang == "gdl"]
    assert any("expected a clean compile, got unknown-name" in p
               for p in docgen.example_problems(unmarked, EXAMPLES))
    assert any("expected exactly [shape-mismatch], got unknown-name" in p
               for p in docgen.example_problems(wrong_code, EXAMPLES))
    assert any("not a verbatim copy" in p for p in docgen.example_problems(not_a_copy, EXAMPLES))


def test_refresh_fills_an_output_block_with_the_compiler_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(BROKEN_PAGE, "utf-8")
    refreshed = docgen.refresh_page(page, EXAMPLES)
    assert "stale" not in refreshed
    assert "model M\n" in refreshed and "  outputs: y: float32[B, 4]\n" in refreshed


def test_check_mode_fails_on_a_stale_file_and_passes_after_writing(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLES / "tutorial_classifier.gdl", docs / "examples")
    (docs / "ops.md").write_text("# out of date\n", "utf-8")
    assert docgen.main(["--check", "--docs", str(docs)]) == 1
    assert (docs / "ops.md").read_text("utf-8") == "# out of date\n", "--check changed a file"
    assert docgen.main(["--docs", str(docs)]) == 0
    assert docgen.main(["--check", "--docs", str(docs)]) == 0
    assert (docs / "ops.md").read_text("utf-8") == docgen.ops_markdown()


def test_ops_md_covers_every_op_and_spec() -> None:
    from graphdsl.ops import all_ops
    from graphdsl.ops.specs import SPEC_TABLES

    text = docgen.ops_markdown()
    for op in all_ops():
        assert f"| `{op.name}` |" in text, op.name
    for specs in SPEC_TABLES.values():
        for name in specs:
            assert f"| `{name}` |" in text, name


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text("utf-8"), flags=re.M | re.S)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    """Relative links of a page to a file that does not exist or a heading it lacks."""
    text = re.sub(r"^```.*?^```", "", page.read_text("utf-8"), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for target in re.findall(r"(?<!\\)\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        missing_heading = bool(anchor) and linked.suffix == ".md" and anchor not in anchors(linked)
        if not linked.exists() or missing_heading:
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_and_headings_that_exist(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#nothing) [gone](missing.md) "
                    "[`code`](page.md#title)\n", "utf-8")
    assert broken_links(page) == ["#nothing", "missing.md"]


def test_github_anchor_matches_githubs_rule() -> None:
    assert github_anchor("6. Masks, and losses with `where`") == "6-masks-and-losses-with-where"
    assert github_anchor("Blocks, repeat and models as layers") == \
        "blocks-repeat-and-models-as-layers"
