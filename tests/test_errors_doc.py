"""Every example in ``docs/errors.md`` raises, on each backend, exactly the class and the
message the page shows (``...`` in a shown message matches any text)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import twinnn as tn

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Example:
    source: str
    error: str | None  # None: a statement that must run without error (a class definition)
    message: str


def _parse() -> tuple[str, list[list[Example]]]:
    setup, blocks = "", []
    for body in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        if ">>> " not in body:
            setup = body
            continue
        examples: list[Example] = []
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            assert lines[i].startswith(">>> "), lines[i]
            source = [lines[i][4:]]
            i += 1
            while i < len(lines) and lines[i].startswith("..."):
                source.append(lines[i][4:])
                i += 1
            if i < len(lines) and not lines[i].startswith(">>> "):
                error, _, message = lines[i].partition(": ")
                examples.append(Example("\n".join(source), error, message))
                i += 1
            else:
                examples.append(Example("\n".join(source), None, ""))
        blocks.append(examples)
    return setup, blocks


SETUP, BLOCKS = _parse()


def test_the_page_has_examples() -> None:
    assert SETUP and sum(e.error is not None for b in BLOCKS for e in b) >= 15


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_error_examples(
    backend: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    tn.seed(0)
    exec(SETUP, namespace)
    for example in BLOCKS[index]:
        if example.error is None:
            exec(example.source, namespace)
            continue
        with pytest.raises(Exception) as info:  # the class is checked by name below
            exec(example.source, namespace)
        assert type(info.value).__name__ == example.error, example.source
        pattern = ".*".join(re.escape(part) for part in example.message.split("..."))
        assert re.fullmatch(pattern, str(info.value), re.DOTALL), (
            f"{example.source}\n  doc: {example.message}\n  got: {info.value}"
        )
