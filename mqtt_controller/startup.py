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
    from mqtt_controller.runtime import Runtime

    src, disp, client = open_io(cfg)
    rt = Runtime(cfg, controller=restore(cfg), sources=[src], display=disp, client=client,
                 remote_config=rc, flavour=flavour, remote_file=path)
    compat.release("startup")  # this module too, once the caller lets go of build()
    return cfg, rt


def restore(cfg):
    """The controller from CART_STATE_FILE: idle (with a warning) when the file is missing,
    corrupt or holds entries out of range; a bad file never stops the basket."""
    from mqtt_controller import log, store
    from mqtt_controller.cart import CartError
    from mqtt_controller.controller import Controller

    saved = store.load(cfg.state_file)
    if not saved:
        return Controller(cfg.basket_id)
    try:
        c = Controller(cfg.basket_id, saved["state"], saved.get("list"), saved.get("total"))
    except CartError as e:
        log.warning("state file %s holds a bad cart (%s); starting idle", cfg.state_file, e)
        return Controller(cfg.basket_id)
    log.info("restored %s state with %d item(s) from %s", c.state, c.cart.count(),
             cfg.state_file)
    return c


def open_io(cfg):
    """(item source, display, client) for cfg, each None when not configured (client: the
    built-in one). A module is imported only when its setting asks for it: code costs heap."""
    src = disp = client = None
    if cfg.item_source != "none":
        from mqtt_controller import items

        src = items.open_source(cfg.item_source, cfg.settings)
    if cfg.display != "none":
        from mqtt_controller import display

        disp = display.open_display(cfg.display)
    if cfg.mqtt_client != "builtin":
        from mqtt_controller.umqtt_adapter import client_for

        client = client_for(cfg)
    return src, disp, client
