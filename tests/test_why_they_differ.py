"""Every ``python`` block of docs/why-they-differ.md runs and its assertions hold.

Each block runs in its own fresh namespace (in this process, so the frameworks are imported
once); a traceback points at the block's lines in the Markdown file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "why-they-differ.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)

#: Topics the guide must cover, each as a section with a snippet (heading words, lower case).
TOPICS = [
    "graph vs eager",
    "autodiff",
    "padding vs packing",
    "debugging",
    "weight layouts",
    "initialisers",
    "lstm biases",
    "masked lstm outputs",
    "sgd momentum under a learning-rate schedule",
    "adam: where epsilon goes",
    "rmsprop and adagrad",
    "learning-rate schedules",
    "gradient clipping",
    "weight decay",
    "mse reduction and broadcasting",
    "weighted mse denominators",
    "cross-entropy from probabilities",
    "cross-entropy weights",
    "tf32",
    "onednn",
    "retracing",
]


def _snippets() -> list[tuple[str, int, str]]:
    """``(section title, first line number, code)`` for every python block."""
    text = DOC.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^## (.+)$", before, re.MULTILINE)
        line = before.count("\n") + 2
        found.append((headings[-1] if headings else "intro", line, match.group(1)))
    return found


SNIPPETS = _snippets()


def test_every_topic_has_a_section_with_a_snippet() -> None:
    titles = [title.lower() for title, _, _ in SNIPPETS]
    missing = [topic for topic in TOPICS if not any(topic in title for title in titles)]
    assert missing == []
    assert len(titles) == len(set(titles)), "one snippet per section"


@pytest.mark.parametrize(
    ("title", "line", "code"),
    SNIPPETS,
    ids=[re.sub(r"\W+", "-", t.lower()) for t, _, _ in SNIPPETS],
)
def test_snippet_runs(both_backends: list[str], title: str, line: int, code: str) -> None:
    pytest.importorskip("keras")
    source = "\n" * (line - 1) + code  # tracebacks show the Markdown line numbers
    namespace: dict[str, object] = {"__name__": f"why_they_differ_line_{line}"}
    exec(compile(source, str(DOC), "exec"), namespace)
