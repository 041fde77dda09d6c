"""Write a benchmark's section of docs/benchmarks.md, leaving the other sections alone."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(text: str, docs: Path = DOCS) -> None:
    """Replace the section whose ``## `` heading is the first line of ``text``, or append it."""
    heading = text.lstrip().splitlines()[0]
    if not heading.startswith("## "):
        raise ValueError(f"a section must start with its '## ' heading, got {heading!r}")
    doc = docs.read_text(encoding="utf-8") if docs.exists() else "# igikit benchmarks\n"
    body = text.strip("\n") + "\n"
    if heading in doc:
        start = doc.index(heading)
        nxt = doc.find("\n## ", start + len(heading))
        doc = doc[:start] + body + ("" if nxt < 0 else "\n" + doc[nxt + 1 :])
    else:
        doc = doc.rstrip("\n") + "\n\n" + body
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(doc, encoding="utf-8")
