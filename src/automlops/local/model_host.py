"""Local model hosting: endpoints are routes of the local inference server, called over HTTP.

The embedded server listens on a loopback port that every local user can reach, so it answers
only requests carrying a key: the workspace's API key when one is set, else a random token made
when this process starts and known only to its own client (sent as `X-API-Key`).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from automlops.errors import PermanentError

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI


class EmbeddedServer:
    """The inference app on a free loopback port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("embedded inference server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


class LocalModelHost:
    """Endpoint names are `<dataset>/versions/<n>`; calls go over HTTP to a local server.

    `base_url` points at a running `automlops serve` (with `api_key` when it needs one); without
    it an embedded server is started on first use from `app_factory`, requiring `api_key` or,
    lacking one, a per-process random token.
    """

    def __init__(
        self,
        app_factory: Callable[[], FastAPI],
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self._app_factory = app_factory
        self._base_url = base_url
        self._server: EmbeddedServer | None = None
        key = api_key if api_key is not None or base_url is not None else secrets.token_urlsafe(32)
        self._key = key
        self._timeout_s = timeout_s
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        # Made on first use, as the web libraries are imported: commands that never call an
        # endpoint (`automlops predict`, `runs`, ...) start without them.
        with self._lock:
            if self._http is None:
                import httpx

                headers = {} if self._key is None else {"X-API-Key": self._key}
                self._http = httpx.Client(timeout=self._timeout_s, headers=headers)
            return self._http

    def _embedded_app(self) -> FastAPI:
        from automlops.serving.auth import allow_hosts, require_api_key

        app = self._app_factory()
        assert self._key is not None  # always set when no base_url was given
        require_api_key(app, self._key)
        allow_hosts(app, ("127.0.0.1",))  # only ever called by its loopback address
        return app

    def base_url(self) -> str:
        """The server endpoints are called on (starting the embedded one if needed)."""
        if self._base_url is None:
            with self._lock:
                if self._server is None:
                    self._server = EmbeddedServer(self._embedded_app())
                    self._server.start()
                self._base_url = self._server.url
        return self._base_url

    def deploy(self, dataset: str, version: int, artifact_bucket: str, artifact_key: str) -> str:
        endpoint = f"{dataset}/versions/{version}"
        # Loading the version through the server proves it is servable before anyone calls it.
        response = self._client.get(f"{self.base_url()}/endpoints/{endpoint}")
        if response.status_code != 200:
            raise PermanentError(
                f"{artifact_bucket}/{artifact_key}: the server could not load version {version}: "
                f"{response.status_code} {response.text[:300]}"
            )
        return endpoint

    def invoke(self, endpoint: str, body: bytes, *, content_type: str, accept: str) -> bytes:
        response = self._client.post(
            f"{self.base_url()}/endpoints/{endpoint}/invocations",
            content=body,
            headers={"content-type": content_type, "accept": accept},
        )
        if 400 <= response.status_code < 500:
            raise PermanentError(f"endpoint {endpoint} refused the request: {response.text[:300]}")
        response.raise_for_status()  # 5xx: transient, retried by the runtime
        return response.content

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
