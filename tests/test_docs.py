"""The README's configuration table matches the settings the controller knows."""

from __future__ import annotations

import re
from pathlib import Path

from mqtt_controller import helptext

ROOT = Path(__file__).resolve().parent.parent


def test_readme_documents_every_setting_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.M))
    known = {key for key, _, _ in helptext.SETTINGS}
    assert known <= documented, known - documented
    assert "make run" in text and "make test" in text
