"""The public client, its sessions and tool calls.

Every emitting method costs the agent's thread one tuple and one deque append; serialization and
I/O happen in the worker thread. Nothing here raises into the agent's code (except in strict
mode, meant for tests, and for invalid arguments to the constructor).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload

from . import _lifecycle
from ._config import DeliveryOptions, DropPolicy, Settings, resolve
from ._control import (
    DEFAULT_TIMEOUT,
    PERMISSION,
    QUESTION,
    Answers,
    CallControl,
    ControlHub,
    Decision,
    Permission,
    Question,
    Reason,
    Request,
    Source,
    ToolAction,
    ToolControl,
    question_dicts,
    unbounded,
    wait_seconds,
)
from ._diagnostics import Diagnostics
from ._errors import ConfigError, InternalError, ToolCancelled
from ._transport import Transport, WebSocketTransport
from ._worker import (
    OP_END,
    OP_EVENT,
    OP_FLUSH,
    OP_OPEN,
    OP_TEXT,
    AgentInfo,
    FlushWaiter,
    Item,
    Worker,
)
from .protocol import Channel, SessionStatus

P = ParamSpec("P")
R = TypeVar("R")

_time = time.time
_MAX_ID = 256
# Session starts may exceed the queue bound by this much (so that a session still starts while
# events are being dropped), and flushes by twice as much (to get in behind those starts); no
# further: beyond it they are dropped too.
_CONTROL_SLACK = 10_000

_current_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "aster_studio_session", default=None
)
_current_call: contextvars.ContextVar[ToolCall | None] = contextvars.ContextVar(
    "aster_studio_tool_call", default=None
)

Questions = Question | str | Mapping[str, Any] | Sequence[Question | Mapping[str, Any] | str]


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the client's counters (see docs/sdk.md for each one)."""

    enabled: bool
    connected: bool = False
    reliable: bool | None = None
    queued: int = 0
    unacked: int = 0
    dropped: int = 0
    sent: int = 0
    delivered: int = 0
    resent: int = 0
    rejected: int = 0
    oversized: int = 0
    unencodable: int = 0
    undelivered: int = 0
    frames: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    control_messages: int = 0
    internal_errors: int = 0
    refused: int = 0  # connection attempts the Studio refused (credential or registration)


def _new_id(prefix: str) -> str:
    """Return `prefix` and 20 random hex digits (os.urandom: a fifth of uuid4's cost)."""
    return prefix + os.urandom(10).hex()


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise ConfigError(f"{what} must be a non-empty string of at most {_MAX_ID} characters")
    return value


def _describe(exc: BaseException | None, exc_type: type[BaseException]) -> str:
    try:
        return f"{exc_type.__name__}: {exc}"
    except Exception:  # an exception whose str() fails must not break the agent's error path
        return exc_type.__name__


def _interrupted(exc_type: type[BaseException] | None) -> bool:
    return exc_type is not None and issubclass(
        exc_type, (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)
    )


