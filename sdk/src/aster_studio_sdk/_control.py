"""Steering from the Studio: permission requests, questions and tool control (docs/sdk.md).

The worker thread hands every `control` message to the client's `ControlHub`. Blocking, asyncio
and callback waits all wait on the same `Request`, which resolves exactly once: with the
Studio's answer, or with a default when the deadline passes, the server has no control channel,
the client is disabled or closed. Nothing here waits without a deadline unless the agent asks
for none (`timeout=None`), and even then `close()` ends the wait; no user code runs on the
worker thread: callbacks and tool-control handlers run on one small "control" thread,
started the first time it is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from ._diagnostics import Diagnostics
from ._errors import ControlError
from .protocol import Control

logger = logging.getLogger("aster_studio_sdk")

T = TypeVar("T")

DEFAULT_TIMEOUT = 300.0  # seconds a person has to answer unless the call says otherwise
_REMEMBER = 1024  # finished requests and handled controls remembered (repeat deliveries)


class SdkThread(threading.Thread):
    """A thread of the SDK's own (worker, connect, control): a blocking control call made on
    one would stall the SDK, so it is refused there."""


def unbounded(timeout: float | None) -> bool:
    """Return whether `timeout` sets no deadline: None, or longer than a thread can wait
    (threading.TIMEOUT_MAX, about 292 years: a longer wait raises OverflowError)."""
    return timeout is None or timeout >= threading.TIMEOUT_MAX


def wait_seconds(timeout: float | None) -> float | None:
    """Return how long a wait for `timeout` may last: None for no deadline (as `unbounded`),
    else the timeout, at least 0 (NaN: 0), so that no wait raises OverflowError."""
    if timeout is None or unbounded(timeout):
        return None
    return timeout if timeout > 0 else 0.0


def deadline_after(timeout: float | None) -> float | None:
    """Return the monotonic time `timeout` s from now (a negative timeout: now); None for none."""
    if timeout is None or unbounded(timeout):
        return None
    return time.monotonic() + (timeout if timeout > 0 else 0.0)  # NaN: now, as 0 would be


class Source(StrEnum):
    """Where a result came from."""

    STUDIO = "studio"  # a person decided in the Studio (console or REST)
    DEFAULT = "default"  # nobody did in time, or could not: the request's default


class Reason(StrEnum):
    """Why a request resolved as it did."""

    DECIDED = "decided"  # the Studio's answer arrived (source studio)
    TIMEOUT = "timeout"  # the timeout passed while connected
    DISCONNECTED = "disconnected"  # the timeout passed while the Studio was unreachable
    UNSUPPORTED = "unsupported"  # the server has no control channel (at-most-once mode)
    DISABLED = "disabled"  # the client is disabled: nothing is sent, nobody can answer
    CLOSED = "closed"  # the client was closed
    CANCELLED = "cancelled"  # the agent gave up waiting (cancel(), or a cancelled task)
    ERROR = "error"  # the SDK failed internally (logged; strict mode raises instead)
    UNDELIVERABLE = "undeliverable"  # the request could not be sent (too large, not JSON)


class Permission(StrEnum):
    """A permission decision."""

    ALLOW = "allow"
    DENY = "deny"


class ToolAction(StrEnum):
    """What the Studio can ask of a running tool call."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to `request_permission`; true when allowed (so `if decision:` is safe)."""

    call_id: str
    decision: Permission
    source: Source
    reason: Reason
    note: str | None = None
    decided_by: str | None = None
    request_id: str | None = None  # the Studio's request id, when it decided

    @property
    def allowed(self) -> bool:
        """Return whether the call may run."""
        return self.decision is Permission.ALLOW

    @property
    def from_studio(self) -> bool:
        """Return whether a person decided (rather than the default)."""
        return self.source is Source.STUDIO

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class Answers:
    """The answer to `ask_user`: `answers` maps each question to its answer."""

    request_id: str
    answers: dict[str, Any]
    source: Source
    reason: Reason
    decided_by: str | None = None

    @property
    def answered(self) -> bool:
        """Return whether a person answered (rather than the default)."""
        return self.source is Source.STUDIO

    def get(self, question: str, default: Any = None) -> Any:
        """Return the answer to one question."""
        return self.answers.get(question, default)


