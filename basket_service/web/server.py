"""Running the dashboard: the listening socket bound first (a taken port is a clear error), then
uvicorn in a thread of its own, so it runs beside the service's loop in `serve --http` and the
same way alone in `web`."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from basket_service.config import Settings
from basket_service.web.access import TOKEN_ENV, Access
from basket_service.web.events import Hub
from basket_service.web.limits import SlowClientGuard
from basket_service.web.routes import create_app

log = logging.getLogger("basket_service.web")


def listen(access: Access) -> socket.socket:
    """Binds the listening socket first, so a taken port is a clear error before anything runs."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(access.host, access.port,
                                                          type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise DashboardError("cannot listen on %s:%d: %s"
                             % (access.host, access.port, e.strerror or e))
    return sock


class DashboardError(RuntimeError):
    """The dashboard cannot run (e.g. its port is taken); the message is safe to show."""


class Dashboard:
    """uvicorn in a thread of its own, so it runs beside the service's loop in `serve --http`
    and the same way alone in `web`. stop() ends the event streams, then the server."""

    def __init__(self, settings: Settings, access: Access) -> None:
        self.access = access
        self.sock = listen(access)
        port = self.sock.getsockname()[1]
        self.access = Access(access.host, port, access.token)
        self.app = create_app(settings, token=access.token)
        self.hub: Hub = self.app.state.hub
        # uvicorn's own start/stop chatter only with LOG_LEVEL=DEBUG; its errors always.
        quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                http=SlowClientGuard, ws="none", timeout_graceful_shutdown=2,
                                log_level=logging.WARNING if quiet else logging.DEBUG)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)
        self.failed = threading.Event()
        self.stopped = threading.Event()

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException:
            log.exception("dashboard stopped on an error")
            self.failed.set()
        finally:
            self.stopped.set()

    def start(self) -> Dashboard:
        self.thread.start()
        note = " (token required: open it once with ?token=<%s>)" % TOKEN_ENV \
            if self.access.token else ""
        log.info("dashboard on %s%s", self.access.url, note)
        return self

    def stop(self) -> None:
        self.hub.close()
        self.app.state.close_shop_feeds()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
