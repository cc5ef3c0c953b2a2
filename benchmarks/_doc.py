"""Write a generated block into its section of docs/benchmarks.md, leaving the rest alone."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_block(section: str, begin: str, end: str, block: str, doc: Path = DOC) -> None:
    """Replace the text between `begin` and `end`, or put `block` at the top of `## section`."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    heading = f"\n## {section}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif heading in text:
        head, tail = text.split(heading, 1)
        text = head + heading + "\n" + block + "\n" + tail
    else:
        text = text.rstrip("\n") + "\n" + heading + "\n" + block + "\n"
    doc.write_text(text)
