"""The analyst dashboard: an ASGI app over a surveil DuckDB store.

DuckDB allows one writing process per database file, so the app never opens the file
itself: it is given a connection factory.  In daemon mode ``surveil run`` hosts it in the
same process with cursors of the store's own connection (``store.con.cursor``), so it
sees every committed alert at once; offline ``surveil dashboard --db FILE`` opens the
file and passes that connection's ``cursor``.  Each request takes a fresh cursor and
closes it.

Pages: the alert blotter (filters, sort, live refresh from ``/api/alerts``), an alert's
detail (price path on every venue with the evidence marked, order lifecycle, evidence,
parameters, disposition form and audit trail), an owner's accounts, links and alerts, the
audit log with its hash-chain verification, a read-only SQL console, and case export.

Access: :func:`serve` binds to 127.0.0.1 unless told otherwise and refuses any other
address without a token; with a token every request must carry it (``Authorization:
Bearer``, the ``surveil_token`` cookie, or ``?token=`` once, which sets the cookie).
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

import dashboards
from dashboards import audit, console, export, queries
from dashboards.render import render

TOKEN_COOKIE = "surveil_token"
ACTOR_COOKIE = "surveil_analyst"
REFRESH_MS = 5000


class UnsafeBindError(ValueError):
    """Serving beyond this machine without a token."""


def create_app(connect: Callable[[], duckdb.DuckDBPyConnection], *, token: str | None = None,
               archive_dir: str | Path | None = None, db_label: str = "", refresh_ms: int = REFRESH_MS) -> Starlette:
    """The dashboard over the store that ``connect()`` opens (a new cursor per call).

    ``archive_dir``: read archived events from this Parquet archive instead of the
    store's ``trades``/``orders``/``quotes`` views (for a database whose archive moved).
    """
    src = queries.Sources(archive_dir)
    triage_cache = queries.TriageCache()  # the scores outlive a request: the live refresh asks every few seconds
    con = connect()
    try:
        audit.ensure_tables(con)
    finally:
        con.close()

    def db(fn, *args, **kw):
        """Run fn(cursor, ...) off the event loop on a fresh cursor."""
        def work():
            c = connect()
            try:
                c.execute("SET TimeZone = 'UTC'")  # the cursor's own session: times shown in UTC
                return fn(c, *args, **kw)
            finally:
                c.close()
        return run_in_threadpool(work)

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("error", None)
        ctx.setdefault("message", None)
        return HTMLResponse(render(name, root=request.scope.get("root_path", ""), db_label=db_label,
                                   actor=request.cookies.get(ACTOR_COOKIE, ""), **ctx), status_code=status)

    # -- blotter ------------------------------------------------------------------------------
    def _filters(request: Request) -> tuple[dict, str, bool]:
        q = request.query_params
        filters = {k: (q.get(k) or "").strip() or None for k in queries.FILTERS}
        sort = q.get("sort") if q.get("sort") in queries.SORTS else "time"
        return filters, sort, q.get("dir", "desc") != "asc"

    async def blotter(request: Request):
        filters, sort, desc = _filters(request)
        def read(c):
            tri = triage_cache.get(c)
            return queries.blotter(c, filters, sort, desc, triage=tri), queries.filter_choices(c), tri

        try:
            (rows, total), choices, tri = await db(read)
            error = None
        except ValueError as e:  # a time filter that is not a time
            rows, total, error = [], 0, f"bad filter: {e}"
            choices, tri = await db(lambda c: (queries.filter_choices(c), triage_cache.get(c)))

        def query_for(**change):
            cur = {k: v for k, v in {**filters, "sort": sort, "dir": "desc" if desc else "asc"}.items() if v}
            if "sort" in change:  # clicking the sorted column flips its direction
                cur["dir"] = "asc" if change["sort"] == sort and desc else "desc"
            cur.update(change)
            return urllib.parse.urlencode(cur)

        return page(request, "blotter.html", page="blotter", rows=rows, total=total, filters=filters, choices=choices,
                    sort=sort, desc=desc, query_for=query_for, refresh_ms=refresh_ms, error=error, generated=_now(),
                    triage=tri)

    async def api_alerts(request: Request):
        filters, sort, desc = _filters(request)
        def read(c):
            tri = triage_cache.get(c)
            return queries.blotter(c, filters, sort, desc, triage=tri), tri

        try:
            (rows, total), tri = await db(read)
        except ValueError as e:
            return JSONResponse({"error": f"bad filter: {e}"}, status_code=400)
        for r in rows:
            r["status_label"] = audit.STATUS_LABELS.get(r["status"], r["status"])
        return JSONResponse({"rows": rows, "total": total, "generated": _now(),
                             "triage": {"learnt_from": tri.learnt, "summary": tri.summary}})

    # -- one alert ----------------------------------------------------------------------------
    def _detail(c, alert_id: str):
        d = queries.alert_detail(c, src, alert_id)
        if d is None:
            return None
        price, life = export.alert_charts(d)
        return d, price, life, audit.audit_entries(c, alert_id)

    async def alert_page(request: Request, error: str | None = None, note: str = "", status: int = 200):
        alert_id = request.path_params["alert_id"]
        found = await db(_detail, alert_id)
        if found is None:
            return page(request, "message.html", 404, title="No such alert", text=f"No alert {alert_id!r} in this store.")
        d, price, life, trail = found
        return page(request, "alert.html", status, page="alert", d=d, price_svg=price, lifecycle_svg=life, audit=trail,
                    ev_columns=["time"] + d.evidence_columns, error=error, note=note,
                    message="disposition recorded" if request.query_params.get("recorded") else None)

    async def disposition(request: Request):
        alert_id = request.path_params["alert_id"]
        form = await _form(request)
        actor, note, to = form.get("actor", ""), form.get("note", ""), form.get("to_status", "")
        try:
            await db(audit.record_disposition, alert_id, to, actor=actor, note=note, check_alert=True)
        except audit.DispositionError as e:
            if _wants_json(request):
                return JSONResponse({"error": str(e)}, status_code=400)
            return await alert_page(request, error=str(e), note=note, status=400)
        if _wants_json(request):
            return JSONResponse({"ok": True, "alert_id": alert_id, "status": to})
        resp = RedirectResponse(f"{request.scope.get('root_path', '')}/alert/{alert_id}?recorded=1#alert-audit", 303)
        resp.set_cookie(ACTOR_COOKIE, actor.strip(), max_age=30 * 86400, httponly=True, samesite="strict")
        return resp

    # -- owners, audit ------------------------------------------------------------------------
    async def owner_page(request: Request):
        o = await db(queries.owner_view, src, request.path_params["owner"])
        return page(request, "owner.html", 200 if o["known"] else 404, page="owner", o=o)

    async def audit_page(request: Request):
        alert_id = request.query_params.get("alert_id") or None
        entries, chain = await db(lambda c: (audit.audit_entries(c, alert_id, limit=2000), audit.verify_audit_chain(c)))
        return page(request, "audit.html", page="audit", entries=entries, chain=chain, alert_id=alert_id)

    async def api_verify(request: Request):
        chain = await db(audit.verify_audit_chain)
        return JSONResponse({"ok": chain.ok, "entries": chain.entries, "head": chain.head, "broken_at": chain.broken_at,
                             "reason": chain.reason})

    # -- SQL console --------------------------------------------------------------------------
    async def sql_page(request: Request):
        form = await _form(request) if request.method == "POST" else dict(request.query_params)
        saved = form.get("saved") or None
        query, wanted = form.get("query", ""), []
        error, result = None, None
        if saved:
            try:
                saved_sql, wanted, _ = dashboards.saved(saved)
                query = query or saved_sql
            except ValueError as e:
                error = str(e)
        params = {p: form.get(f"p_{p}", "") for p in wanted}
        if query.strip() and not error and (request.method == "POST" or all(params.values()) and wanted):
            try:
                result = await db(console.run_query, query, params or None)
            except console.ReadOnlyError as e:
                error = str(e)
        if _wants_json(request):
            if error:
                return JSONResponse({"error": error}, status_code=400)
            return JSONResponse({"columns": result.columns, "rows": [[_jsonable(v) for v in r] for r in result.rows],
                                 "truncated": result.truncated} if result else {"columns": [], "rows": []})
        saved_list = [(n, dashboards.saved(n)[2]) for n in dashboards.list_saved()]
        return page(request, "sql.html", 400 if error else 200, page="sql", query=query, result=result, error=error,
                    saved=saved, saved_params=wanted, params=params, saved_list=saved_list,
                    allowed="SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN; one statement")

    # -- export -------------------------------------------------------------------------------
    async def export_case(request: Request):
        form = await _form(request, multi=True) if request.method == "POST" else None
        getlist = (lambda k: form.get(k, [])) if form is not None else request.query_params.getlist
        ids = [i for raw in getlist("ids") for i in raw.split(",") if i.strip()]
        fmt = (getlist("format") or ["zip"])[0]
        actor = request.cookies.get(ACTOR_COOKIE, "")
        try:
            if fmt == "html":
                html = await db(export.report_html, src, ids, actor=actor, db_label=db_label)
                return HTMLResponse(html)
            files = await db(export.case_files, src, ids, actor=actor, db_label=db_label)
        except ValueError as e:
            return page(request, "message.html", 400, title="Nothing exported", text=str(e))
        name = f"case-{ids[0][:12]}{'-and-' + str(len(ids) - 1) + '-more' if len(ids) > 1 else ''}.zip"
        return Response(export.zip_bytes(files), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def health(request: Request):
        return PlainTextResponse("ok")

    routes = [
        Route("/", blotter), Route("/api/alerts", api_alerts),
        Route("/alert/{alert_id}", alert_page), Route("/alert/{alert_id}/disposition", disposition, methods=["POST"]),
        Route("/owner/{owner:path}", owner_page), Route("/audit", audit_page), Route("/api/audit/verify", api_verify),
        Route("/sql", sql_page, methods=["GET", "POST"]), Route("/export", export_case, methods=["GET", "POST"]),
        Route("/healthz", health),
    ]
    app = Starlette(routes=routes)
    if token:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


class _TokenMiddleware:
    """Every request carries the token; ``?token=`` once sets a cookie so links keep working."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given_q = request.query_params.get("token")
        auth = request.headers.get("authorization", "")
        given = (auth[7:] if auth.lower().startswith("bearer ") else None) or request.cookies.get(TOKEN_COOKIE) or given_q
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            resp = PlainTextResponse("401: this dashboard needs its access token "
                                     "(Authorization: Bearer …, or open it once with ?token=…)", status_code=401)
            return await resp(scope, receive, send)
        if given_q:  # set the cookie, and drop the token from the address bar
            rest = urllib.parse.urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            resp = RedirectResponse(scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else ""), 303)
            resp.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token.

    >>> check_bind("127.0.0.1", None); check_bind("localhost", None); check_bind("0.0.0.0", "s3cret")
    >>> check_bind("0.0.0.0", None)
    Traceback (most recent call last):
    ...
    dashboards.app.UnsafeBindError: refusing to serve the dashboard on 0.0.0.0 without a token: anyone who can reach it could read every alert and record dispositions; give --token (or bind to 127.0.0.1)
    """
    if token:
        return
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return
    except ValueError:
        pass  # a host name other than localhost may resolve anywhere: not loopback
    raise UnsafeBindError(f"refusing to serve the dashboard on {host} without a token: anyone who can reach it could "
                          f"read every alert and record dispositions; give --token (or bind to 127.0.0.1)")


def serve(app, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, log_level: str = "warning") -> None:
    """Run the app with uvicorn (blocking).  ``token`` here must match the one the app was created with."""
    check_bind(host, token)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """The app served by uvicorn on a thread of a process that does other work (``surveil run``)."""

    def __init__(self, app, host: str, port: int, token: str | None = None, log_level: str = "warning"):
        check_bind(host, token)
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        # uvicorn captures signals only on the main thread: SIGTERM stays the daemon's
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(app, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> BackgroundServer:
    return BackgroundServer(app, host, port, token)


# -- helpers ----------------------------------------------------------------------------------
async def _form(request: Request, multi: bool = False) -> dict:
    """An urlencoded form body (parsed here: no python-multipart dependency for plain forms)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        import orjson

        data = orjson.loads(body or "{}")
        return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()} if multi else data
    parsed = urllib.parse.parse_qs(body, keep_blank_values=True)
    return parsed if multi else {k: v[-1] for k, v in parsed.items()}


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or \
        request.headers.get("content-type", "").startswith("application/json")


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, datetime):
        return queries.fmt_ts(v)
    return str(v)


def _now() -> str:
    return queries.fmt_ts(datetime.now(timezone.utc))
