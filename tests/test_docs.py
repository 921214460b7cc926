"""The README stays a manual and the documentation's links lead somewhere (no JAX needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<(?:img|a)\s[^>]*(?:src|href)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, spaces to hyphens, other
    punctuation but hyphens and underscores dropped."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", prose(page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def targets(page: Path):
    for match in LINK.finditer(prose(page.read_text())):
        target = match.group(1) or match.group(2)
        if not re.match(r"[a-z]+:", target):
            yield target


def test_the_readme_is_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(page):
    broken = []
    for target in targets(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_every_docs_link_in_the_code_has_its_page_and_section():
    missing = [(p.name, page, a) for p in sorted((ROOT / "nst_jax").glob("*.py"))
               for page, a in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", p.read_text())
               if not (ROOT / "docs" / page).exists() or (a and a not in anchors(ROOT / "docs" / page))]
    assert not missing
