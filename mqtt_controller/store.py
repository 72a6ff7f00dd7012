# Durable basket state: written atomically (temp file, then rename) on every change and read
# back at boot, so a power cut mid-session loses nothing. A bad file starts the basket idle.
import json

from mqtt_controller import compat, log


def load(path):
    """Returns {"state", "list", "total"} or None (missing or unreadable: logged)."""
    if not path:
        return None
    try:
        with open(path) as f:
            data = json.loads(f.read())
    except OSError:
        return None  # first boot
    except Exception as e:  # corrupt JSON raises ValueError (CPython) or others (MicroPython)
        log.warning("state file %s is corrupt (%s); starting idle", path, e)
        return None
    if not isinstance(data, dict) or data.get("state") not in ("idle", "shopping") \
            or not isinstance(data.get("list"), dict):
        log.warning("state file %s has an unexpected shape; starting idle", path)
        return None
    return data


def save(path, state):
    """Writes the state atomically; raises OSError when the disk refuses (the runtime retries,
    and publishes nothing until the write lands)."""
    if not path:
        return
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
            compat.fsync(f)
        compat.rename(tmp, path)
    except OSError:
        try:
            import os

            os.remove(tmp)  # a half-written temp file would only take more of a full disk
        except (ImportError, AttributeError, OSError):
            pass
        raise