@dataclass(frozen=True, slots=True)
class ToolControl:
    """A pause, resume or cancel for a running tool call, as handlers receive it."""

    call_id: str
    action: ToolAction
    note: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a question."""

    label: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Question:
    """One question for `ask_user`: options to choose from (none: free text)."""

    question: str
    options: Sequence[Option | str] = ()
    header: str | None = None
    multi_select: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return EVENTS.md's question shape."""
        return {
            "question": self.question,
            "header": self.header if self.header is not None else self.question[:40],
            "multi_select": self.multi_select,
            "options": [
                {"label": o, "description": ""}
                if isinstance(o, str)
                else {"label": o.label, "description": o.description}
                for o in self.options
            ],
        }


def question_dicts(
    questions: Question | str | Mapping[str, Any] | Sequence[Question | Mapping[str, Any] | str],
) -> list[dict[str, Any]]:
    """Normalise what `ask_user` accepts into EVENTS.md's `questions[]`."""
    if isinstance(questions, (Question, str, Mapping)):
        questions = [questions]  # one question, not a sequence of them
    out: list[dict[str, Any]] = []
    for q in questions:
        if isinstance(q, Question):
            out.append(q.to_dict())
        elif isinstance(q, str):
            out.append(Question(q).to_dict())
        else:
            out.append(dict(q))
    return out


class Emits(Protocol):
    """Anything that reports events: a session or the client itself."""

    def event(self, channel: str, event_type: str, /, **fields: Any) -> None: ...


class Mode(StrEnum):
    """What the hub knows about the connection."""

    CONNECTING = "connecting"  # not connected yet (or again)
    CONTROL = "control"  # connected to a server that sends control messages
    NO_CONTROL = "no_control"  # connected at-most-once: no control messages will come
    DISABLED = "disabled"
    CLOSED = "closed"


PERMISSION, QUESTION = "permission", "question"


