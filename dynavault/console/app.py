"""The web console at ``/console/``: an ASGI handler the server's app hands every ``/console`` request to.

Every page acts as the signed-in principal through ``Calls`` (the API's own handlers), so authorization and
the audit trail are the API's; the Caller's user agent names the console. Forms are plain HTML posts, each
carrying the session's CSRF token; nothing runs without a session but the sign-in page and static files.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import dynavault
from dynavault.caller import Caller
from dynavault.errors import AWSError, IntegrityError

from . import format as fmt
from .calls import Calls, Invoke
from .http import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    BodyTooLarge,
    Request,
    Response,
    parse_cookies,
    parse_query,
    read_form,
    redirect,
    send_response,
    url,
)
from .sessions import Session, SessionStore

log = logging.getLogger("dynavault.console")

USER_AGENT = f"dynavault-console/{dynavault.__version__}"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_STATIC = {"console.css": "text/css; charset=utf-8"}
#: AWS errors -> the HTTP status of the page showing them
_ERROR_STATUS = {"AccessDeniedException": 403, "ResourceNotFoundException": 404, "NotFoundException": 404}


@dataclass
class Page:
    """What a page handler gets: the request, the session, the principal's calls and a renderer."""

    request: Request
    session: Session
    calls: Calls
    console: ConsoleApp

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.console.render(template, status, session=self.session, **context)

    def flash(self, kind: str, message: str) -> None:
        self.session.flash.append((kind, message))

    @property
    def form(self) -> dict[str, str]:
        return self.request.form


PageHandler = Callable[[Page, re.Match], Response]


