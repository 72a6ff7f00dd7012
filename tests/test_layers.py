"""Who may import whom (docs/architecture.md, "Module map"): the controller's modules read as
layers, and the dashboard's modules as an order. A new import edge fails here until the map in
the doc and ALLOWED below say it is meant."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Module -> the package modules it may import (at the top, or lazily inside a function).
PURE = {"protocol", "cart", "controller", "packet", "backoff", "yrm100", "presence", "health"}
ALLOWED: dict[str, set[str]] = {
    # base
    "compat": set(),
    "log": {"compat"},
    # pure core: no I/O
    "protocol": {"compat"},
    "cart": {"compat", "protocol"},
    "controller": {"cart", "protocol"},
    "packet": {"compat"},
    "backoff": {"compat"},
    "yrm100": {"compat"},
    "presence": {"yrm100"},
    "health": {"compat"},
    # the link
    "link": {"compat", "packet"},
    "mqtt": {"compat", "link", "packet"},
    "umqtt_adapter": {"link", "packet"},
    "tls": set(),
    # edges: storage, item sources, displays
    "store": {"compat", "log"},
    "serialport": set(),
    "rfid": {"backoff", "compat", "log", "presence", "serialport", "yrm100", "config"},
    "items": {"backoff", "cart", "compat", "log", "rfid"},
    "display": {"compat", "controller", "log", "lcd"},
    "lcd": {"compat", "display", "log"},
    # the shell
    "runtime": {"backoff", "compat", "controller", "log", "packet", "store", "startup",
                "mqtt", "tls", "remote", "health", "otarun"},
    "remote": {"compat", "log", "store", "config"},
    # updates over the air: the agent every turn, the rest only for an update step
    "otarun": {"backoff", "compat", "controller", "log", "otaget"},
    "otaget": {"compat", "log", "ota", "otaboot"},
    "ota": {"otaboot"},
    "otaboot": set(),
    # start-up (config.py is released once the basket runs) and the two entry points
    "config": {"compat", "log", "protocol", "yrm100"},
    "helptext": {"config"},
    "startup": {"cart", "compat", "config", "controller", "display", "items", "log", "remote",
                "runtime", "store", "umqtt_adapter"},
    "__main__": {"compat", "log", "helptext", "startup", "otaboot"},
    "board": {"health", "log", "compat", "boardstart"},
    "boardstart": {"board", "compat", "log", "config", "startup", "otaboot"},
    "__init__": set(),
}
# Imported only inside functions (or at the top of another module of this set), so a basket
# that does not need them never loads them, and config.py can be released after start-up.
LAZY_ONLY = {"config", "runtime", "startup", "boardstart", "remote", "helptext", "lcd", "rfid",
             "items", "display", "mqtt", "tls", "umqtt_adapter", "otarun", "otaget", "ota",
             "otaboot"}
IO_MODULES = {"socket", "select", "os", "machine", "network", "ssl", "termios", "fcntl", "time"}

# The dashboard's modules, in order: each may import only those before it.
WEB_ORDER = ["access", "headers", "limits", "reader", "events", "schemas", "shop_routes", "routes",
             "server"]


def imports(path: Path, package: str) -> tuple[dict[str, bool], set[str]]:
    """({package module: imported at the top?}, other top-level module names)."""
    inner: dict[str, bool] = {}
    other: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                names = [a.name for a in node.names if a.name != "__version__"]
            elif node.module.startswith(package + "."):
                names = [node.module.split(".")[len(package.split("."))]]
            else:
                other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(package + "."):
                    names.append(a.name.split(".")[len(package.split("."))])
                else:
                    other.add(a.name.split(".")[0])
        for n in names:
            inner[n] = inner.get(n, False) or (isinstance(node, ast.stmt) and node.col_offset == 0)
    return inner, other


def test_every_controller_module_is_in_the_map() -> None:
    found = {p.stem for p in (ROOT / "mqtt_controller").glob("*.py")}
    assert found == set(ALLOWED), "add %s to the map (and docs/architecture.md); drop %s" % (
        sorted(found - set(ALLOWED)), sorted(set(ALLOWED) - found))


def test_controller_imports_follow_the_map() -> None:
    wrong = []
    for name, allowed in ALLOWED.items():
        used, other = imports(ROOT / "mqtt_controller" / (name + ".py"), "mqtt_controller")
        for mod, top in used.items():
            if mod not in allowed:
                wrong.append("%s imports %s" % (name, mod))
            elif top and mod in LAZY_ONLY and name not in LAZY_ONLY:
                wrong.append("%s imports %s at the top (only inside a function)" % (name, mod))
        if name in PURE and other & IO_MODULES:
            wrong.append("%s (pure) imports %s" % (name, sorted(other & IO_MODULES)))
    assert not wrong, wrong


def test_dashboard_modules_import_only_earlier_ones() -> None:
    wrong = []
    found = {p.stem for p in (ROOT / "basket_service" / "web").glob("*.py")} - {"__init__"}
    assert found == set(WEB_ORDER), sorted(found ^ set(WEB_ORDER))
    for i, name in enumerate(WEB_ORDER):
        used, _ = imports(ROOT / "basket_service" / "web" / (name + ".py"), "basket_service.web")
        later = set(used) - set(WEB_ORDER[:i])
        if later:
            wrong.append("web.%s imports %s" % (name, sorted(later)))
        service, _ = imports(ROOT / "basket_service" / "web" / (name + ".py"), "basket_service")
        if "service" in service or "cli" in service:
            wrong.append("web.%s imports the service or the CLI" % name)
    assert not wrong, wrong
