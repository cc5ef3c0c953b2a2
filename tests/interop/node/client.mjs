// A remote agent written in JavaScript with the `ws` package, as a user outside Python would.
//
// It sends the exact messages of the user's document (remote-agent-integration.zh.md): register
// with an agent object, register_session, the four example events and a JSON ping; then, on a
// second connection, the envelope shape the original Go server reads (DASHBOARD-API.md 4.15).
// Any reply other than the expected one, in order, fails the run.
//
//   node client.mjs ws://127.0.0.1:PORT        exit 0: every reply was as expected
//                                              exit 1: an unexpected reply or a closed socket
//                                              exit 2: usage error or the overall deadline
//
// ASTER_TEST_TIMEOUT_SCALE scales every timeout (as in the Python tests).

import WebSocket from "ws";

const SCALE = Number(process.env.ASTER_TEST_TIMEOUT_SCALE || "1") || 1;
const STEP_MS = 5000 * SCALE; // one reply
const QUIET_MS = 300; // after the last reply: nothing else may arrive
const DEADLINE_MS = 30000 * SCALE; // the whole run

const base = process.argv[2];
if (!base || !/^wss?:\/\//.test(base)) {
  console.error("usage: node client.mjs ws://HOST:PORT");
  process.exit(2);
}
const url = base.replace(/\/+$/, "") + "/v1/remote-agents/connect";

const deadline = setTimeout(() => {
  console.error(`interop: gave up after ${DEADLINE_MS} ms`);
  process.exit(2);
}, DEADLINE_MS);

class Failure extends Error {}

/** One agent connection: send JSON, and expect each reply in turn. */
class Conversation {
  constructor(name) {
    this.name = name;
    this.inbox = [];
    this.waiter = null;
    this.closed = null;
    this.greeted = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: STEP_MS, perMessageDeflate: false });
      this.ws = ws;
      ws.once("open", resolve);
      ws.once("error", (err) => reject(new Failure(`${this.name}: ${err.message}`)));
      ws.on("message", (data, isBinary) => this.receive(data, isBinary));
      ws.on("close", (code) => {
        this.closed = code;
        this.wakeUp();
      });
    });
  }

  receive(data, isBinary) {
    let msg;
    try {
      msg = isBinary ? { binary: true } : JSON.parse(data.toString("utf8"));
    } catch {
      msg = { unparsable: data.toString("utf8") };
    }
    // PROTOCOL.md allows one greeting on open, as the original server sent.
    if (!this.greeted && msg && msg.type === "connected") {
      this.greeted = true;
      return;
    }
    this.inbox.push(msg);
    this.wakeUp();
  }

  wakeUp() {
    if (this.waiter) {
      const wake = this.waiter;
      this.waiter = null;
      wake();
    }
  }

  send(msg) {
    this.ws.send(JSON.stringify(msg));
  }

  /** Wait for the next message and check it; any other message is a failure. */
  async expect(what, check) {
    const until = Date.now() + STEP_MS;
    while (this.inbox.length === 0) {
      if (this.closed !== null) {
        throw new Failure(`${this.name}: closed (${this.closed}) while waiting for ${what}`);
      }
      const left = until - Date.now();
      if (left <= 0) throw new Failure(`${this.name}: no ${what} within ${STEP_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const msg = this.inbox.shift();
    if (!check(msg)) {
      throw new Failure(`${this.name}: expected ${what}, got ${JSON.stringify(msg)}`);
    }
    return msg;
  }

  /** Nothing more may arrive for a short while (an error reply to an event, say). */
  async expectQuiet() {
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    if (this.inbox.length) {
      throw new Failure(`${this.name}: unexpected ${JSON.stringify(this.inbox[0])}`);
    }
    if (this.closed !== null) throw new Failure(`${this.name}: closed (${this.closed})`);
  }

  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, STEP_MS);
      this.ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close(1000, "done");
    });
  }
}

/** The document's client, message for message (its Go StudioClient, and its JSON examples). */
async function documentClient() {
  const agentID = "agent-123";
  const c = new Conversation("flat");
  await c.open();

  // 注册 Agent
  c.send({
    type: "register",
    agent: {
      id: "agent-123",
      name: "Writing Agent",
      status: "ready",
      model: "claude-3-5-sonnet",
      capabilities: ["writing", "editing"],
    },
  });
  await c.expect("registered", (m) => m.type === "registered" && m.agent_id === agentID);

  // 注册 Session
  c.send({
    type: "register_session",
    session: {
      id: "session-456",
      agent_id: "agent-123",
      created_at: "2024-01-01T12:00:00Z",
    },
  });
  await c.expect(
    "session_registered",
    (m) => m.type === "session_registered" && m.session_id === "session-456",
  );

  // 发送事件: SendEvent wraps each event as {type, agent_id, event}
  const sendEvent = (event) => c.send({ type: "event", agent_id: agentID, event });
  sendEvent({ channel: "monitor", event_type: "token_usage", input_tokens: 100, output_tokens: 50 });
  sendEvent({ channel: "monitor", event_type: "state_changed", state: "working" });
  sendEvent({ channel: "monitor", event_type: "error", severity: "error", message: "API call failed" });
  sendEvent({ channel: "progress", event_type: "text_chunk", delta: "Hello, " });

  // 心跳: events get no reply, so the pong also proves none of them was refused.
  c.send({ type: "ping" });
  await c.expect("pong", (m) => m.type === "pong" && Object.keys(m).length === 1);
  await c.expectQuiet();
  await c.close();
}

/** The original Go server's `{type, payload}` envelope, as older clients send it. */
async function envelopeClient() {
  const agentID = "agent-envelope";
  const c = new Conversation("envelope");
  await c.open();

  c.send({
    type: "register",
    payload: { agent_id: agentID, template_id: "writer-v1", metadata: { name: "writer" } },
  });
  await c.expect(
    "registered (envelope)",
    (m) => m.type === "registered" && m.payload && m.payload.agent_id === agentID,
  );

  c.send({
    type: "register_session",
    payload: {
      session_id: "session-envelope",
      agent_id: agentID,
      status: "active",
      message_count: 0,
      metadata: {},
    },
  });
  await c.expect(
    "session_registered (envelope)",
    (m) => m.type === "session_registered" && m.payload && m.payload.session_id === "session-envelope",
  );

  c.send({
    type: "event",
    payload: {
      agent_id: agentID,
      envelope: {
        cursor: 1,
        bookmark: { cursor: 1, timestamp: "2024-01-01T12:00:01Z" },
        event: { channel: "progress", event_type: "text_chunk", delta: "from the envelope" },
      },
    },
  });

  c.send({ type: "ping" });
  await c.expect("pong (envelope)", (m) => m.type === "pong" && "payload" in m && m.payload === null);
  await c.expectQuiet();
  await c.close();
}

try {
  await documentClient();
  await envelopeClient();
  console.log("interop: ok");
  clearTimeout(deadline);
  process.exit(0);
} catch (err) {
  console.error(`interop: ${err instanceof Failure ? err.message : err.stack || err}`);
  process.exit(1);
}