class Request(Generic[T]):
    """One question to a person, pending until answered or its deadline passes.

    The callback forms return it: `done()`, `result()` (waits, never past the deadline) and
    `cancel()` (resolve now with the default). `deadline` is None when there is none.
    """

    __slots__ = (
        "_callback",
        "_default",
        "_event",
        "_futures",
        "_hub",
        "_result",
        "ask_id",
        "asked",
        "deadline",
        "emitter",
        "key",
        "kind",
    )

    def __init__(
        self,
        hub: ControlHub,
        kind: str,
        key: str,
        emitter: Emits,
        deadline: float | None,
        default: Callable[[Reason], T],
        callback: Callable[[T], object] | None,
        ask_id: str | None = None,
        asked: Any = None,
    ) -> None:
        self._hub = hub
        self.kind = kind
        self.key = key
        self.ask_id = ask_id  # this one ask, echoed by the Studio with its answer
        self.asked = asked  # what was asked (the call, the questions)
        self.emitter = emitter
        self.deadline = deadline
        self._default = default
        self._callback = callback
        self._event = threading.Event()
        self._result: T | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[T]]] = []

    def done(self) -> bool:
        """Return whether the request has its result."""
        return self._event.is_set()

    def result(self) -> T:
        """Wait for the result, at most until the deadline; refuse on the SDK's own threads."""
        result = self._result
        if result is not None:
            return result  # nothing to wait for: fine on any thread
        self._hub.check_may_block()
        deadline = self.deadline
        remaining = None if deadline is None else deadline - time.monotonic()
        if (remaining is None or remaining > 0) and self._event.wait(remaining):
            assert self._result is not None
            return self._result
        return self._hub.expire(self)

    async def wait_async(self) -> T:
        """Wait without blocking the running event loop, at most until the deadline."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._hub.add_future(self, loop, future):
            assert self._result is not None
            return self._result
        deadline = self.deadline
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return await asyncio.wait_for(future, remaining)
        except TimeoutError:
            return self._hub.expire(self)
        except asyncio.CancelledError:
            self._hub.expire(self, Reason.CANCELLED)
            raise

    def cancel(self) -> T:
        """Stop waiting: resolve with the default now (or return the result if already in)."""
        return self._hub.expire(self, Reason.CANCELLED)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"Request({self.kind}, {self.key!r}, {state})"


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


class Dispatcher:
    """The control thread: runs callbacks and handlers, and expires callback-form requests."""

    def __init__(self, diag: Diagnostics) -> None:
        self._diag = diag
        self._cond = threading.Condition()
        self._jobs: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._count = itertools.count()
        self._stopping = False
        self._exited = False
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """Return the control thread, if started."""
        return self._thread

    def submit(self, job: Callable[[], None]) -> bool:
        """Run `job` on the control thread soon; False when the thread has ended (run it now)."""
        with self._cond:
            if self._stopping and (self._thread is None or self._exited):
                return False
            self._jobs.append(job)
            self._ensure_started()
            self._cond.notify()
            return True

    def at(self, when: float, job: Callable[[], None]) -> None:
        """Run `job` on the control thread at monotonic time `when`."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._timers, (when, next(self._count), job))
            self._ensure_started()
            self._cond.notify()

    def stop(self) -> None:
        """Finish the jobs queued so far, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def _ensure_started(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = SdkThread(target=self._run, name="aster-studio-sdk-control", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    while self._timers and self._timers[0][0] <= now:
                        self._jobs.append(heapq.heappop(self._timers)[2])
                    if self._jobs or self._stopping:
                        break
                    timeout = self._timers[0][0] - now if self._timers else None
                    self._cond.wait(timeout)
                if not self._jobs:
                    self._exited = True  # stopping, nothing left
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception as exc:
                self._diag.internal("control", exc)


class CallControl:
    """The pause/cancel state of one controllable tool call; set by the Studio, read by it."""

    __slots__ = ("cancelled", "cond", "handlers", "note", "paused")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.paused = False
        self.cancelled = False
        self.note: str | None = None
        self.handlers: list[Callable[[ToolControl], object]] = []

    def wait_running(self, timeout: float | None) -> bool:
        """Wait while paused (and not cancelled); return whether the call may go on."""
        with self.cond:
            self.cond.wait_for(
                lambda: self.cancelled or not self.paused, None if unbounded(timeout) else timeout
            )
            return not self.cancelled


class Controllable(Protocol):
    """What the hub needs of a tool call (`ToolCall` in _client.py)."""

    id: str
    pausable: bool
    cancelable: bool

    @property
    def control_state(self) -> CallControl | None: ...

    @property
    def control_emitter(self) -> Emits: ...

    def _controlled(self, action: ToolAction, note: str | None) -> None: ...


class ControlHub:
    """Match the Studio's control messages to the requests and tool calls waiting for them."""

    def __init__(self, diag: Diagnostics, fallback: Emits, *, enabled: bool) -> None:
        self._diag = diag
        # Reports for what belongs to no session: the client (weakly: the worker thread holds
        # this hub, and a client dropped without close() must still be collected).
        self._fallback_ref = weakref.ref(fallback)
        self._lock = threading.Lock()
        self._mode = Mode.CONNECTING if enabled else Mode.DISABLED
        self._open: dict[tuple[str, str], list[Request[Any]]] = {}
        # key -> (result, the asker (weakly), acknowledged since, ask id): for repeat and late
        # deliveries
        self._finished: OrderedDict[
            tuple[str, str], tuple[Any, weakref.ref[Emits], bool, str | None]
        ] = OrderedDict()
        self._calls: dict[str, Controllable] = {}
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._dispatcher = Dispatcher(diag)

    @property
    def mode(self) -> Mode:
        """Return what the hub knows about the connection."""
        return self._mode

    # ---- from the agent's threads ----

    def check_may_block(self) -> None:
        """Refuse a blocking wait on a thread that must never block (it would stall the SDK)."""
        if isinstance(threading.current_thread(), SdkThread):
            raise ControlError(
                "a blocking control call (request_permission, ask_user, result()) was made on "
                "the SDK's own thread, which would stall it: use the callback form "
                "(on_decision=/on_answer=) or call it from your own thread"
            )
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._diag.warn(
                "blocking-in-loop",
                "a blocking control call is waiting inside a running event loop (it blocks the "
                "loop); use arequest_permission / aask_user in async code",
            )

    def open(
        self,
        kind: str,
        key: str,
        emitter: Emits,
        timeout: float | None,
        default: Callable[[Reason], T],
        callback: Callable[[T], object] | None,
        ask_id: str | None = None,
        asked: Any = None,
    ) -> Request[T]:
        """Register a request before it is reported, so no quick answer can be missed.

        The same question asked again by the same asker while the first waits joins it (same
        `ask_id`): one request in the Studio, one answer for both.
        With no deadline (`unbounded(timeout)`) it waits until answered, cancelled or closed.
        """
        with self._lock:
            mode = self._mode
            group = self._open.setdefault((kind, key), [])
            for other in group:
                if other.emitter is emitter and asked is not None and other.asked == asked:
                    ask_id = other.ask_id
                    break
            request = Request(
                self, kind, key, emitter, deadline_after(timeout), default, callback, ask_id, asked
            )
            if mode in (Mode.CONNECTING, Mode.CONTROL):
                group.append(request)
            elif not group:
                del self._open[(kind, key)]
        if mode is Mode.DISABLED:
            self._resolve(request, default(Reason.DISABLED))
        elif mode is Mode.CLOSED:
            self._resolve(request, default(Reason.CLOSED))
        elif mode is Mode.NO_CONTROL:
            self._resolve(request, default(Reason.UNSUPPORTED))
        elif callback is not None and request.deadline is not None:

            def expire() -> None:
                self.expire(request)

            self._dispatcher.at(request.deadline, expire)
        return request

    def resolved(
        self,
        kind: str,
        key: str,
        emitter: Emits,
        result: T,
        callback: Callable[[T], object] | None,
    ) -> Request[T]:
        """Return a request that already has its result (used when the SDK itself failed)."""
        request = Request(self, kind, key, emitter, time.monotonic(), lambda _: result, callback)
        self._resolve(request, result)
        return request

    def add_future(
        self, request: Request[T], loop: asyncio.AbstractEventLoop, future: asyncio.Future[T]
    ) -> bool:
        """Have `future` settled with the result; False when the result is already there."""
        with self._lock:
            if request._result is not None:
                return False
            request._futures.append((loop, future))
            return True

    def expire(self, request: Request[T], reason: Reason | None = None) -> T:
        """Resolve with the default (when nothing else did first); return the result."""
        if reason is None:
            reason = Reason.TIMEOUT if self._mode is Mode.CONTROL else Reason.DISCONNECTED
        if request._result is not None:
            return request._result
        return self._resolve(request, request._default(reason))

    def track(self, call: Controllable) -> None:
        """Route tool controls for this running call to it."""
        with self._lock:
            self._calls[call.id] = call

    def untrack(self, call: Controllable) -> None:
        """The call finished: answer later controls with "not running"."""
        with self._lock:
            if self._calls.get(call.id) is call:
                del self._calls[call.id]

    # ---- from the worker thread ----

    def connected(self, reliable: bool) -> None:
        """A connection was registered; without the extensions no control message will come."""
        with self._lock:
            if self._mode is Mode.CLOSED:
                return
            self._mode = Mode.CONTROL if reliable else Mode.NO_CONTROL
            waiting = [] if reliable else self._take_all()
        for request in waiting:
            self._resolve(request, request._default(Reason.UNSUPPORTED))

    def disconnected(self) -> None:
        """The connection was lost; requests keep waiting (a reconnect may bring the answer)."""
        with self._lock:
            if self._mode is not Mode.CLOSED:
                self._mode = Mode.CONNECTING

    def deliver(self, msg: Control) -> None:
        """Apply one `control` message from the Studio."""
        data = msg.data
        if msg.event_type == "permission_decided":
            key = data.get("call_id")
            if isinstance(key, str):
                self._decided(PERMISSION, key, msg)
        elif msg.event_type == "user_answer":
            key = data.get("request_id")
            if isinstance(key, str):
                self._decided(QUESTION, key, msg)
        elif msg.event_type == "tool_control":
            self._tool_control(data)
        else:
            logger.debug("control message %r ignored: unknown to this SDK", msg.event_type)

    def undeliverable(self, kind: str, key: str, ask_id: str) -> None:
        """The request for this ask was dropped unsent: nobody can answer it, so resolve it
        with its default now."""
        with self._lock:
            waiting = [r for r in self._open.get((kind, key), ()) if r.ask_id == ask_id]
        for request in waiting:
            self._resolve(request, request._default(Reason.UNDELIVERABLE))

    # ---- from the client's close ----

    def close(self) -> None:
        """Resolve everything still waiting with the default; stop the control thread."""
        with self._lock:
            self._mode = Mode.CLOSED
            waiting = self._take_all()
        for request in waiting:
            self._resolve(request, request._default(Reason.CLOSED))
        self._dispatcher.stop()

    # ---- internals ----

    def _take_all(self) -> list[Request[Any]]:
        waiting = [r for group in self._open.values() for r in group]
        self._open.clear()
        return waiting

    def _resolve(self, request: Request[T], result: T) -> T:
        """Give the request its result unless it has one; return the one it keeps."""
        with self._lock:
            if request._result is not None:
                return request._result
            request._result = result
            key = (request.kind, request.key)
            group = self._open.get(key)
            if group is not None:
                with contextlib.suppress(ValueError):
                    group.remove(request)
                if not group:
                    del self._open[key]
            from_studio = getattr(result, "source", None) is Source.STUDIO
            self._remember(
                self._finished,
                key,
                (result, weakref.ref(request.emitter), from_studio, request.ask_id),
            )
            futures, request._futures = request._futures, []
        request._event.set()
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
                loop.call_soon_threadsafe(_settle, future, result)
        callback = request._callback
        if callback is not None:

            def run() -> None:
                self._call_user(callback, result)

            # A disabled client starts no thread; a closed one has none left: run it here.
            if self._mode is Mode.DISABLED or not self._dispatcher.submit(run):
                run()
        return result

    def _call_user(self, fn: Callable[[Any], object], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            if self._diag.should_log("callback"):
                logger.exception("a control callback raised (ignored)")

    @staticmethod
    def _remember(store: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > _REMEMBER:
            store.popitem(last=False)

    def _decided(self, kind: str, key: str, msg: Control) -> None:
        """Apply a decision to the ask it was made for, and to no other.

        A Studio names that ask (`ask_id`); one that does not (an older Studio) is matched by
        key, but only to a request waiting now. A decision for an ask this process did not make
        (an earlier run's, sent when this one registered) is never kept for a later request
        with the same key: that request may ask something else entirely.
        """
        ask_id = msg.data.get("ask_id")
        if not isinstance(ask_id, str):
            ask_id = None

        def same(asked: str | None) -> bool:
            return ask_id is None or asked == ask_id

        with self._lock:
            waiting = [r for r in self._open.get((kind, key), ()) if same(r.ask_id)]
            finished = self._finished.get((kind, key))
        if waiting:
            result = _studio_result(kind, key, msg.data, waiting[0].asked)
            applied = [r for r in waiting if self._resolve(r, result) is result]
            if applied:
                first = applied[0]
                self._acknowledge(first.emitter, kind, result, applied=True, ask_id=first.ask_id)
                return
            with self._lock:
                finished = self._finished.get((kind, key))
        if finished is None or not same(finished[3]):
            logger.debug("a decision for %s %r ignored: not asked by this process", kind, key)
            return
        if finished[2]:
            return  # a repeat delivery of what was applied: at least once, ignore
        # Decided after the agent went on with its default: say so, once.
        result, ref, _, asked = finished
        with self._lock:
            self._finished[(kind, key)] = (result, ref, True, asked)
        emitter = ref()
        if emitter is not None:
            self._acknowledge(emitter, kind, result, applied=False, studio=msg.data, ask_id=asked)

    def _acknowledge(
        self,
        emitter: Emits,
        kind: str,
        result: Any,
        *,
        applied: bool,
        studio: Mapping[str, Any] | None = None,
        ask_id: str | None = None,
    ) -> None:
        """Report the event the Studio records as the agent's acknowledgement."""
        if kind == PERMISSION:
            fields: dict[str, Any] = {
                "call_id": result.call_id,
                "decision": str(result.decision),
                "decided_by": result.decided_by,
                "applied": applied,
            }
            if result.note:
                fields["note"] = result.note
            if not applied:
                fields["reason"] = str(result.reason)
                fields["decided_by"] = (studio or {}).get("decided_by")
            if ask_id is not None:
                fields["ask_id"] = ask_id
            emitter.event("control", "permission_decided", **fields)
        else:
            fields = {
                "request_id": result.request_id,
                "answers": result.answers,
                "decided_by": result.decided_by,
                "applied": applied,
            }
            if not applied:
                fields["reason"] = str(result.reason)
                fields["decided_by"] = (studio or {}).get("decided_by")
            if ask_id is not None:
                fields["ask_id"] = ask_id
            emitter.event("control", "user_answer", **fields)

    def _tool_control(self, data: Mapping[str, Any]) -> None:
        call_id = data.get("call_id")
        raw_id = data.get("request_id")
        request_id = raw_id if isinstance(raw_id, str) else None
        if request_id is not None:
            with self._lock:
                if request_id in self._handled:
                    return  # a repeat delivery
                self._remember(self._handled, request_id, None)
        if not isinstance(call_id, str):
            return

        def respond(emitter: Emits, action: str, ok: bool, reason: str | None) -> None:
            self._respond(emitter, request_id, call_id, action, ok, reason)

        try:
            action = ToolAction(str(data.get("action")))
        except ValueError:
            respond(self._fallback(), str(data.get("action")), False, "unknown action")
            return
        note = data.get("note") if isinstance(data.get("note"), str) else None
        with self._lock:
            call = self._calls.get(call_id)
        if call is None:
            respond(self._fallback(), action, False, "no such running tool call")
            return
        emitter = call.control_emitter
        state = call.control_state
        allowed = call.cancelable if action is ToolAction.CANCEL else call.pausable
        if state is None or not allowed:
            what = "cancelable" if action is ToolAction.CANCEL else "pausable"
            respond(emitter, action, False, f"the tool call is not {what}")
            return
        with state.cond:
            if state.cancelled:
                reason = "already cancelled"
                ok = action is ToolAction.CANCEL
            else:
                ok, reason = True, ""
                if action is ToolAction.CANCEL:
                    state.cancelled = True
                    state.note = note
                else:
                    state.paused = action is ToolAction.PAUSE
                state.cond.notify_all()
        if not ok or reason:
            respond(emitter, action, ok, reason or None)
            return
        call._controlled(action, note)
        handlers = list(state.handlers)
        if not handlers:
            respond(emitter, action, True, None)
            return
        control = ToolControl(call_id, action, note, request_id)

        def run_handlers() -> None:
            for handler in handlers:
                try:
                    handler(control)
                except Exception as exc:
                    respond(emitter, action, False, f"{type(exc).__name__}: {exc}")
                    return
            respond(emitter, action, True, None)

        if not self._dispatcher.submit(run_handlers):  # closing: no user code on the worker
            respond(emitter, action, True, "handlers skipped: client closing")

    def _fallback(self) -> Emits:
        return self._fallback_ref() or _NOWHERE

    @staticmethod
    def _respond(
        emitter: Emits,
        request_id: str | None,
        call_id: str,
        action: str,
        ok: bool,
        reason: str | None,
    ) -> None:
        """Report the agent's response to one tool control; `request_id` names that control
        (a pause and a cancel sent together are answered separately, maybe out of order)."""
        fields: dict[str, Any] = {"call_id": call_id, "action": str(action), "ok": ok}
        if request_id is not None:
            fields["request_id"] = request_id
        if reason:
            fields["reason"] = reason
        emitter.event("control", "tool_control_response", **fields)


class _Nowhere:
    """Where reports go once the client is gone."""

    def event(self, channel: str, event_type: str, /, **fields: Any) -> None:
        pass


_NOWHERE = _Nowhere()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _studio_result(
    kind: str, key: str, data: Mapping[str, Any], asked: Any = None
) -> Decision | Answers:
    if kind == PERMISSION:
        # Anything but an explicit allow denies: a garbled decision must not run a tool.
        decision = Permission.ALLOW if data.get("decision") == "allow" else Permission.DENY
        return Decision(
            call_id=key,
            decision=decision,
            source=Source.STUDIO,
            reason=Reason.DECIDED,
            note=_text(data.get("note")),
            decided_by=_text(data.get("decided_by")),
            request_id=_text(data.get("request_id")),
        )
    answers = data.get("answers")
    if isinstance(answers, list):
        # Answers in the order of the questions (the Studio keys them; older ones did not).
        texts = [q.get("question") for q in asked if isinstance(q, Mapping)] if asked else []
        if len(texts) == len(answers) and all(isinstance(t, str) for t in texts):
            answers = dict(zip(texts, answers, strict=True))
        else:
            answers = {str(i): a for i, a in enumerate(answers)}
    return Answers(
        request_id=key,
        answers=dict(answers) if isinstance(answers, dict) else {},
        source=Source.STUDIO,
        reason=Reason.DECIDED,
        decided_by=_text(data.get("decided_by")),
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "Answers",
    "CallControl",
    "ControlHub",
    "Decision",
    "Option",
    "Permission",
    "Question",
    "Reason",
    "Request",
    "Source",
    "ToolAction",
    "ToolControl",
]
