"""Client settings: defaults, environment variables and options passed in code."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from ._errors import ConfigError

logger = logging.getLogger("aster_studio_sdk")

DEFAULT_URL = "ws://localhost:3032"
CONNECT_PATH = "/v1/remote-agents/connect"

ENV_ENABLED = "ASTER_STUDIO_ENABLED"
ENV_URL = "ASTER_STUDIO_URL"
ENV_TOKEN = "ASTER_STUDIO_TOKEN"
ENV_STRICT = "ASTER_STUDIO_SDK_STRICT"

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})


class DropPolicy(StrEnum):
    """What to discard when the in-memory queue is full; the caller is never blocked."""

    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """Tuning knobs of the background delivery worker; the defaults suit most agents."""

    max_queue_size: int = 100_000
    drop_policy: DropPolicy = DropPolicy.DROP_NEWEST
    flush_interval: float = 0.05
    poll_interval: float = 0.005
    idle_poll_interval: float = 0.05
    max_batch_messages: int = 1_000
    max_batch_bytes: int = 512 * 1024
    max_message_bytes: int = 500 * 1024
    max_unacked_messages: int = 50_000
    max_unacked_bytes: int = 32 * 1024 * 1024
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    ack_timeout: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    shutdown_timeout: float = 2.0
    log_interval: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "max_queue_size",
            "max_batch_messages",
            "max_batch_bytes",
            "max_message_bytes",
            "max_unacked_messages",
            "max_unacked_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        for name in (
            "flush_interval",
            "poll_interval",
            "idle_poll_interval",
            "connect_timeout",
            "handshake_timeout",
            "ack_timeout",
            "backoff_initial",
            "backoff_max",
            "shutdown_timeout",
            "log_interval",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.max_message_bytes > self.max_batch_bytes:
            raise ConfigError("max_message_bytes must not exceed max_batch_bytes")
        # Accept the policy's name too ("drop_oldest"); store the enum member.
        object.__setattr__(self, "drop_policy", DropPolicy(self.drop_policy))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a client needs to know, resolved once at construction.

    `url` is the endpoint as shown (in `repr`, logs and errors): a user and password in it,
    and query values that look like credentials (`?token=`), read `***`. The URL the SDK
    connects to, credentials included, is kept apart and never shown; the token too.
    """

    enabled: bool
    url: str
    token: str | None = field(default=None, repr=False)
    strict: bool = False
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    _connect_url: str = field(default="", repr=False, compare=False)


def target_url(settings: Settings) -> str:
    """Return the URL the worker connects to, credentials included: never show it."""
    return settings._connect_url or settings.url


