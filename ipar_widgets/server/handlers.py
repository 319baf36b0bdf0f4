"""The REST API under ``<base_url>/ipar/``, behind Jupyter server's authentication.

=========  ==========================================  ==========================================
method     path                                        does
=========  ==========================================  ==========================================
GET        /ipar/clusters                              every cluster of every profile, with activity
POST       /ipar/clusters                              start one: ``{"profile", "n", "cluster_id"?}``
GET        /ipar/clusters/<profile>                    one cluster
DELETE     /ipar/clusters/<profile>                    stop it (every process, its files)
POST       /ipar/clusters/<profile>/engines            add engines: ``{"n"}``
DELETE     /ipar/clusters/<profile>/engines/<id>       stop one engine
GET        /ipar/clusters/<profile>/activity           task counts and each engine's state
=========  ==========================================  ==========================================

A cluster other than the profile's default one is named by the ``cluster_id`` query
argument.  Errors are JSON ``{"message": ..., "reason": ...}`` like the server's own API,
with a 4xx status for a request that cannot be honoured, never a traceback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .._version import __version__
from . import operations as ops
from .service import ClusterService

AUTH_RESOURCE = "ipar"
Handler = Callable[..., Awaitable[None]]


class BaseHandler(APIHandler):
    """JSON in, JSON out; an ``OperationError`` becomes an HTTP error with its message."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> ClusterService:
        service: ClusterService = self.settings["ipar_service"]
        return service

    def cluster_key(self, profile: str) -> tuple[str, str]:
        cluster_id = self.get_query_argument("cluster_id", "")
        return ops.check_profile(profile), ops.check_cluster_id(cluster_id)

    def json_body(self, allowed: set[str], required: set[str]) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise ops.BadInput(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ops.BadInput(f"the request body must be a JSON object, found {body!r}")
        unknown = set(body) - allowed
        if unknown:
            raise ops.BadInput(
                f"unexpected field(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(allowed))}"
            )
        missing = required - set(body)
        if missing:
            raise ops.BadInput(f"missing field(s) {', '.join(sorted(missing))}")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def fail(self, status: int, message: str) -> None:
        """Answer with an error the panel can show as it is."""
        self.set_status(status)
        self.finish(json.dumps({"message": message, "reason": None}))


def api(method: Handler) -> Handler:
    """Require an authenticated, authorized user (token or cookie plus XSRF, as for every
    server endpoint), and answer an ``OperationError`` with its status and message."""

    @functools.wraps(method)
    async def answer(self: BaseHandler, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except ops.OperationError as exc:
            log = self.log.warning if exc.status >= 500 else self.log.info
            log("ipar: %s %s -> %d: %s", self.request.method, self.request.path, exc.status, exc)
            self.fail(exc.status, str(exc))
        except Exception as exc:
            # A bug of ours: the log gets the traceback, the user one line.
            self.log.error(
                "ipar: unexpected error in %s %s",
                self.request.method,
                self.request.path,
                exc_info=True,
            )
            self.fail(
                500,
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(the Jupyter server's log has the details)",
            )

    return web.authenticated(authorized(answer))  # type: ignore[return-value]


class ClustersHandler(BaseHandler):
    @api
    async def get(self) -> None:
        self.reply({"version": __version__, **await self.service.list_clusters()})

    @api
    async def post(self) -> None:
        body = self.json_body({"profile", "n", "cluster_id"}, {"profile", "n"})
        profile = ops.check_profile(body["profile"])
        cluster_id = ops.check_cluster_id(body.get("cluster_id", ""))
        n = ops.check_engine_count(body["n"], minimum=0)
        cluster = await self.service.start(profile, cluster_id, n)
        self.reply(cluster, status=201)


class ClusterHandler(BaseHandler):
    @api
    async def get(self, profile: str) -> None:
        self.reply(await self.service.cluster(*self.cluster_key(profile)))

    @api
    async def delete(self, profile: str) -> None:
        self.reply(await self.service.stop(*self.cluster_key(profile)))


class EnginesHandler(BaseHandler):
    @api
    async def post(self, profile: str) -> None:
        key = self.cluster_key(profile)
        body = self.json_body({"n"}, {"n"})
        n = ops.check_engine_count(body["n"], minimum=1)
        self.reply(await self.service.add_engines(*key, n))


class EngineHandler(BaseHandler):
    @api
    async def delete(self, profile: str, engine_id: str) -> None:
        key = self.cluster_key(profile)
        self.reply(await self.service.stop_engine(*key, ops.check_engine_id(engine_id)))


class ActivityHandler(BaseHandler):
    @api
    async def get(self, profile: str) -> None:
        self.reply(await self.service.activity(*self.cluster_key(profile)))


def setup_handlers(web_app: Any) -> None:
    """Add the ``/ipar/`` routes to the server's tornado application."""
    web_app.settings.setdefault("ipar_service", ClusterService())
    base = url_path_join(web_app.settings["base_url"], "ipar", "clusters")
    profile = r"/(?P<profile>[^/]+)"
    web_app.add_handlers(
        ".*$",
        [
            (base, ClustersHandler),
            (base + profile, ClusterHandler),
            (base + profile + "/engines", EnginesHandler),
            (base + profile + r"/engines/(?P<engine_id>[^/]+)", EngineHandler),
            (base + profile + "/activity", ActivityHandler),
        ],
    )