class _Emitter:
    """The event helpers shared by a client (no session) and a session."""

    __slots__ = ()
    _client: StudioClient
    _sid: str | None

    def event(self, channel: Channel | str, event_type: str, /, **fields: Any) -> None:
        """Report any event: `channel` is progress, control or monitor; fields are kept as sent.

        `channel` and `event_type` are positional-only, so any field name is allowed.
        """
        try:
            self._client._put((OP_EVENT, self._sid, _time(), str(channel), event_type, fields))
        except Exception as exc:
            self._client._internal("event", exc)

    def text(self, delta: str, *, step: int | None = None) -> None:
        """Report a chunk of streamed output text (progress `text_chunk`)."""
        try:
            self._client._put((OP_TEXT, self._sid, _time(), delta, step))
        except Exception as exc:
            self._client._internal("text", exc)

    def text_start(self, *, step: int | None = None) -> None:
        """Report the start of a streamed text block (progress `text_chunk_start`)."""
        self.event("progress", "text_chunk_start", step=step)

    def text_end(self, text: str, *, step: int | None = None) -> None:
        """Report the end of a streamed text block with its full text (`text_chunk_end`)."""
        self.event("progress", "text_chunk_end", step=step, text=text)

    def thinking(self, delta: str, *, step: int | None = None, **fields: Any) -> None:
        """Report a chunk of reasoning (progress `think_chunk`)."""
        try:
            fields["delta"] = delta
            if step is not None:
                fields["step"] = step
            self._client._put((OP_EVENT, self._sid, _time(), "progress", "think_chunk", fields))
        except Exception as exc:
            self._client._internal("thinking", exc)

    def thinking_start(self, *, step: int | None = None) -> None:
        """Report the start of a reasoning block (progress `think_chunk_start`)."""
        self.event("progress", "think_chunk_start", step=step)

    def thinking_end(self, *, step: int | None = None) -> None:
        """Report the end of a reasoning block (progress `think_chunk_end`)."""
        self.event("progress", "think_chunk_end", step=step)

    def state(self, state: str) -> None:
        """Report the agent's state: ready, working, idle, running, paused, completed, failed."""
        try:
            self._client._put(
                (OP_EVENT, self._sid, _time(), "monitor", "state_changed", {"state": state})
            )
        except Exception as exc:
            self._client._internal("state", exc)

    def token_usage(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        model: str | None = None,
        total_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Report tokens used by one model call (monitor `token_usage`)."""
        try:
            fields: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
            if model is not None:
                fields["model"] = model
            if total_tokens is not None:
                fields["total_tokens"] = total_tokens
            if cache_read_input_tokens is not None:
                fields["cache_read_input_tokens"] = cache_read_input_tokens
            if cache_creation_input_tokens is not None:
                fields["cache_creation_input_tokens"] = cache_creation_input_tokens
            if reasoning_tokens is not None:
                fields["reasoning_tokens"] = reasoning_tokens
            self._client._put((OP_EVENT, self._sid, _time(), "monitor", "token_usage", fields))
        except Exception as exc:
            self._client._internal("token_usage", exc)

    def error(
        self,
        message: str,
        *,
        severity: str = "error",
        phase: str = "system",
        detail: Any = None,
    ) -> None:
        """Report an error: severity info/warn/error/fatal, phase model/tool/system/lifecycle."""
        fields: dict[str, Any] = {"severity": severity, "phase": phase, "message": message}
        if detail is not None:
            fields["detail"] = detail
        self.event("monitor", "error", **fields)

    def step_complete(self, step: int, *, duration_ms: float | None = None) -> None:
        """Report that a step of the agent loop finished (monitor `step_complete`)."""
        if duration_ms is None:
            self.event("monitor", "step_complete", step=step)
        else:
            self.event("monitor", "step_complete", step=step, duration_ms=duration_ms)

    def done(self, reason: str = "completed", *, step: int | None = None) -> None:
        """Report that the agent finished its run: reason `completed` or `interrupted`."""
        self.event("progress", "done", step=step, reason=reason)

    def tool_call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        call_id: str | None = None,
        pausable: bool = False,
        cancelable: bool = False,
    ) -> ToolCall:
        """Return a tool call to use as a context manager or a decorator.

        As a context manager it reports `tool:start` on entry, and `tool:end` (with the result
        and duration) or `tool:error` on exit, unless the block ended the call itself (`end`,
        `fail`, `cancel`); the exception still propagates. As a decorator
        each call of the function becomes one tool call with its bound arguments. A
        `pausable`/`cancelable` call is offered pause/resume/cancel in the console while it runs.
        """
        return ToolCall(self, name, arguments, call_id, pausable=pausable, cancelable=cancelable)

    # ---- steering: requests answered by a person in the Studio ----

    @overload
    def request_permission(
        self,
        call: ToolCall | Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
        on_decision: None = None,
    ) -> Decision: ...

    @overload
    def request_permission(
        self,
        call: ToolCall | Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
        on_decision: Callable[[Decision], object],
    ) -> Request[Decision]: ...

    def request_permission(
        self,
        call: ToolCall | Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
        on_decision: Callable[[Decision], object] | None = None,
    ) -> Decision | Request[Decision]:
        """Ask a person to allow or deny a tool call; return the decision within `timeout` s.

        Reports `permission_required` and waits for the Studio's `permission_decided`. When
        nobody decides in time (or the Studio cannot be reached, has no control channel, or the
        client is disabled or closed) the result is `default` (deny) with `source` "default".
        `timeout=None` sets no deadline (nor does one past `threading.TIMEOUT_MAX`): it waits
        until a person decides, the request is cancelled, or the client closes, through
        reconnects; the Studio then keeps the request pending until decided.
        With `on_decision` it returns a `Request` at once and calls `on_decision(decision)` on
        the SDK's control thread. Raises `ControlError` when called, blocking, on an SDK thread.
        """
        if on_decision is None and self._client._settings.enabled:
            self._client._control.check_may_block()
        request = self._ask_permission(call, timeout, default, on_decision)
        return request if on_decision is not None else request.result()

    async def arequest_permission(
        self,
        call: ToolCall | Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
    ) -> Decision:
        """Like `request_permission`, waiting without blocking the running event loop."""
        return await self._ask_permission(call, timeout, default, None).wait_async()

    @overload
    def ask_user(
        self,
        questions: Questions,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        on_answer: None = None,
    ) -> Answers: ...

    @overload
    def ask_user(
        self,
        questions: Questions,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        on_answer: Callable[[Answers], object],
    ) -> Request[Answers]: ...

    def ask_user(
        self,
        questions: Questions,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        on_answer: Callable[[Answers], object] | None = None,
    ) -> Answers | Request[Answers]:
        """Ask a person questions (choices or free text); return the answers within `timeout` s.

        Reports `ask_user` and waits for the Studio's `user_answer`; without an answer in time
        the result holds `default` (empty) with `source` "default". `timeout=None` and
        `on_answer` work like `request_permission`'s `timeout=None` and `on_decision`.
        """
        if on_answer is None and self._client._settings.enabled:
            self._client._control.check_may_block()
        request = self._ask_user(questions, timeout, default, request_id, on_answer)
        return request if on_answer is not None else request.result()

    async def aask_user(
        self,
        questions: Questions,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> Answers:
        """Like `ask_user`, waiting without blocking the running event loop."""
        return await self._ask_user(questions, timeout, default, request_id, None).wait_async()

    def _ask_permission(
        self,
        call: ToolCall | Mapping[str, Any],
        timeout: float | None,
        default: Permission | str,
        callback: Callable[[Decision], object] | None,
    ) -> Request[Decision]:
        try:
            fallback = Permission(default)
        except ValueError:
            raise ConfigError(f"default must be 'allow' or 'deny', not {default!r}") from None
        call_id = ""

        def make_default(reason: Reason) -> Decision:
            return Decision(call_id, fallback, Source.DEFAULT, reason)

        hub = self._client._control
        try:
            if not self._client._settings.enabled:
                # Nobody can answer a disabled client: its default at once, and no snapshot.
                given = call.id if isinstance(call, ToolCall) else call.get("id")
                call_id = given if isinstance(given, str) and given else _new_id("call_")
                return hub.resolved(
                    PERMISSION, call_id, self, make_default(Reason.DISABLED), callback
                )
            call_id = _new_id("call_")
            if isinstance(call, ToolCall):
                snapshot = call.snapshot()
            else:
                snapshot = dict(call)
                if not isinstance(snapshot.get("id"), str) or not snapshot["id"]:
                    snapshot["id"] = call_id
            call_id = snapshot["id"]
            ask_id = _new_id("ask_")
            request = hub.open(
                PERMISSION, call_id, self, timeout, make_default, callback, ask_id, snapshot
            )
            self.event(
                "control",
                "permission_required",
                call=snapshot,
                ask_id=request.ask_id,
                **_timeout_ms(timeout),
            )
            return request
        except Exception as exc:
            self._client._internal("request_permission", exc)
            call_id = call_id or _new_id("call_")
            return hub.resolved(PERMISSION, call_id, self, make_default(Reason.ERROR), callback)

    def _ask_user(
        self,
        questions: Questions,
        timeout: float | None,
        default: Mapping[str, Any] | None,
        request_id: str | None,
        callback: Callable[[Answers], object] | None,
    ) -> Request[Answers]:
        key = request_id or _new_id("q_")
        fallback = dict(default or {})

        def make_default(reason: Reason) -> Answers:
            return Answers(key, dict(fallback), Source.DEFAULT, reason)

        hub = self._client._control
        if not self._client._settings.enabled:  # nobody can answer: the default, no questions
            return hub.resolved(QUESTION, key, self, make_default(Reason.DISABLED), callback)
        try:
            body = question_dicts(questions)
            ask_id = _new_id("ask_")
            request = hub.open(QUESTION, key, self, timeout, make_default, callback, ask_id, body)
            self.event(
                "control",
                "ask_user",
                request_id=key,
                questions=body,
                ask_id=request.ask_id,
                **_timeout_ms(timeout),
            )
            return request
        except Exception as exc:
            self._client._internal("ask_user", exc)
            return hub.resolved(QUESTION, key, self, make_default(Reason.ERROR), callback)


def _timeout_ms(timeout: float | None) -> dict[str, int]:
    """Return the request's `timeout_ms` field: none for no deadline (the Studio keeps the
    request until someone decides)."""
    if timeout is None or unbounded(timeout):
        return {}
    # The Studio expires the request by itself; 0 would mean "never", so at least 1 ms.
    return {"timeout_ms": max(int(timeout * 1000), 1) if timeout > 0 else 1}


class _With(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: Any) -> None: ...


_W = TypeVar("_W", bound=_With)


class _AsyncWith:
    """`async with` does what `with` does: entering and leaving never wait for anything."""

    __slots__ = ()

    async def __aenter__(self: _W) -> _W:
        return self.__enter__()

    async def __aexit__(self: _With, *exc_info: Any) -> None:
        self.__exit__(*exc_info)


_FINISHED = frozenset(("completed", "failed", "canceled"))


class ToolCall(_AsyncWith):
    """One tool call: reports start, progress, end, duration and errors.

    A `pausable` or `cancelable` call also takes the Studio's pause, resume and cancel while
    it runs: check `cancelled`, call `wait_if_paused()`, or register `on_control` handlers.
    On a disabled client it keeps its `state`, `result` and `error` but reports, times and
    snapshots nothing and never reads its arguments (`arguments` stays empty).
    """

    __slots__ = (
        "_ctl",
        "_emitter",
        "_off",
        "_t0",
        "_token",
        "arguments",
        "cancelable",
        "error",
        "id",
        "name",
        "pausable",
        "progress_value",
        "result",
        "started_at",
        "state",
    )

    def __init__(
        self,
        emitter: _Emitter,
        name: str,
        arguments: Mapping[str, Any] | None,
        call_id: str | None,
        *,
        pausable: bool = False,
        cancelable: bool = False,
    ) -> None:
        self._emitter = emitter
        self.name = name
        # A disabled client reports nothing: it has no use for a copy of the arguments.
        self._off = off = not emitter._client._settings.enabled
        self.arguments: dict[str, Any] = dict(arguments) if not off and arguments else {}
        self.id = call_id or _new_id("call_")
        self.state = "pending"
        self.result: Any = None
        self.error: str | None = None
        self.progress_value = 0.0
        self.started_at: float | None = None
        self._t0 = 0.0
        self.pausable = pausable
        self.cancelable = cancelable
        # Nothing can pause or cancel a disabled client's call: the Studio never hears of it.
        self._ctl: CallControl | None = (
            CallControl() if (pausable or cancelable) and not off else None
        )
        self._token: contextvars.Token[ToolCall | None] | None = None

    def snapshot(self) -> dict[str, Any]:
        """Return the call as EVENTS.md's `call` shape (times in epoch milliseconds)."""
        now = _time()
        call: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "progress": self.progress_value,
            "arguments": self.arguments,
            "started_at": int((self.started_at or now) * 1000),
            "updated_at": int(now * 1000),
        }
        if self.state == "completed":
            call["result"] = self.result
        if self.error is not None:
            call["error"] = self.error
        if self.state in ("completed", "failed", "canceled"):
            call["duration_ms"] = round((time.perf_counter() - self._t0) * 1000, 3)
        if self.pausable:
            call["pausable"] = True
        if self.cancelable:
            call["cancelable"] = True
        return call

    def start(self) -> ToolCall:
        """Report `tool:start` (and, if controllable, take the Studio's controls from now on)."""
        self.state = "executing"
        if self._off:
            return self
        self.started_at = _time()
        self._t0 = time.perf_counter()
        if self._ctl is not None:
            self._emitter._client._control.track(self)
        self._emitter.event("progress", "tool:start", call=self.snapshot())
        return self

    # ---- steering ----

    @property
    def cancelled(self) -> bool:
        """Return whether the Studio asked to cancel this call (stop soon and return)."""
        ctl = self._ctl
        return ctl is not None and ctl.cancelled

    @property
    def paused(self) -> bool:
        """Return whether the Studio paused this call (see `wait_if_paused`)."""
        ctl = self._ctl
        return ctl is not None and ctl.paused and not ctl.cancelled

    @property
    def control_note(self) -> str | None:
        """Return the note sent with the cancel, if any."""
        ctl = self._ctl
        return ctl.note if ctl is not None else None

    def wait_if_paused(self, timeout: float | None = None) -> bool:
        """Block while paused (at most `timeout` s; None: no limit); return False once
        cancelled, else True."""
        ctl = self._ctl
        if ctl is None:
            return True
        return ctl.wait_running(timeout)

    async def await_if_paused(self, timeout: float | None = None, *, poll: float = 0.02) -> bool:
        """Like `wait_if_paused`, without blocking the running event loop."""
        ctl = self._ctl
        deadline = None if timeout is None else time.monotonic() + timeout
        while ctl is not None and ctl.paused and not ctl.cancelled:
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll)
        return not self.cancelled

    def raise_if_cancelled(self) -> None:
        """Raise `ToolCancelled` if the Studio cancelled this call (ends it as canceled)."""
        if self.cancelled:
            raise ToolCancelled(self.control_note or f"tool call {self.id} cancelled")

    def on_control(
        self, handler: Callable[[ToolControl], object]
    ) -> Callable[[ToolControl], object]:
        """Call `handler(control)` on the SDK's control thread for each pause/resume/cancel.

        The response the Studio shows is sent once the handlers return; one that raises makes
        it `ok: false` with the exception as reason. Usable as a decorator.
        """
        if self._ctl is not None:
            self._ctl.handlers.append(handler)
        return handler

    def request_permission(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
    ) -> Decision:
        """Ask a person to allow this call (see `Session.request_permission`)."""
        return self._emitter.request_permission(self, timeout=timeout, default=default)

    async def arequest_permission(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        default: Permission | str = Permission.DENY,
    ) -> Decision:
        """Like `request_permission`, without blocking the running event loop."""
        return await self._emitter.arequest_permission(self, timeout=timeout, default=default)

    @property
    def control_state(self) -> CallControl | None:
        """Return the pause/cancel state (None when the call is not controllable)."""
        return self._ctl

    @property
    def control_emitter(self) -> _Emitter:
        """Return where this call's events go."""
        return self._emitter

    def _controlled(self, action: ToolAction, note: str | None) -> None:
        """The Studio's control was applied (called on the SDK's worker thread)."""
        if action is ToolAction.CANCEL and self.state == "executing":
            self.state = "canceling"

    def _finished(self) -> None:
        if self._ctl is not None:
            self._emitter._client._control.untrack(self)

    def progress(self, progress: float, message: str | None = None, **fields: Any) -> None:
        """Report `tool:progress` (progress from 0 to 1)."""
        self.progress_value = progress
        if self._off:
            return
        if message is not None:
            fields["message"] = message
        self._emitter.event(
            "progress", "tool:progress", call=self.snapshot(), progress=progress, **fields
        )

    def intermediate(self, data: Any, *, label: str | None = None) -> None:
        """Report an intermediate result (`tool:intermediate`)."""
        if self._off:
            return
        self._emitter.event(
            "progress", "tool:intermediate", call=self.snapshot(), label=label, data=data
        )

    def end(self, result: Any = None) -> None:
        """Report `tool:end` with the result."""
        if result is not None:
            self.result = result
        self.state = "completed"
        self.progress_value = 1.0
        self._finished()
        if not self._off:
            self._emitter.event("progress", "tool:end", call=self.snapshot())

    def fail(self, error: BaseException | str) -> None:
        """Report `tool:error`."""
        self.state = "failed"
        if isinstance(error, BaseException):
            self.error = _describe(error, type(error))
        else:
            self.error = str(error)
        self._finished()
        if not self._off:
            self._emitter.event("progress", "tool:error", call=self.snapshot(), error=self.error)

    def cancel(self, reason: str | None = None) -> None:
        """Report `tool:canceled`."""
        self.state = "canceled"
        self._finished()
        if not self._off:
            self._emitter.event("progress", "tool:canceled", call=self.snapshot(), reason=reason)

    def __enter__(self) -> ToolCall:
        self._token = _current_call.set(self)
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current_call.reset(token)
            except ValueError:  # exited in another context than entered
                _current_call.set(None)
        if self.state in _FINISHED:
            return  # the block ended the call itself (`end`, `fail`, `cancel`): reported
        if self.cancelled:
            # The Studio's cancel took effect: the block ended (returned or raised) after it.
            self.cancel(self.control_note or "cancelled from the Studio")
        elif exc_type is None:
            self.end()
        elif _interrupted(exc_type):
            self.cancel(exc_type.__name__)
        else:
            self.fail(exc if exc is not None else exc_type.__name__)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate `fn`: every call becomes a new tool call of this name.

        Inside, `current_tool_call()` returns the running call (to check `cancelled`).
        """
        return _wrap_tool(
            fn, lambda: self._emitter, self.name, pausable=self.pausable, cancelable=self.cancelable
        )

    def __repr__(self) -> str:
        return f"ToolCall({self.name!r}, {self.id!r}, {self.state})"


def current_tool_call() -> ToolCall | None:
    """Return the tool call whose `with` block (or decorated function) is running here."""
    return _current_call.get()


def _bound_arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return {"args": list(args), **kwargs}
    return dict(bound.arguments)


def _wrap_tool(
    fn: Callable[P, R],
    emitter: Callable[[], _Emitter],
    name: str,
    *,
    pausable: bool = False,
    cancelable: bool = False,
) -> Callable[P, R]:
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, emitter, name, pausable=pausable, cancelable=cancelable)
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, emitter, name, pausable=pausable, cancelable=cancelable)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            target = emitter()
            call = target.tool_call(
                name,
                _bound_arguments(fn, args, kwargs) if target._client._settings.enabled else None,
                pausable=pausable,
                cancelable=cancelable,
            )
            with call:
                result = await fn(*args, **kwargs)
                call.result = result
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        target = emitter()
        # Binding arguments to the signature is the costly part: not for a disabled client.
        call = target.tool_call(
            name,
            _bound_arguments(fn, args, kwargs) if target._client._settings.enabled else None,
            pausable=pausable,
            cancelable=cancelable,
        )
        with call:
            result = fn(*args, **kwargs)
            call.result = result
        return result

    return wrapper


def _generator_call(
    fn: Callable[..., Any],
    emitter: Callable[[], _Emitter],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    pausable: bool,
    cancelable: bool,
) -> ToolCall:
    target = emitter()
    return target.tool_call(
        name,
        _bound_arguments(fn, args, kwargs) if target._client._settings.enabled else None,
        pausable=pausable,
        cancelable=cancelable,
    )


def _wrap_generator(
    fn: Callable[P, Any],
    emitter: Callable[[], _Emitter],
    name: str,
    *,
    pausable: bool,
    cancelable: bool,
) -> Callable[P, Any]:
    """Wrap a generator function: the call starts when the caller first iterates, each value
    it yields is reported as `tool:intermediate`, and it ends when the generator does (its
    return value as the result), fails with its exception, or is cancelled when the caller
    stops iterating early (`close()`). `current_tool_call()` is the call only while the
    generator's own code runs, not in the caller's between two values."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        call = _generator_call(fn, emitter, name, args, kwargs, pausable, cancelable)
        gen = fn(*args, **kwargs)
        call.start()
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                token = _current_call.set(call)
                try:
                    if thrown is not None:
                        exc, thrown = thrown, None
                        value = gen.throw(exc)
                    else:
                        value = gen.send(sent)
                finally:
                    _current_call.reset(token)
                call.intermediate(value)
                try:
                    sent = yield value
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as exc:
                    thrown = exc
        except StopIteration as stop:
            if stop.value is not None:
                call.result = stop.value
            call.__exit__(None, None, None)
            return stop.value
        except BaseException as exc:
            call.__exit__(type(exc), exc, exc.__traceback__)
            raise

    return wrapper


