# Start-up: settings -> (cfg, Runtime). The settings table (config.py) and the saved remote
# configuration are read, and config.py released, before the runtime's modules are imported:
# the heap's peak at start-up is the larger of the two phases, not their sum (MicroPython).
import gc

from mqtt_controller import compat


def build(get=None, remote_file=None, flavour="py"):
    """(cfg, Runtime) from settings: get(key) -> value or None; None reads the environment.
    The saved remote configuration (remote_file, default beside CART_STATE_FILE) is laid over
    the settings before the I/O opens (remote.py stays loaded only when there is one).
    flavour: the release files of this basket's updates (a board: mpy). Raises ValueError
    (ConfigError, a bad ITEM_SOURCE / DISPLAY) or OSError (the CA file). config.py and this
    module are released (MicroPython)."""
    from mqtt_controller import config, remote

    cfg = config.load(get)
    del config  # no reference left: release() lets gc free it
    path = remote_file or remote.path_for(cfg)
    rc = remote.Remote(path)
    rc.start(cfg)
    if not rc.rev and rc.error is None:  # no saved set: the runtime loads remote.py when needed
        rc = None
        compat.release("remote")
    del remote
    compat.release("config")
    gc.collect()
    from mqtt_controller.runtime import Runtime, open_io

    src, disp, client = open_io(cfg)
    rt = Runtime(cfg, sources=[src], display=disp, client=client, remote_config=rc,
                 flavour=flavour, remote_file=path)
    compat.release("startup")  # this module too, once the caller lets go of build()
    return cfg, rt
