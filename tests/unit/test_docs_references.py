"""The documents are read without the project's issue tracker: they name what they mean, not an issue number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
READER_FACING = ("*.md", "docs/*.md", "bench/*.md", "clients/*/*.md")
DOCUMENTS = sorted(path for pattern in READER_FACING for path in ROOT.glob(pattern))
ISSUE_NUMBER = re.compile(r"\bissues?[ -]#?\d+", re.IGNORECASE)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_document_refers_the_reader_to_an_issue_number(document):
    found = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(document.read_text().splitlines(), 1)
        if ISSUE_NUMBER.search(line)
    ]
    assert not found, "\n".join(found)
