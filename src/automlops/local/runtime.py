"""The embedded runtime of one workspace: store, queues, registry, host and run log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automlops.config import Settings, resolve_home
from automlops.errors import NotFoundError
from automlops.events import object_created
from automlops.local.model_host import LocalModelHost
from automlops.local.runlog import RunLog
from automlops.local.sqlite_queue import SqliteQueue
from automlops.local.store import DirectoryStore
from automlops.ports import ObjectInfo, Ports
from automlops.registry import Registry
from automlops.routing import Router

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass
class LocalRuntime:
    home: Path
    settings: Settings
    store: DirectoryStore
    queue: SqliteQueue
    registry: Registry
    host: LocalModelHost
    runlog: RunLog
    router: Router

    def ports(self) -> Ports:
        return Ports(store=self.store, queue=self.queue, host=self.host, settings=self.settings)

    def create_app(self) -> FastAPI:
        """The inference app over this workspace's registry."""
        return inference_app(self.store, self.registry, self.settings)

    def notify_created(self, bucket: str, key: str) -> ObjectInfo:
        """Send the ObjectCreated notification of an object already in a bucket, as a put
        through the store would have (for files copied straight into a bucket folder)."""
        info = self.store.head(bucket, key)
        if info is None:
            raise NotFoundError(f"no such object: {bucket}/{key}")
        if self.store.on_created is not None:
            self.store.on_created(info)
        return info

    def close(self) -> None:
        self.host.close()


def inference_app(store: DirectoryStore, registry: Registry, settings: Settings) -> FastAPI:
    """The inference app over a workspace's registry (what its model host serves)."""
    # Imported here: the ML stack is heavy and most CLI commands never serve.
    from automlops.serving.app import create_app
    from automlops.serving.models import ModelCache

    return create_app(
        ModelCache(store, registry), max_body_bytes=settings.max_body_bytes, settings=settings
    )


def open_runtime(
    home: str | Path | None = None,
    *,
    settings: Settings | None = None,
    server_url: str | None = None,
    server_key: str | None = None,
) -> LocalRuntime:
    """Open (creating if needed) the workspace at `home` (`server_url`: a running `automlops
    serve` to deploy through instead of an embedded server, `server_key` its API key)."""
    root = resolve_home(home)
    settings = settings or Settings()
    router = Router(settings)
    queue = SqliteQueue(
        root / "queue.db",
        visibility_timeout_s=settings.visibility_timeout_s,
        max_receives=settings.max_receives,
    )

    def notify(info: ObjectInfo) -> None:
        # Like an S3 bucket notification to SQS: only keys the routing table names.
        trigger = router.match_object(info.bucket, info.key)
        if trigger is not None:
            event = object_created(
                info.bucket,
                info.key,
                size=info.size,
                etag=info.etag,
                configuration_id=f"{trigger.stage.value}-trigger",
            )
            queue.send(settings.queues.events, event.model_dump_json(by_alias=True))

    store = DirectoryStore(root, settings.buckets.all(), on_created=notify)
    registry = Registry(store, settings.buckets.model_output)
    # The host builds the app when it first serves (in-process, behind a per-process token),
    # or never (`server_url`).
    host = LocalModelHost(
        lambda: inference_app(store, registry, settings), base_url=server_url, api_key=server_key
    )
    return LocalRuntime(
        home=root,
        settings=settings,
        store=store,
        queue=queue,
        registry=registry,
        host=host,
        runlog=RunLog(root / "runs.db"),
        router=router,
    )