def _wrap_async_generator(
    fn: Callable[P, Any],
    emitter: Callable[[], _Emitter],
    name: str,
    *,
    pausable: bool,
    cancelable: bool,
) -> Callable[P, Any]:
    """Wrap an async generator function as `_wrap_generator` does a generator function."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        call = _generator_call(fn, emitter, name, args, kwargs, pausable, cancelable)
        agen = fn(*args, **kwargs)
        call.start()
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                token = _current_call.set(call)
                try:
                    if thrown is not None:
                        exc, thrown = thrown, None
                        value = await agen.athrow(exc)
                    else:
                        value = await agen.asend(sent)
                finally:
                    _current_call.reset(token)
                call.intermediate(value)
                try:
                    sent = yield value
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    thrown = exc
        except StopAsyncIteration:
            call.__exit__(None, None, None)
        except BaseException as exc:
            call.__exit__(type(exc), exc, exc.__traceback__)
            raise

    return wrapper


class Session(_Emitter, _AsyncWith):
    """One session of the agent: registered on creation, ended on exit of its `with` block."""

    __slots__ = ("__weakref__", "_client", "_ended", "_started", "_sid", "_tokens", "id")

    def __init__(
        self, client: StudioClient, session_id: str, metadata: Mapping[str, Any] | None
    ) -> None:
        self._client = client
        self._sid = session_id
        self.id = session_id
        self._ended = False
        self._tokens: list[contextvars.Token[Session | None]] = []
        # Whether its start was queued (not dropped: the queue was over its bound).
        self._started = False
        if client._settings.enabled:  # a disabled client has no use for a copy of the metadata
            self._started = client._put_control(
                (OP_OPEN, session_id, _time(), dict(metadata) if metadata else None),
                bounded=True,
            )

    @property
    def ended(self) -> bool:
        """Return whether `end` was called."""
        return self._ended

    def end(self, status: SessionStatus | str = SessionStatus.COMPLETED) -> None:
        """End the session (completed, failed or interrupted); later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        # The end of a session whose start was dropped is kept too once any of its events was
        # queued (the Studio makes the session of them); otherwise nothing of the session can
        # reach the Studio, and its end is bounded like a start.
        client = self._client
        keep = self._started or client._forget_startless(self.id)
        client._put_control((OP_END, self._sid, _time(), str(status)), bounded=not keep)

    def __enter__(self) -> Session:
        self._tokens.append(_current_session.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tokens:
            try:
                _current_session.reset(self._tokens.pop())
            except ValueError:  # exited in another context than entered (rare): just clear
                _current_session.set(None)
        if exc_type is None:
            self.end(SessionStatus.COMPLETED)
        elif _interrupted(exc_type):
            self.end(SessionStatus.INTERRUPTED)
        else:
            self.error(_describe(exc, exc_type), severity="error", phase="lifecycle")
            self.end(SessionStatus.FAILED)

    def __repr__(self) -> str:
        return f"Session({self._sid!r})"


class StudioClient(_Emitter):
    """Report one agent's sessions and events to an Aster Studio, without ever blocking it.

    Configuration comes from the environment (`ASTER_STUDIO_ENABLED`, default off;
    `ASTER_STUDIO_URL`, default ws://localhost:3032; `ASTER_STUDIO_TOKEN`); arguments win.
    A disabled client is a no-op that opens no connection and starts no thread.

    A Studio that refuses the agent (HTTP 401/403 for its key, or an `error` reply to its
    `register`, e.g. `forbidden_agent`) gets nothing: the client never falls back to
    at-most-once, where each event would be refused in turn yet counted delivered. It logs an
    error (once per `log_interval`), counts the refusal (`stats().refused`), keeps every event
    for exactly-once delivery (within `max_queue_size` and the resend buffer, beyond which the
    drop policy applies and is counted) and keeps trying with back-off; `flush` and `close`
    return False while nothing is stored. A register refused for what it holds (a name over
    the Studio's limits, metadata over its frame limit) is sent again at once with the agent
    id alone, so delivery stays exactly-once without those details.
    """

    __slots__ = (
        "__weakref__",
        "_client",
        "_closed",
        "_control",
        "_diag",
        "_finalizer",
        "_info",
        "_lock",
        "_maxsize",
        "_half",
        "_put",
        "_queue",
        "_settings",
        "_sid",
        "_startless",
        "_startless_seen",
        "_transport",
        "_worker",
        "agent_id",
    )

    def __init__(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        model: str | None = None,
        capabilities: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str | None = "ready",
        url: str | None = None,
        enabled: bool | None = None,
        token: str | None = None,
        strict: bool | None = None,
        max_queue_size: int | None = None,
        drop_policy: DropPolicy | str | None = None,
        options: DeliveryOptions | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.agent_id = _check_id(agent_id, "agent_id")
        delivery = options or DeliveryOptions()
        if max_queue_size is not None or drop_policy is not None:
            delivery = replace(
                delivery,
                max_queue_size=delivery.max_queue_size
                if max_queue_size is None
                else max_queue_size,
                drop_policy=DropPolicy(drop_policy or delivery.drop_policy),
            )
        self._settings: Settings = resolve(
            enabled=enabled, url=url, token=token, strict=strict, delivery=delivery
        )
        self._client = self
        self._sid = None
        self._closed = False
        self._lock = threading.Lock()
        self._diag = Diagnostics(strict=self._settings.strict, log_interval=delivery.log_interval)
        self._maxsize = delivery.max_queue_size
        self._half = delivery.max_queue_size // 2
        self._queue: deque[Item] = deque()
        # Open sessions whose start was dropped, and those of them with an event queued since.
        self._startless: set[str] = set()
        self._startless_seen: set[str] = set()
        self._transport: Transport = transport or WebSocketTransport()
        self._info = AgentInfo(
            agent_id=self.agent_id,
            name=name,
            model=model,
            status=status,
            # a lone string is one capability, not a sequence of letters
            capabilities=(capabilities,)
            if isinstance(capabilities, str)
            else tuple(capabilities or ()),
            metadata=dict(metadata or {}),
            producer_id=uuid.uuid4().hex,
        )
        self._worker: Worker | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._control = ControlHub(self._diag, self, enabled=self._settings.enabled)
        if not self._settings.enabled:
            self._put: Callable[[Item], None] = self._discard
            return
        self._put = self._enqueue
        self._start_worker()
        _lifecycle.track(self)

    # ---- configuration ----

    @property
    def enabled(self) -> bool:
        """Return whether events are reported (False: a no-op client)."""
        return self._settings.enabled

    @property
    def url(self) -> str:
        """Return the WebSocket endpoint events go to, credentials masked (`ws://***@host`,
        `?token=***`): fit for logs and screens. The connection uses the URL as given."""
        return self._settings.url

    @property
    def settings(self) -> Settings:
        """Return the resolved settings."""
        return self._settings

    @property
    def producer_id(self) -> str:
        """Return this process's producer id (reliable delivery)."""
        return self._info.producer_id

    # ---- sessions ----

    def session(
        self, session_id: str | None = None, *, metadata: Mapping[str, Any] | None = None
    ) -> Session:
        """Register a session and return it; use it in a `with` block to end it on exit."""
        if session_id is None:
            session_id = uuid.uuid4().hex
        elif not isinstance(session_id, str) or not session_id or len(session_id) > _MAX_ID:
            self._internal("session", ConfigError(f"invalid session id {session_id!r}"))
            session_id = str(session_id)[:_MAX_ID] or uuid.uuid4().hex
        return Session(self, session_id, metadata)

    @staticmethod
    def current_session() -> Session | None:
        """Return the session whose `with` block is running in this context, if any."""
        return _current_session.get()

    @staticmethod
    def current_tool_call() -> ToolCall | None:
        """Return the tool call whose block or decorated function is running here, if any."""
        return _current_call.get()

    @overload
    def tool(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def tool(
        self, name: str | None = None, /, *, pausable: bool = False, cancelable: bool = False
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def tool(self, arg: Any = None, /, *, pausable: bool = False, cancelable: bool = False) -> Any:
        """Decorate a function as a tool: each call reports into the current session."""

        def current() -> _Emitter:
            return _current_session.get() or self

        if callable(arg):
            return _wrap_tool(arg, current, arg.__name__)

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            return _wrap_tool(
                fn, current, arg or fn.__name__, pausable=pausable, cancelable=cancelable
            )

        return decorate

    # ---- delivery ----

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until everything reported so far is stored; return False after `timeout` s.

        `timeout=None` (or one past `threading.TIMEOUT_MAX`) sets no deadline: it waits until
        everything is stored or the client closes. False too while the Studio refuses the
        agent: nothing is stored then (`stats().refused`).
        """
        try:
            wait = wait_seconds(timeout)
            waiter = self._request_flush()
            if waiter is None:
                return self._nothing_pending()
            ok = waiter.event.wait(wait) and waiter.ok
            if not ok:
                waiter.abandoned = True
        except Exception as exc:
            self._internal("flush", exc)
            return False
        self._diag.raise_if_strict()
        return ok

    async def aflush(self, timeout: float | None = 5.0) -> bool:
        """Like `flush`, without blocking the running event loop."""
        try:
            wait = wait_seconds(timeout)
            waiter = self._request_flush()
        except Exception as exc:
            self._internal("flush", exc)
            return False
        if waiter is None:
            return self._nothing_pending()
        deadline = math.inf if wait is None else time.monotonic() + wait
        poll = self._settings.delivery.poll_interval or 0.001
        while not waiter.event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiter.abandoned = True
                return False
            await asyncio.sleep(min(poll, remaining))
        self._diag.raise_if_strict()
        return waiter.ok

    def close(self, timeout: float | None = 5.0) -> bool:
        """Deliver what is pending, end open sessions, close the connection; always returns.

        Returns True when everything reported before the call was stored within `timeout` s.
        `timeout=None` (or one past `threading.TIMEOUT_MAX`) sets no deadline: it waits until
        everything is stored. Later events are ignored (counted as dropped). Runs at
        interpreter exit with `shutdown_timeout`.
        """
        try:
            wait = wait_seconds(timeout)
            worker = self._begin_close(wait)
            if worker is None:
                return self._nothing_pending()
            if threading.current_thread() is worker.thread:
                return False  # called from the worker itself: waiting would only time out
            ok = worker.done.wait(wait) and worker.delivered_all
            if not worker.done.is_set():
                worker.abort()  # past the deadline: unblock stuck I/O so the thread can end
        except Exception as exc:
            self._internal("close", exc)
            return False
        self._diag.raise_if_strict()
        return ok

    async def aclose(self, timeout: float | None = 5.0) -> bool:
        """Like `close`, without blocking the running event loop."""
        try:
            wait = wait_seconds(timeout)
            worker = self._begin_close(wait)
        except Exception as exc:
            self._internal("close", exc)
            return False
        if worker is None:
            return self._nothing_pending()
        deadline = math.inf if wait is None else time.monotonic() + wait
        poll = self._settings.delivery.poll_interval or 0.001
        while not worker.done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                worker.abort()
                return False
            await asyncio.sleep(min(poll, remaining))
        self._diag.raise_if_strict()
        return worker.delivered_all

    @property
    def closed(self) -> bool:
        """Return whether `close` was called."""
        return self._closed

    def stats(self) -> Stats:
        """Return the delivery counters: queued, dropped, sent, delivered, reconnects, errors."""
        worker = self._worker
        queued = len(self._queue)
        if worker is None:
            return Stats(
                enabled=self.enabled,
                queued=queued,
                dropped=self._diag.dropped,
                internal_errors=self._diag.internal_errors,
            )
        c = worker.counters
        return Stats(
            enabled=self.enabled,
            connected=worker.connected,
            reliable=worker.reliable,
            queued=queued,
            unacked=worker.unacked,
            dropped=self._diag.dropped,
            sent=c.sent,
            delivered=c.delivered,
            resent=c.resent,
            rejected=c.rejected,
            oversized=c.oversized,
            unencodable=c.unencodable,
            undelivered=c.undelivered,
            frames=c.frames,
            connects=c.connects,
            connect_failures=c.connect_failures,
            refused=c.refused,
            disconnects=c.disconnects,
            control_messages=c.control_messages,
            internal_errors=self._diag.internal_errors,
        )

    def __enter__(self) -> StudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(self._settings.delivery.shutdown_timeout)

    async def __aenter__(self) -> StudioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose(self._settings.delivery.shutdown_timeout)

    def __repr__(self) -> str:
        state = "disabled" if not self.enabled else ("closed" if self._closed else self.url)
        return f"StudioClient({self.agent_id!r}, {state})"

    # ---- internals ----

    def _start_worker(self) -> None:
        worker = Worker(
            self._settings, self._info, self._queue, self._transport, self._diag, self._control
        )
        self._worker = worker
        timeout = self._settings.delivery.shutdown_timeout
        # Garbage-collected unclosed, the client lets its worker finish on its own thread;
        # exit closes what is left, every worker at once (`_lifecycle`).
        self._finalizer = weakref.finalize(self, _release, worker, timeout)
        self._finalizer.atexit = False
        _lifecycle.close_at_exit(worker, timeout)
        worker.start()

    def _enqueue(self, item: Item) -> None:
        queue = self._queue
        size = len(queue)
        if size < self._maxsize:
            queue.append(item)
            if size == self._half:
                # Half full: the worker takes it now, not at its next look (up to 0.1 s away
                # while the Studio is down), which a small queue would not outlast.
                worker = self._worker
                if worker is not None:
                    worker.wake()
        else:
            self._overflow(item)

    def _overflow(self, item: Item) -> None:
        queue = self._queue
        if self._settings.delivery.drop_policy is DropPolicy.DROP_OLDEST:
            try:
                oldest = queue.popleft()
            except IndexError:  # the worker emptied the queue meanwhile: room, no drop
                queue.append(item)
                return
            if oldest[0] >= OP_OPEN:
                queue.appendleft(oldest)  # sessions and flushes are never dropped
            else:
                queue.append(item)
                self._diag.drop()
                return
        self._diag.drop()

    def _put_control(self, item: Item, *, bounded: bool) -> bool:
        """Queue a session start or end; return whether it was queued.

        A `bounded` item is dropped (and counted) once the queue holds `max_queue_size` plus
        `_CONTROL_SLACK` items: a session start, and the end of a session nothing of which was
        queued. The end of a session whose start or any event was queued always is, so the
        Studio never keeps a session open that the agent ended; there is at most one per
        session open, so the queue stays bounded by the bound, the slack and the sessions open
        at once.
        """
        try:
            if self._closed or not self._settings.enabled:
                return False
            if self._put == self._start_after_fork:
                self._start_after_fork(item)
                return True
            queue = self._queue
            if bounded and len(queue) >= self._maxsize + _CONTROL_SLACK:
                self._diag.drop()
                if item[0] == OP_OPEN:
                    self._track_startless(item[1])
                self._diag.warn(
                    "session-dropped",
                    "the queue is full (the Studio is down or slow): a session %s was dropped "
                    "(counted in stats().dropped); the end of a session any of whose events "
                    "is queued is kept",
                    "start" if item[0] == OP_OPEN else "end",
                )
                return False
            queue.append(item)
            return True
        except Exception as exc:
            self._internal("session", exc)
            return False

    def _track_startless(self, session_id: str) -> None:
        """Remember a session whose start was dropped, and watch for its events being queued:
        should one get in, the Studio makes the session of it, and the session's end must
        follow. Only while such a session is open do events pay for the look-up."""
        with self._lock:
            self._startless.add(session_id)
            if self._put == self._enqueue:
                self._put = self._enqueue_watching

    def _enqueue_watching(self, item: Item) -> None:
        """Queue an event as `_enqueue`, noting which sessions without a start got one in."""
        session_id = item[1]
        # It gets in when the queue has room, or (drop_oldest) in place of the oldest event;
        # when that may have happened, the session's end is kept.
        if session_id in self._startless and (
            len(self._queue) < self._maxsize
            or self._settings.delivery.drop_policy is DropPolicy.DROP_OLDEST
        ):
            self._startless_seen.add(session_id)
        self._enqueue(item)

    def _forget_startless(self, session_id: str) -> bool:
        """The session ends: stop watching it; return whether any of its events was queued."""
        if session_id not in self._startless:
            return False
        with self._lock:
            seen = session_id in self._startless_seen
            self._startless.discard(session_id)
            self._startless_seen.discard(session_id)
            if not self._startless and self._put == self._enqueue_watching:
                self._put = self._enqueue
        return seen

    def _end_startless(self) -> None:
        """At close: end the open sessions without a start of which the Studio has events, as
        the worker ends the ones it registered (before the close item, which follows)."""
        with self._lock:
            seen, self._startless_seen = self._startless_seen, set()
            self._startless = set()
        now = _time()
        for session_id in seen:
            self._queue.append((OP_END, session_id, now, str(SessionStatus.INTERRUPTED)))

    def _discard(self, item: Item) -> None:
        pass

    def _ignore(self, item: Item) -> None:
        """Count an event reported after `close` (or the exit handler): it is not sent."""
        self._diag.drop()
        self._diag.warn(
            "after-close",
            "an event was reported after close() or the SDK's exit handler; ignored "
            "(counted in stats().dropped)",
        )

    def _stop_at_exit(self) -> None:
        """The interpreter exits: report nothing more, as after `close` (the exit handler
        closes the worker)."""
        with self._lock:
            self._closed = True
            self._put = self._ignore if self._settings.enabled else self._discard
        self._end_startless()

    def _request_flush(self) -> FlushWaiter | None:
        worker = self._worker
        if worker is None or self._closed or not worker.started or worker.done.is_set():
            return None
        if threading.current_thread() is worker.thread:
            raise InternalError("flush() called from the SDK's own worker thread")
        # Past the sessions' share of the slack: a flush still gets in behind a full queue.
        if len(self._queue) >= self._maxsize + 2 * _CONTROL_SLACK:
            return None
        waiter = FlushWaiter()
        self._queue.append((OP_FLUSH, waiter))
        worker.wake()
        return waiter

    def _nothing_pending(self) -> bool:
        worker = self._worker
        if worker is None:
            return not self._queue
        if worker.done.is_set() and self._closed:
            return worker.delivered_all
        return worker.started and not self._queue and worker.unacked == 0

    def _begin_close(self, wait: float | None) -> Worker | None:
        """Stop reporting and ask the worker to close within `wait` s (None: no deadline)."""
        with self._lock:
            first = not self._closed
            self._closed = True
            # A disabled client stays free; a closed one counts what it no longer sends.
            self._put = self._ignore if self._settings.enabled else self._discard
        self._control.close()  # whoever still waits for a person gets the default now
        if first:
            self._end_startless()
        worker = self._worker
        if worker is None or not worker.started:
            return None
        if first and self._finalizer is not None:
            self._finalizer.detach()
        # The exit handler keeps the worker until it is done: a close still under way when the
        # interpreter exits (no deadline, or called on another thread) is bounded by exit's.
        worker.request_close(math.inf if wait is None else time.monotonic() + wait)
        return worker

    def _internal(self, where: str, exc: BaseException) -> None:
        self._diag.internal(where, exc)
        if self._diag.strict:
            raise exc

    def _start_after_fork(self, item: Item) -> None:
        """In a forked child: start a fresh worker on the first event, then queue it."""
        with self._lock:
            if self._put == self._start_after_fork and not self._closed:
                self._start_worker()
                self._put = self._enqueue
                if self._worker is not None:
                    # multiprocessing children leave with os._exit(), skipping atexit.
                    _lifecycle.close_at_multiprocessing_exit(
                        functools.partial(
                            _shutdown, self._worker, self._settings.delivery.shutdown_timeout
                        )
                    )
        self._put(item)

    def _after_fork_in_child(self) -> None:
        """Forget the parent's worker, queue and producer id; the parent delivers its own."""
        self._lock = threading.Lock()
        self._diag.reset_after_fork()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._queue = deque()
        self._startless, self._startless_seen = set(), set()  # the parent's queue had them
        self._worker = None
        # The parent's requests and tool calls stay with the parent.
        self._control = ControlHub(self._diag, self, enabled=self._settings.enabled)
        if self._closed or not self._settings.enabled:
            if self._closed:
                self._control.close()
            return
        self._info = AgentInfo(
            agent_id=self._info.agent_id,
            name=self._info.name,
            model=self._info.model,
            status=self._info.status,
            capabilities=self._info.capabilities,
            metadata=self._info.metadata,
            producer_id=uuid.uuid4().hex,
            forked=True,
        )
        self._put = self._start_after_fork


def _release(worker: Worker, timeout: float) -> None:
    """The client was garbage-collected unclosed: its worker delivers what it holds for up to
    `timeout` more, then stops. Nothing waits here: the collector runs on whatever thread
    allocated last, the agent's own or its event loop's (it froze them for 2 s a client)."""
    if worker.started and not worker.done.is_set():
        wait = wait_seconds(timeout)
        worker.request_close(math.inf if wait is None else time.monotonic() + wait)


def _shutdown(worker: Worker, timeout: float) -> None:
    """Close a worker at a multiprocessing child's exit, waiting for it up to `timeout`."""
    if not worker.started or worker.done.is_set():
        return
    wait = wait_seconds(timeout)
    worker.request_close(math.inf if wait is None else time.monotonic() + wait)
    if not worker.done.wait(wait):
        worker.abort()


__all__ = ["Session", "Stats", "StudioClient", "ToolCall", "current_tool_call"]
