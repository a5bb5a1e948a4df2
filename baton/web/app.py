"""The status pages as a Starlette app: GET and HEAD only (any other method is 405, before
any route is looked at), behind the web config's basic auth when it has users. Endpoints
are plain functions (Starlette runs them in its thread pool): the ledger's queries are
blocking and short."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from baton.config import Config
from baton.ledger import Ledger
from baton.web import log_files, views
from baton.webauth import Passwords

STATIC = Path(__file__).with_name("static")
LOG_KINDS = ("stdout", "stderr")
TAIL_LINES = 200
MAX_TAIL_LINES = 5000


class ReadOnly:
    """401 without valid credentials (when the web config has users), then 405 for every
    method but GET and HEAD: nothing this server offers writes."""

    def __init__(self, app: ASGIApp, passwords: Passwords | None) -> None:
        self.app, self.passwords = app, passwords

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        # bcrypt takes tens of milliseconds by design: not on the event loop
        if self.passwords is not None and not await run_in_threadpool(
                self.passwords.check, header or None):
            answer: Response = PlainTextResponse("Unauthorized\n", 401, headers={
                "WWW-Authenticate": 'Basic realm="baton", charset="UTF-8"'})
        elif scope["method"] not in ("GET", "HEAD"):
            answer = PlainTextResponse("Method Not Allowed\n", 405,
                                       headers={"Allow": "GET, HEAD"})
        else:
            await self.app(scope, receive, send)
            return
        await answer(scope, receive, send)


MAX_OFFSET = 10**9  # rows skipped at most (a bigger number is no page of any ledger)


def _offset(request: Request) -> int:
    """The page's first row from ``?offset=``: 0 for a value that is not a number."""
    try:
        return min(MAX_OFFSET, max(0, int(request.query_params.get("offset", "0"))))
    except ValueError:
        return 0


def build_app(config: Config, ledger: Ledger, passwords: Passwords | None = None,
              refresh_seconds: float = 30) -> ASGIApp:
    env = Environment(loader=PackageLoader("baton.web"), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    templates = Jinja2Templates(env=env)
    links = views.Links.of(config)
    completion = views.Remembered(ledger.campaign_completion)

    def page(name: str, title: str, build: Callable[[Request], dict[str, Any]]
             ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            context = build(request)
            return templates.TemplateResponse(request, f"{name}.html", {
                **context, "title": title, "nav": name, "refresh": refresh_seconds,
                "root": request.scope.get("root_path", ""),
                "updated": views.stamp(views.now()) + " UTC"})
        return endpoint

    def log_tail(request: Request) -> Response:
        job_id, kind = request.path_params["job_id"], request.path_params["kind"]
        row, src = _log(ledger, job_id, kind)
        if src is None:
            return _missing(row, job_id, kind)
        try:
            lines = min(MAX_TAIL_LINES, max(1, int(request.query_params.get("lines",
                                                                             TAIL_LINES))))
        except ValueError:
            lines = TAIL_LINES
        with src:
            text, more = log_files.tail(src, lines)
        return templates.TemplateResponse(request, "log.html", {
            "title": f"job {job_id} {kind}", "nav": "log", "refresh": refresh_seconds,
            "root": request.scope.get("root_path", ""), "job": row, "kind": kind,
            "path": getattr(row, f"{kind}_path"), "text": text, "more": more, "lines": lines,
            "updated": views.stamp(views.now()) + " UTC"})

    def log_download(request: Request) -> Response:
        job_id, kind = request.path_params["job_id"], request.path_params["kind"]
        row, src = _log(ledger, job_id, kind)
        if src is None:
            return _missing(row, job_id, kind)
        return StreamingResponse(log_files.chunks(src), media_type="text/plain; charset=utf-8",
                                 headers={"Content-Disposition": "attachment; filename="
                                          f'"{job_id}.{kind}.log"'})

    def report(request: Request) -> Response:
        """An analysis output the ledger knows, or a file of the same analysis the report
        links to relatively (its figures): never another path."""
        known = ledger.analysis_files(request.path_params["output"])
        if known is None:
            return PlainTextResponse("no such analysis output\n", 404)
        path, outputs = known
        rel = request.path_params.get("rel")
        if rel is not None:
            wanted = str(Path(path).parent / rel)
            path = next((p for p in outputs if p == wanted), "")
        if not path or not Path(path).is_file():
            return PlainTextResponse("not on the drive (or not an output of this analysis)\n",
                                     404)
        return FileResponse(path)

    routes = [
        Route("/", lambda request: RedirectResponse(
            f"{request.scope.get('root_path', '')}/experiments", 302)),
        Route("/healthz", lambda request: PlainTextResponse("OK\n")),
        Route("/experiments", page("experiments", "Experiments", lambda r: views.experiments(
            ledger, links, r.query_params, _offset(r)))),
        Route("/queue", page("queue", "Queue", lambda r: views.queue(ledger, _offset(r)))),
        Route("/failures", page("failures", "Failures and supervision",
                                lambda r: views.failures(ledger, _offset(r)))),
        Route("/status", page("status", "Status reports",
                              lambda r: views.status(ledger, config, _offset(r)))),
        Route("/campaigns", page("campaigns", "Campaigns", lambda r: views.campaigns(
            ledger, completion, r.query_params.get("all") == "1"))),
        Route("/logs/{job_id}/{kind:str}", log_tail),
        Route("/logs/{job_id}/{kind:str}/download", log_download),
        Route("/reports/{output:int}", report),
        Route("/reports/{output:int}/{rel:path}", report),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return ReadOnly(Starlette(routes=routes), passwords)


def _log(ledger: Ledger, job_id: str, kind: str) -> tuple[Any, Any]:
    row = ledger.job_log_paths(job_id) if kind in LOG_KINDS else None
    path = getattr(row, f"{kind}_path", None) if row is not None else None
    return row, log_files.opened(Path(path)) if path else None


def _missing(row: Any, job_id: str, kind: str) -> Response:
    if row is None:
        return PlainTextResponse(f"job {job_id} is not in the ledger\n", 404)
    if not getattr(row, f"{kind}_path", None):
        return PlainTextResponse(f"job {job_id}: the ledger holds no {kind} path\n", 404)
    return PlainTextResponse(f"job {job_id} ({row.state}): its {kind} "
                             f"{getattr(row, f'{kind}_path')} is not on the drive (yet)\n", 404)
