"""The docs' settings tables match the controller's settings table (config.py, helptext.py)."""

from __future__ import annotations

import re
from pathlib import Path

from mqtt_controller import config, helptext

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| `([A-Z_]+)` \|([^|]*)\|", re.M)


def documented(path: str) -> dict[str, str]:
    """key -> default column of the doc's settings tables (backticks dropped)."""
    text = (ROOT / path).read_text()
    return {key: default.replace("`", "").strip() for key, default in ROW.findall(text)}


def test_readme_documents_every_setting_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    readme = documented("README.md")
    for row in config.CONTROLLER:
        assert row[0] in readme, row[0]
        assert readme[row[0]] == helptext.default_text(row), row[0]
    for row in config.BOARD:  # described in "Flash an ESP32 basket"
        assert "`%s`" % row[0] in text, row[0]
    assert "make run" in text and "make test" in text


def test_hardware_doc_documents_every_rfid_setting() -> None:
    hardware = documented("docs/hardware.md")
    for row in config.RFID:
        assert row[0] in hardware, row[0]
        assert hardware[row[0]] == helptext.default_text(row), row[0]
    for row in config.CONTROLLER:  # ITEM_SOURCE and DISPLAY are there too
        if row[0] in hardware:
            assert hardware[row[0]] == helptext.default_text(row), row[0]
