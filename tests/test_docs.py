"""The user documentation against the code: the README's configuration defaults, and no internal
references in README.md or docs/."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from taylorseer import TaylorSeerConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
INTERNAL = ("issue #", "ALGORITHM.md", "shared/")  # internal references, or files outside the repo


def readme_defaults() -> dict[str, str]:
    """field -> the default cell of each row of the README's configuration table."""
    text = README.read_text()
    start = text.index("| field | default | meaning |")
    table = text[start : text.index("\n\n", start)]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.MULTILINE)
    return {field: cell.strip() for field, cell in rows}


def test_the_readme_table_gives_each_fields_default():
    declared = {field.name: field.default for field in dataclasses.fields(TaylorSeerConfig)}
    documented = readme_defaults()
    assert len(documented) >= 10, documented  # the table was found
    assert set(documented) <= set(declared), set(documented) - set(declared)  # every row a real field
    for name, cell in documented.items():
        default = declared[name]
        value = cell.split(" = ")[0]  # "`None` = what it stands for"
        assert ast.literal_eval(value.strip("`")) == default, (name, cell, default)


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda path: path.name)
def test_no_internal_references(path):
    text = path.read_text().lower()
    assert not [word for word in INTERNAL if word.lower() in text]
