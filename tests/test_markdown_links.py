"""Every relative link and anchor in the repository's Markdown resolves.

For each tracked ``*.md`` file (README.md, docs/, configs/, the package's READMEs, benchmarks/results/):
``[text](target)`` and ``![alt](target)`` links that are not URLs must name an existing file or
directory (relative to the Markdown file), and a ``#anchor`` (on its own or after a ``.md`` path) must
be the GitHub slug of a heading of that file. Links inside code blocks and code spans are not links.
"""
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    return sorted(REPO_ROOT / p for p in out if (REPO_ROOT / p).is_file())


def _prose_lines(text: str):
    """(line number, line, line with code spans blanked) outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            yield number, line, re.sub(r"`[^`]*`", "``", line)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    seen, found = {}, set()
    for _, line, _ in _prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path):
    problems = []
    for number, _, prose in _prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # a URL (http:, https:, mailto:, ...)
            file_part, _, anchor = target.partition("#")
            where = f"{path.relative_to(REPO_ROOT)}:{number}: {target}"
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{where}: {file_part} does not exist")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(REPO_ROOT)}")
    return problems


def test_there_is_markdown_to_check():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "configs/halonet/README.md", "docs/design.md"} <= names, names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_and_anchors_resolve(path):
    problems = broken_links(path)
    assert problems == [], "\n".join(problems)


def test_readme_has_at_most_200_lines():
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)


def test_the_checker_finds_broken_links_and_anchors(tmp_path, monkeypatch):
    import tests.test_markdown_links as module

    monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## The `check` command\n\n## The `check` command\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/page.md) [ok](docs/page.md#the-check-command) [ok](docs/page.md#the-check-command-1)\n"
        "[ok](#title) [url](https://example.com/x.md#nothing)\n"
        "# Title\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#nope) ![img](docs/none.png)\n"
        "```\n[in code](docs/missing.md)\n```\n"
        "`[in a span](docs/missing.md)`\n")
    problems = broken_links(tmp_path / "README.md")
    assert problems == [
        "README.md:4: docs/missing.md: docs/missing.md does not exist",
        "README.md:4: docs/page.md#nope: no heading with anchor #nope in docs/page.md",
        "README.md:4: docs/none.png: docs/none.png does not exist",
    ], problems
