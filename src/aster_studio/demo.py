"""`aster-studio demo`: a Studio with simulated agents streaming to it over real WebSockets.

The agents use the real SDK (`aster_studio_sdk.StudioClient`) against the Studio's real agent
endpoint, so a newcomer sees every part of the console alive with one command: streamed text and
thinking, tool calls (some slow, some failing), token usage for several models, state changes,
errors, an agent that stalls, and agents that go offline and come back.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aster_studio_sdk import Question, Request, Session, StudioClient

from .config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEMO_STALL_AFTER_S = 8.0
APPROVAL_SHARE = 0.06  # of tool calls that ask a person first
QUESTION_SHARE = 0.03  # of steps that ask a person a question
APPROVAL_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Persona:
    """One simulated agent: who it is, which model it uses, what it talks about."""

    agent_id: str
    name: str
    model: str
    topic: str
    tools: tuple[str, ...]


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "researcher",
        "Research Agent",
        "gpt-4o",
        "the history of the transistor",
        ("web_search", "fetch_page", "summarize"),
    ),
    Persona(
        "coder",
        "Coding Agent",
        "claude-sonnet-4-20250514",
        "a flaky integration test",
        ("read_file", "run_tests", "apply_patch"),
    ),
    Persona(
        "planner",
        "Trip Planner",
        "gpt-4o-mini",
        "a three-day trip to Lisbon",
        ("search_flights", "check_weather", "book_hotel"),
    ),
    Persona(
        "reviewer",
        "Code Reviewer",
        "deepseek-chat",
        "a pull request that adds caching",
        ("git_diff", "lint", "post_comment"),
    ),
    Persona(
        "analyst",
        "Data Analyst",
        "gemini-2.0-flash",
        "last quarter's sales figures",
        ("sql_query", "plot_chart", "read_csv"),
    ),
)

_SENTENCES = (
    "Let me look at {topic} step by step.",
    "First I will gather what is already known about {topic}.",
    "The most useful sources agree on the main points.",
    "There is one detail that does not add up, so I will check it with a tool.",
    "That confirms the earlier reading.",
    "Here is a short summary of {topic}, with the open questions at the end.",
    "Nothing here needs a human decision yet.",
    "I will keep the answer short and cite what I used.",
)

_THOUGHTS = (
    "The user wants something concise. ",
    "I should verify before answering. ",
    "A tool call is cheaper than guessing here. ",
    "Two of the sources disagree; prefer the newer one. ",
)


def free_port(host: str) -> int:
    """Return a port that is free right now on `host` (for `--port 0`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(http_url: str, stop: threading.Event, timeout: float = 30.0) -> bool:
    """Poll `/healthz` until the Studio answers, `stop` is set or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(f"{http_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        stop.wait(0.1)
    return False


class SimulatedAgent:
    """Drive one persona's StudioClient in a thread until `stop` is set."""

    def __init__(
        self,
        persona: Persona,
        url: str,
        stop: threading.Event,
        *,
        seed: int,
        speed: float = 1.0,
        client_factory: Callable[..., StudioClient] = StudioClient,
    ) -> None:
        self.persona = persona
        self.url = url
        self.stop = stop
        self.rng = random.Random(seed)
        self.speed = speed
        self.client_factory = client_factory
        self.thread = threading.Thread(
            target=self._run, name=f"demo-{persona.agent_id}", daemon=True
        )
        self.runs = 0

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _sleep(self, seconds: float) -> bool:
        """Sleep scaled by speed; return False when the demo is stopping."""
        return not self.stop.wait(seconds / self.speed)

    def _client(self) -> StudioClient:
        p = self.persona
        return self.client_factory(
            p.agent_id,
            name=p.name,
            model=p.model,
            capabilities=p.tools,
            metadata={"demo": True, "topic": p.topic},
            url=self.url,
            enabled=True,
        )

    def _run(self) -> None:
        while not self.stop.is_set():
            client = self._client()
            try:
                # A few runs online, then (sometimes) offline for a while, then back.
                for _ in range(self.rng.randint(2, 4)):
                    if self.stop.is_set():
                        break
                    self._one_run(client)
                    self.runs += 1
                    client.state("idle")
                    if not self._sleep(self.rng.uniform(1.5, 4.0)):
                        break
            except Exception:  # the demo must keep going; the SDK itself never raises
                log.exception("simulated agent %s failed", self.persona.agent_id)
            finally:
                client.close(timeout=2)
            if self.stop.is_set():
                break
            self._sleep(self.rng.uniform(4.0, 9.0))

    def _stream(self, emit: Callable[[str], None], text: str, words_per_s: float) -> bool:
        for i, word in enumerate(text.split(" ")):
            emit(word if i == 0 else " " + word)
            if not self._sleep(1.0 / words_per_s):
                return False
        return True

    def _one_run(self, client: StudioClient) -> None:
        p, rng = self.persona, self.rng
        with client.session(metadata={"topic": p.topic}) as s:
            s.state("working")
            for step in range(1, rng.randint(2, 4) + 1):
                if self.stop.is_set():
                    return
                t0 = time.monotonic()
                self._think(s, step)
                self._say(s, step, rng.sample(_SENTENCES, 2))
                self._report_tokens(s)
                if rng.random() < 0.8:
                    self._tool(s, rng.choice(p.tools), step)
                if rng.random() < 0.12:
                    s.error(
                        "model returned an empty completion; retrying",
                        severity="warn",
                        phase="model",
                        detail={"attempt": 1, "model": p.model},
                    )
                if rng.random() < 0.06:
                    s.error(
                        "rate limited by the provider (429)",
                        severity="error",
                        phase="model",
                        detail={"retry_after_s": 2, "model": p.model},
                    )
                if rng.random() < QUESTION_SHARE:
                    answers = self._await(
                        s.ask_user(
                            [
                                Question(
                                    f"Which sources should I trust for {p.topic}?",
                                    options=["official docs", "recent blog posts", "both"],
                                ),
                                Question("Anything else I should know?"),
                            ],
                            timeout=APPROVAL_TIMEOUT_S,
                            on_answer=lambda _: None,
                        )
                    )
                    s.text(f"(noted: {answers.answers or 'no answer, going on'}) ", step=step)
                if p.agent_id == "planner" and rng.random() < 0.25:
                    # Working but silent for longer than the stall threshold: shows "stalled".
                    self._sleep(DEMO_STALL_AFTER_S + 3)
                s.step_complete(step, duration_ms=round((time.monotonic() - t0) * 1000, 1))
            self._say(s, 99, [_SENTENCES[5].format(topic=p.topic)])
            self._report_tokens(s)
            s.done("completed")
            s.state("completed")

    def _await(self, request: Request[T]) -> T:
        """Wait for a person's answer, but give up (the SDK's default) when the demo stops."""
        while not request.done() and not self.stop.wait(0.1):
            pass
        return request.result() if request.done() else request.cancel()

    def _think(self, s: Session, step: int) -> None:
        s.thinking_start(step=step)
        text = "".join(self.rng.sample(_THOUGHTS, 2)).strip()
        self._stream(lambda d: s.thinking(d, step=step), text, 40)
        s.thinking_end(step=step)

    def _say(self, s: Session, step: int, sentences: list[str]) -> None:
        text = " ".join(x.format(topic=self.persona.topic) for x in sentences)
        s.text_start(step=step)
        if self._stream(lambda d: s.text(d, step=step), text, 25):
            s.text_end(text, step=step)

    def _report_tokens(self, s: Session) -> None:
        rng = self.rng
        s.token_usage(rng.randint(400, 3000), rng.randint(60, 600), model=self.persona.model)
        if rng.random() < 0.2:
            # A cheap helper model, as real agents use for routing or summaries.
            s.token_usage(rng.randint(100, 500), rng.randint(20, 80), model="gpt-4o-mini")

    def _tool(self, s: Session, name: str, step: int) -> None:
        rng = self.rng
        slow = rng.random() < 0.3
        fails = rng.random() < 0.15
        args = {"query": self.persona.topic, "step": step, "limit": rng.choice([5, 10, 20])}
        try:
            with s.tool_call(name, args, pausable=slow, cancelable=slow) as call:
                if rng.random() < APPROVAL_SHARE:
                    # Sensitive calls wait for a person (the console's inbox); unanswered, the
                    # SDK's default (deny) applies after the timeout.
                    decision = self._await(
                        s.request_permission(
                            call, timeout=APPROVAL_TIMEOUT_S, on_decision=lambda _: None
                        )
                    )
                    if not decision:
                        call.result = {"skipped": True, "reason": decision.reason or "denied"}
                        return
                parts = rng.randint(3, 6) if slow else 1
                for i in range(parts):
                    if not self._sleep(rng.uniform(0.6, 1.4) if slow else rng.uniform(0.1, 0.5)):
                        return
                    call.wait_if_paused()
                    if call.cancelled:
                        return
                    if slow:
                        call.progress((i + 1) / parts, f"{i + 1} of {parts} done")
                if fails:
                    raise TimeoutError(f"{name} did not answer within 30 s")
                call.result = {"ok": True, "items": rng.randint(1, 12), "source": name}
        except TimeoutError as exc:
            s.error(str(exc), severity="error", phase="tool", detail={"tool": name, "args": args})


def start_agents(
    url: str, stop: threading.Event, count: int = 5, *, speed: float = 1.0
) -> list[SimulatedAgent]:
    """Start `count` simulated agents (personas repeat with numbered ids past five)."""
    agents = []
    for i in range(count):
        base = PERSONAS[i % len(PERSONAS)]
        persona = base
        if i >= len(PERSONAS):
            n = i // len(PERSONAS) + 1
            persona = dataclasses.replace(
                base, agent_id=f"{base.agent_id}-{n}", name=f"{base.name} {n}"
            )
        agent = SimulatedAgent(persona, url, stop, seed=1000 + i, speed=speed)
        agent.start()
        agents.append(agent)
    return agents


def demo_settings(settings: Settings) -> Settings:
    """Give the demo its own database, a real port and a short stall threshold."""
    changes: dict[str, object] = {}
    if not settings.db:
        folder = Path(tempfile.mkdtemp(prefix="aster-studio-demo-"))
        changes["db"] = str(folder / "demo.db")
    if settings.port == 0:
        changes["port"] = free_port(settings.host)
    if settings.stall_after_s == Settings().stall_after_s:
        changes["stall_after_s"] = DEMO_STALL_AFTER_S
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def run_demo(settings: Settings, agents: int = 5) -> None:
    """Serve a Studio in this thread and stream simulated agents to it until interrupted."""
    from .cli import serve  # late: cli imports this module lazily too

    own_db = not settings.db
    settings = demo_settings(settings)
    # The simulated agents share this process with the Studio: on Ctrl-C the Studio stops first
    # and their SDKs would warn about the lost connection, which is expected here.
    logging.getLogger("aster_studio_sdk").setLevel(logging.ERROR)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    http_url = f"http://{host}:{settings.port}"
    stop = threading.Event()
    started: list[SimulatedAgent] = []

    def launch() -> None:
        if not wait_healthy(http_url, stop):
            log.error("the demo Studio did not come up at %s", http_url)
            return
        started.extend(start_agents(f"ws://{host}:{settings.port}", stop, agents))
        print(
            f"Demo: {agents} simulated agents are streaming. Open {http_url}/studio/ "
            "(Ctrl-C stops).",
            flush=True,
        )

    launcher = threading.Thread(target=launch, name="demo-launcher", daemon=True)
    launcher.start()
    try:
        serve(settings)
    finally:
        stop.set()
        for agent in started:
            agent.join(3)
        if own_db:  # the demo's own temporary database: every run left one behind
            shutil.rmtree(Path(settings.db).parent, ignore_errors=True)