def parse_bool(value: str | None) -> bool | None:
    """Read a boolean environment value; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


# What a host name may hold (RFC 3986 reg-name without percent-escapes and sub-delimiters, which
# no resolver accepts); non-ASCII names must encode as IDNA, as websockets does on connecting.
_HOST_NAME = re.compile(r"[A-Za-z0-9._~-]+")


def _bad_character(text: str) -> str | None:
    """Name the first space or control character in `text`, None when there is none."""
    for char in text:
        if char == " ":
            return "a space"
        if char.isspace() or unicodedata.category(char) == "Cc":
            return f"a control character ({char!r})"
    return None


def _check_host(host: str, bracketed: bool, shown: str) -> None:
    if bracketed:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ConfigError(f"the host in the URL {shown!r} is not an IPv6 address") from None
        return
    if _HOST_NAME.fullmatch(host):
        return
    if host.isascii():
        raise ConfigError(
            f"the host {host!r} in the URL {shown!r} holds characters a host name cannot "
            "(letters, digits, '-', '.', '_' and '~' only)"
        )
    try:
        host.encode("idna")
    except UnicodeError:
        raise ConfigError(f"the host {host!r} in the URL {shown!r} is not a valid name") from None


def connect_url(url: str) -> str:
    """Return the WebSocket endpoint for a Studio URL, adding the connect path when absent.

    Raises ConfigError, naming the problem and never the URL's credentials, for anything the
    connection could not use: another scheme, a space or control character anywhere (surrounding
    whitespace is ignored), no host, a malformed host (an unclosed IPv6 bracket, characters no
    host name has), or a port that is not a number from 1 to 65535.
    """
    if not isinstance(url, str):
        raise ConfigError(f"the URL must be a string, not {type(url).__name__}")
    text = url.strip()
    shown = redact_url(text)
    bad = _bad_character(text)
    if bad is not None:
        raise ConfigError(f"the URL {shown!r} contains {bad}: percent-encode it (a space is %20)")
    try:
        parts = urlsplit(text)
    except ValueError:  # urllib's message quotes the host, which may hold the credentials
        raise ConfigError(
            f"a malformed host in the URL {shown!r} (an IPv6 address goes in brackets: "
            "ws://[::1]:3032)"
        ) from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"not a ws:// or wss:// URL: {shown!r}")
    try:
        port = parts.port  # ValueError when not a number or out of range
    except ValueError:  # its message quotes the port, which may be part of a password
        raise ConfigError(
            f"the port in the URL {shown!r} is not a number from 1 to 65535"
        ) from None
    if not parts.hostname:
        raise ConfigError(f"no host in the URL {shown!r}")
    _check_host(parts.hostname, "[" in parts.netloc.rpartition("@")[2], shown)
    if port == 0:
        raise ConfigError(f"port 0 in the URL {shown!r}: use a port from 1 to 65535")
    if parts.username is not None:  # sent as HTTP Basic credentials, which need both, in UTF-8
        if parts.password is None:
            raise ConfigError(
                f"a user name without a password in the URL {shown!r}: an agent key goes in "
                "`token=` (or ASTER_STUDIO_TOKEN)"
            )
        try:
            unquote(parts.username, errors="strict")
            unquote(parts.password, errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(f"the user or password in the URL {shown!r} is not UTF-8") from None
    path = parts.path.rstrip("/")
    if not path.endswith(CONNECT_PATH):
        path += CONNECT_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


_SECRET_PARAMS = ("token", "key", "secret", "pass", "auth", "sig")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of that name looks like it holds a credential (`?token=`)."""
    lowered = name.lower()
    return any(s in lowered for s in _SECRET_PARAMS)


def redact_query(query: str) -> str:
    """Return a query string with the values of parameters that look like credentials masked."""
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(name + eq + "***" if eq and is_secret_param(unquote_plus(name)) else pair)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """Return `url` fit for a log line or an error message.

    Everything before the last `@` (after the scheme) is masked: the user and password, sent as
    HTTP Basic credentials, even when a character in them (`/`, `?`, `#`) or a missing `//`
    keeps urllib from reading them as such. Query values that look like credentials (`?token=`,
    which the Studio accepts) are masked too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    rest, hashsign, fragment = rest.partition("#")
    base, question, query = rest.partition("?")
    if query:
        query = redact_query(query)
    if fragment:
        fragment = redact_query(fragment)
    return f"{scheme}{sep}{base}{question}{query}{hashsign}{fragment}"


def resolve(
    *,
    enabled: bool | None,
    url: str | None,
    token: str | None,
    strict: bool | None,
    delivery: DeliveryOptions,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Combine options passed in code with the environment; code wins."""
    env = os.environ if environ is None else environ
    if enabled is None:
        raw = env.get(ENV_ENABLED)
        enabled = parse_bool(raw)
        if enabled is None:
            if raw is not None:
                logger.warning(
                    "%s=%r is not a boolean; Studio reporting stays off", ENV_ENABLED, raw
                )
            enabled = False
    if strict is None:
        strict = bool(parse_bool(env.get(ENV_STRICT)))
    if token is None:
        token = env.get(ENV_TOKEN) or None
    if url is not None:
        resolved = connect_url(url)  # a bad URL in code is the caller's bug: raise
    else:
        raw_url = env.get(ENV_URL) or DEFAULT_URL
        try:
            resolved = connect_url(raw_url)
        except ConfigError as exc:
            # A bad environment must not crash the agent: report and stay off.
            logger.warning("%s is not usable (%s); Studio reporting is off", ENV_URL, exc)
            resolved, enabled = connect_url(DEFAULT_URL), False
    return Settings(
        enabled=enabled,
        url=redact_url(resolved),
        token=token,
        strict=strict,
        delivery=delivery,
        _connect_url=resolved,
    )