class ConsoleApp:
    def __init__(self, invoke: Invoke, credentials: Any, sessions: SessionStore, *, enabled: bool,
                 disabled_reason: str = "", connection_key: str = "", default_region: str = "us-east-1",
                 settle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.invoke = invoke
        #: an object with lookup(access_key_id) -> credential (account_id, principal_arn, secret_access_key)
        self.credentials = credentials
        self.sessions = sessions
        self.enabled = enabled
        self.disabled_reason = disabled_reason
        self.connection_key = connection_key
        self.default_region = default_region
        #: waits until what the request wrote is durable (the API's group commit) before the answer leaves
        self.settle = settle
        self._routes: list[tuple[str, re.Pattern, PageHandler]] = []
        self._static: dict[str, bytes] = {}
        from . import pages_audit, pages_keys, pages_tables  # each module registers its routes

        for module in (pages_tables, pages_keys, pages_audit):
            for method, pattern, handler in module.ROUTES:
                self._routes.append((method, re.compile(pattern + r"\Z"), handler))

    @functools.cached_property
    def env(self):
        """The page templates, made on the first page served: importing jinja2 and making its environment is
        ~50 ms that every server start (tests start hundreds) would otherwise pay for a console few open."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("dynavault.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(url=url, fmt=fmt, version=dynavault.__version__)
        return env

    # -- ASGI ------------------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client") or ("127.0.0.1", 0)
        path = scope.get("path", "/console")[len("/console"):] or "/"
        request = Request(
            method=scope["method"], path=path, query=parse_query(scope.get("query_string", b"")),
            headers=headers, cookies=parse_cookies(headers.get("cookie", "")), client_ip=client[0],
            connection_id=scope.get(self.connection_key) or hash(client),
        )
        if request.method == "POST":
            try:
                request.form = await read_form(receive, headers.get("content-type", ""))
            except BodyTooLarge:
                await send_response(send, self._error_page(413, "Request too large", "The form is too large."))
                return
        started = time.perf_counter()
        response = self.handle(request)
        # how long the page took in the server (the browser's devtools and the speed test read it)
        response.headers.append((b"server-timing", f"page;dur={(time.perf_counter() - started) * 1000:.1f}".encode()))
        if request.method == "POST" and self.settle is not None:
            await self.settle()
        await send_response(send, response)

    def handle(self, request: Request) -> Response:
        if not self.enabled:
            # With --allow-any-credentials anyone is anyone: nothing works unless --console-allow-any says so.
            return self._error_page(403, "Console disabled", self.disabled_reason)
        if request.path.startswith("/static/"):
            return self._static_file(request.path[len("/static/"):])
        if request.method not in ("GET", "HEAD", "POST"):
            return Response(405, b"", "text/plain")
        if request.path in ("/login", "/login/"):
            return self._login(request)
        token = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(token)
        if session is None:
            if request.method == "POST":
                return self._error_page(403, "Signed out", "Your session has ended; sign in again.")
            return redirect(url("/login", next=request.path if request.path != "/" else None))
        before = (session.region, list(session.flash))
        response = self._signed_in(request, token, session)
        if (session.region, session.flash) != before and request.path != "/logout":
            # the next request may reach another worker: it sees this one's region switch and flash message
            self.sessions.save(token, session)
        return response

    def _signed_in(self, request: Request, token: str, session: Session) -> Response:
        if request.method == "POST" and not session.check_csrf(request.form.get("csrf")):
            return self._error_page(403, "Refused", "The form's CSRF token is missing or wrong; reload the page.")
        if request.path == "/logout" and request.method == "POST":
            self.sessions.end(token)
            response = redirect(url("/login"))
            response.clear_cookie(SESSION_COOKIE)
            return response
        if request.path == "/region" and request.method == "POST":
            region = request.form.get("region", "")
            if _REGION.match(region):
                session.region = region
            return redirect(url("/tables"))
        if request.path in ("/", ""):
            return redirect(url("/tables"))
        method = "GET" if request.method == "HEAD" else request.method
        for route_method, pattern, handler in self._routes:
            if route_method != method:
                continue
            match = pattern.match(request.path)
            if match is None:
                continue
            page = Page(request, session, Calls(self.invoke, self._caller(request, session)), self)
            try:
                return handler(page, match)
            except AWSError as err:
                status = _ERROR_STATUS.get(err.code, 400 if err.status < 500 else 500)
                return self._error_page(status, err.code, err.message or "", session)
            except IntegrityError:
                log.error("integrity error on console page %s", request.path)
                return self._error_page(500, "Integrity error", "A stored blob failed authentication.", session)
            except Exception:
                log.exception("console page %s failed", request.path)
                return self._error_page(500, "Internal error", "The page failed; see the server log.", session)
        return self._error_page(404, "Not found", "No such console page.", session)

    def _caller(self, request: Request, session: Session) -> Caller:
        return Caller(account=session.account, region=session.region, principal_arn=session.principal_arn,
                      access_key=session.access_key, connection_id=request.connection_id,
                      source_ip=request.client_ip, user_agent=USER_AGENT)

    # -- sign-in ---------------------------------------------------------------------------------------------
    def _login(self, request: Request) -> Response:
        if request.method == "GET":
            token = secrets.token_urlsafe(32)
            response = self.render("login.html", 200, session=None, login_csrf=token, error="",
                                   next=request.arg("next"), access_key="")
            response.set_cookie(LOGIN_COOKIE, token, 600)
            return response
        if request.method != "POST":
            return Response(405, b"", "text/plain")
        form = request.form
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        sent = form.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return self._error_page(403, "Refused", "The form's CSRF token is missing or wrong; reload the page.")
        access_key = form.get("access_key_id", "").strip()
        cred = self._check(access_key, form.get("secret_access_key", ""))
        region = form.get("region", "").strip() or self.default_region
        if cred is None or not _REGION.match(region):
            token = secrets.token_urlsafe(32)
            response = self.render("login.html", 401, session=None, login_csrf=token, next=form.get("next", ""),
                                   error="Unknown access key, wrong secret key or bad region.",
                                   access_key=access_key[:128])
            response.set_cookie(LOGIN_COOKIE, token, 600)
            return response
        token, _ = self.sessions.create(cred.account_id, cred.principal_arn, cred.access_key_id, region)
        target = form.get("next", "")
        # Only a path of ours: the sign-in form must not become an open redirect.
        if not re.match(r"^/[A-Za-z0-9/_.:-]*$", target) or target.startswith("//"):
            target = "/tables"
        response = redirect(url(target))
        response.set_cookie(SESSION_COOKIE, token, int(self.sessions.idle_seconds))
        response.clear_cookie(LOGIN_COOKIE)
        return response

    def _check(self, access_key: str, secret: str) -> Any:
        if not access_key or len(access_key) > 128:
            return None
        cred = self.credentials.lookup(access_key)
        if cred is None:
            return None
        if cred.secret_access_key:
            if not hmac.compare_digest(cred.secret_access_key.encode(), secret.encode()):
                return None
        elif not getattr(self.credentials, "allow_any", False):
            return None
        return cred

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self, template: str, status: int = 200, *, session: Session | None, **context: Any) -> Response:
        flashes: list[tuple[str, str]] = []
        if session is not None:
            flashes, session.flash = session.flash, []
        body = self.env.get_template(template).render(session=session, flashes=flashes, **context)
        return Response(status, body.encode())

    def _error_page(self, status: int, title: str, message: str, session: Session | None = None) -> Response:
        return self.render("error.html", status, session=session, title=title, message=message)

    def _static_file(self, name: str) -> Response:
        ctype = _STATIC.get(name)
        if ctype is None:
            return Response(404, b"", "text/plain")
        data = self._static.get(name)
        if data is None:
            data = resources.files("dynavault.console").joinpath("static", name).read_bytes()
            self._static[name] = data
        return Response(200, data, ctype)
