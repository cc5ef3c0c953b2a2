"""The ASGI guard in front of every route: credentials, CSRF, Origin, security headers."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Auth
from ..models import AgentKey

COOKIE = "aster_session"
CSRF_HEADER = b"x-csrf-token"
AGENT_PATH = "/v1/remote-agents/connect"


def is_agent_path(path: str) -> bool:
    """Whether `path` names the agent endpoint, empty segments aside: a client that joins a
    Studio URL ending in `/` with the document's "/v1/remote-agents/connect" asks for
    "//v1/remote-agents/connect"."""
    return path == AGENT_PATH or "/" + "/".join(filter(None, path.split("/"))) == AGENT_PATH


PUBLIC_PATHS = frozenset({"/healthz", "/health", "/v1/auth/login", "/v1/auth/session"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No REST route takes more (prices, renames, decisions): a bigger body was read whole, and a
# public route (login) took 300 MB and a GB of memory.
MAX_BODY_BYTES = 1 << 20

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", ())}


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def session_id_of(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed cookie header is simply no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """True when the Origin header is absent or names the host the request was sent to."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc.lower()
    except ValueError:
        return False
    return bool(host) and netloc == host


def loopback_host(headers: dict[bytes, bytes]) -> bool:
    """True when the Host header is absent or a loopback name (any port)."""
    host = headers.get(b"host")
    if host is None:
        return True
    name = host.decode("latin-1").lower()
    if name.startswith("[") and "]" in name:
        name = name[: name.index("]") + 1]
    else:
        name = name.split(":")[0]
    return (
        name in ("localhost", "[::1]")
        or name.endswith(".localhost")
        or (name.startswith("127.") and name.replace(".", "").isdigit())
    )


def agent_credential(
    auth: Auth, headers: dict[bytes, bytes], query_string: bytes
) -> tuple[AgentKey | None, str | None]:
    """Check an agent's credential: (its key or None for the console token, refusal code).

    The key comes as a bearer token or, for clients that cannot set headers, as `?token=`.
    """
    token = _bearer(headers)
    if token is None:
        query = parse_qs(query_string.decode("latin-1"))
        token = query["token"][0] if query.get("token") else None
    key = auth.agent_key(token)
    if key is None and not auth.console_token_ok(token):
        return None, "missing_api_key" if not token else "invalid_api_key"
    return key, None


def _capped(receive: Receive) -> Receive:
    """`receive`, ending a body sent without a length (chunked) at MAX_BODY_BYTES: past it the
    application sees the client gone."""
    taken = 0

    async def capped() -> Message:
        nonlocal taken
        message = await receive()
        if message["type"] == "http.request":
            taken += len(message.get("body", b""))
            if taken > MAX_BODY_BYTES:
                return {"type": "http.disconnect"}
        return message

    return capped


class Guard:
    """Enforce auth when it is on; always add security headers to HTTP responses."""

    def __init__(self, app: ASGIApp, auth: Auth, loopback: bool = False) -> None:
        self.app = app
        self.auth = auth
        self.loopback = loopback  # bound to a loopback address: asked by loopback names only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            send = self._secure_headers(send)
            declared = headers_of(scope).get(b"content-length", b"0")
            if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
                await self._deny(
                    kind,
                    receive,
                    send,
                    413,
                    "body_too_large",
                    f"request bodies are limited to {MAX_BODY_BYTES} bytes",
                    refusal=False,
                )
                return
            receive = _capped(receive)
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not self.auth.enabled:
            # Open: everything is readable, but not by another site's page in the operator's
            # browser. Its fetches get no CORS header; a WebSocket has no such protection, so
            # the console's (not an agent's: agents may run in pages of their own) checks Origin.
            # A page that rebinds its own name to 127.0.0.1 is same-origin to itself, and asks
            # by that name: a Studio on loopback answers only to loopback names.
            headers = headers_of(scope)
            if self.loopback and not loopback_host(headers):
                await self._deny(kind, receive, send, 403, "bad_host", "Unknown Host refused")
                return
            if kind == "websocket" and path != AGENT_PATH and not same_origin(headers):
                await self._deny(
                    kind, receive, send, 403, "bad_origin", "Cross-origin request refused"
                )
                return
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        if kind == "websocket" and path == AGENT_PATH:
            await self._agent(scope, receive, send, headers)
            return
        if kind == "http" and (path in PUBLIC_PATHS or _is_console_asset(path)):
            await self.app(scope, receive, send)
            return
        token = _bearer(headers)
        if token is not None:  # scripts: no ambient credential, so no CSRF check needed
            if self.auth.console_token_ok(token):
                await self.app(scope, receive, send)
            else:
                await self._deny(kind, receive, send, 401, "invalid_token", "Invalid token")
            return
        session = await self.auth.session(session_id_of(headers))
        if session is None:
            await self._deny(kind, receive, send, 401, "missing_token", "Log in first")
            return
        if not same_origin(headers):
            await self._deny(kind, receive, send, 403, "bad_origin", "Cross-origin request refused")
            return
        if kind == "http" and scope["method"] not in SAFE_METHODS:
            presented = headers.get(CSRF_HEADER, b"")
            if not hmac.compare_digest(presented, session.csrf.encode()):
                await self._deny(kind, receive, send, 403, "csrf_failed", "Missing CSRF token")
                return
        await self.app(scope, receive, send)

    async def _agent(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        key, refusal = agent_credential(self.auth, headers, scope.get("query_string", b""))
        if refusal is not None:
            await self._deny(
                "websocket", receive, send, 401, refusal, "A valid agent key is required"
            )
            return
        scope.setdefault("state", {})["agent_key"] = key  # None: the console token, any agent
        await self.app(scope, receive, send)

    async def _deny(
        self,
        kind: str,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        *,
        refusal: bool = True,  # counted as an auth refusal
    ) -> None:
        if refusal:
            self.auth.refused += 1
        body = orjson.dumps({"success": False, "error": {"code": code, "message": message}})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if kind == "websocket":
            await receive()  # websocket.connect
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _secure_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
            await send(message)

        return wrapped


def _is_console_asset(path: str) -> bool:
    # The console's files hold no data; they must load so a person can log in.
    return path in ("/", "/studio") or path.startswith("/studio/")


def session_cookie(session_id: str, max_age: int, secure: bool) -> str:
    """The Set-Cookie value for a console session: HttpOnly, SameSite=Strict."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flags}"


__all__ = [
    "Guard",
    "agent_credential",
    "headers_of",
    "same_origin",
    "session_cookie",
    "session_id_of",
]
