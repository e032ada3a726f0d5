"""The documents a user reads first: the README's tour runs as written and prints what it
shows, and every file of the repository that README.md, CONTRIBUTING.md and
benchmarks/README.md name exists."""

import doctest
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "CONTRIBUTING.md", "benchmarks/README.md"]
# what the documents say the programs write (not in a clean clone)
WRITTEN = {"examples/train_digits.png", "benchmarks/results/", ".venv"}


def test_the_readme_tour_prints_what_it_shows():
    failures, attempted = doctest.testfile(str(ROOT / "README.md"), module_relative=False,
                                           optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert attempted >= 10 and failures == 0


def _paths(text):
    """Backticked words that name a file or folder of the repository: with a slash and a
    first part that is a top-level entry, or a top-level file's name."""
    top = {p.name for p in ROOT.iterdir()}
    for word in re.findall(r"`([^`\s]+)`", text):
        word = word.rstrip(".,:;)")
        if any(c in word for c in "<>*$[]'\"") or word.startswith(("../", "-")):
            continue
        if word.split("/")[0] in top and ("/" in word or word in top):
            yield word


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_file_a_document_names_exists(document):
    named = set(_paths((ROOT / document).read_text()))
    assert len(named) >= 3
    missing = sorted(p for p in named - WRITTEN if not (ROOT / p).exists())
    assert missing == [], f"{document} names files the repository does not have: {missing}"
