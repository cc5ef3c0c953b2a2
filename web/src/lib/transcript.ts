/**
 * Stream assembly: folds a session's events, in cursor order, into what the agent and session
 * views show: text and thinking assembled from chunks like a terminal, tool calls with state and
 * duration, state changes, errors, and token usage per model over time.
 *
 * The same fold runs over stored history and live events, so a finished session replayed from
 * storage reads the same as it did live. Events at or below the last applied cursor are ignored,
 * which makes overlapping history and live batches safe to apply.
 */
import { callOf, isError } from './events'
import type { StudioEvent } from './types'

export type Block =
  | {
      kind: 'text' | 'think'
      key: string
      step: number | null
      text: string
      open: boolean
      ts: number
      /** Characters dropped from the start to keep the newest `maxTextPerBlock` (0: none). */
      cut: number
      /** The session of the block's first event (where the whole text can be found). */
      sessionId: string | null
    }
  | { kind: 'tool'; key: string; callId: string; ts: number }
  | { kind: 'state'; key: string; state: string; ts: number }
  | { kind: 'error'; key: string; error: ErrorItem; ts: number }
  | { kind: 'done'; key: string; step: number | null; reason: string; ts: number }
  | {
      kind: 'approval'
      key: string
      callId: string
      name: string
      args: unknown
      ts: number
      decision: string | null
      agentId: string
      cursor: number
    }
  | {
      kind: 'question'
      key: string
      requestId: string
      questions: unknown
      ts: number
      answers: unknown
      agentId: string
      cursor: number
    }

export interface ToolCall {
  id: string
  name: string
  state: string
  startedTs: number
  endedTs: number | null
  progress: number | null
  message: string | null
  arguments: unknown
  result: unknown
  error: string | null
  intermediate: unknown[]
  step: number | null
  agentId: string
  /** The call says it can be paused / canceled (`call.pausable`, `call.cancelable`). */
  pausable: boolean
  cancelable: boolean
  /** Paused on request (the agent answered a pause with ok, and no resume since). */
  paused: boolean
  /** The agent's answers to pause, resume and cancel (`tool_control_response`), oldest first. */
  controls: ToolControlResponse[]
}

export interface ToolControlResponse {
  action: string
  ok: boolean
  reason: string | null
  ts: number
}

export interface ErrorItem {
  cursor: number
  ts: number
  severity: string
  phase: string
  message: string
  detail: unknown
}

export interface ModelUsage {
  model: string
  input: number
  output: number
  total: number
  /** Cumulative total tokens after each usage event: [ts ms, total]. */
  points: [number, number][]
}

export interface TranscriptLimits {
  maxBlocks: number
  maxTextPerBlock: number
  maxTools: number
  maxErrors: number
}

const DEFAULT_LIMITS: TranscriptLimits = {
  maxBlocks: 4000,
  maxTextPerBlock: 200_000,
  maxTools: 2000,
  maxErrors: 500,
}

export const TOOL_END_STATES = new Set(['completed', 'failed', 'canceled', 'cancelled', 'error'])

function str(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : String(value)
}

/** A time field as epoch ms: ISO strings, epoch milliseconds or epoch seconds. */
export function timeOf(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value < 1e11 ? value * 1000 : value
  if (typeof value === 'string' && value) {
    const parsed = Date.parse(value)
    if (Number.isFinite(parsed)) return parsed
    const n = Number(value)
    if (Number.isFinite(n) && n > 0) return n < 1e11 ? n * 1000 : n
  }
  return null
}

function numOrNull(value: unknown): number | null {
  const n = typeof value === 'number' ? value : value == null || value === '' ? NaN : Number(value)
  return Number.isFinite(n) ? n : null
}

export class Transcript {
  blocks: Block[] = []
  readonly tools = new Map<string, ToolCall>()
  readonly toolOrder: string[] = []
  errors: ErrorItem[] = []
  readonly states: { ts: number; state: string }[] = []
  readonly usage = new Map<string, ModelUsage>()
  lastCursor = 0
  eventCount = 0
  /** `error` events the Studio counts as errors (no severity, or above warning), all of them. */
  errorCount = 0
  /** The other `error` events (debug, info, notice, warn, warning). */
  minorErrorCount = 0
  /** The agent of the first event (a session belongs to one agent). */
  agentId: string | null = null
  /** Blocks dropped from the front to bound memory. */
  droppedBlocks = 0
  currentState: string | null = null
  /** Bumped on every change; views memoize on it. */
  revision = 0
  private readonly limits: TranscriptLimits
  private nextKey = 0

  constructor(limits: Partial<TranscriptLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /** Apply events in order; returns whether anything changed. */
  applyAll(events: readonly StudioEvent[]): boolean {
    let changed = false
    for (const event of events) changed = this.apply(event) || changed
    return changed
  }

  apply(event: StudioEvent): boolean {
    if (event.cursor <= this.lastCursor) return false
    this.lastCursor = event.cursor
    this.eventCount += 1
    if (this.agentId === null && event.agent_id) this.agentId = event.agent_id
    this.revision += 1
    const d = event.data
    switch (event.type) {
      case 'text_chunk_start':
        this.openStream('text', numOrNull(d.step), event, true)
        break
      case 'think_chunk_start':
        this.openStream('think', numOrNull(d.step), event, true)
        break
      case 'text_chunk':
      case 'think_chunk': {
        const kind = event.type === 'text_chunk' ? 'text' : 'think'
        const block = this.openStream(kind, numOrNull(d.step), event, false)
        block.text += str(d.delta)
        // Keep the newest text (the agent's conclusion comes last). Trimmed with some slack, so
        // that a stream of small deltas past the limit does not copy the whole block each time.
        const max = this.limits.maxTextPerBlock
        if (block.text.length > max + (max >> 2)) this.trim(block)
        break
      }
      case 'text_chunk_end':
      case 'think_chunk_end': {
        const kind = event.type === 'text_chunk_end' ? 'text' : 'think'
        const block = this.openStream(kind, numOrNull(d.step), event, false)
        // The end event carries the full text: it repairs chunks lost before history began.
        const full = str(d.text)
        if (full && full.length >= block.cut + block.text.length) {
          block.text = full
          block.cut = 0
        }
        this.trim(block)
        block.open = false
        break
      }
      case 'tool:start':
      case 'tool:progress':
      case 'tool:intermediate':
      case 'tool:end':
      case 'tool:error':
      case 'tool:canceled':
      case 'tool_executed':
        this.applyTool(event)
        break
      case 'permission_required': {
        const call = callOf(d)
        const callId = str(call.id ?? d.tool_id ?? d.call_id)
        this.closeStreams()
        this.push({
          kind: 'approval',
          key: this.key(),
          callId,
          name: str(call.name ?? d.tool_name),
          args: call.arguments ?? d.arguments,
          ts: event.ts,
          decision: null,
          agentId: event.agent_id,
          cursor: event.cursor,
        })
        break
      }
      case 'ask_user': {
        this.closeStreams()
        this.push({
          kind: 'question',
          key: this.key(),
          requestId: str(d.request_id),
          questions: d.questions,
          ts: event.ts,
          answers: null,
          agentId: event.agent_id,
          cursor: event.cursor,
        })
        break
      }
      case 'user_answer': {
        const requestId = str(d.request_id)
        for (let i = this.blocks.length - 1; i >= 0; i -= 1) {
          const block = this.blocks[i]
          if (block.kind === 'question' && block.requestId === requestId) {
            block.answers = d.answers ?? {}
            break
          }
        }
        break
      }
      case 'tool_control_response': {
        const tool = this.tools.get(str(d.call_id))
        if (!tool) break
        const action = str(d.action)
        const ok = d.ok === true
        tool.controls.push({ action, ok, reason: d.reason == null ? null : str(d.reason), ts: event.ts })
        if (tool.controls.length > 20) tool.controls.shift()
        if (ok && action === 'pause') tool.paused = true
        if (ok && action === 'resume') tool.paused = false
        if (ok && action === 'cancel' && !TOOL_END_STATES.has(tool.state)) tool.state = 'canceling'
        break
      }
      case 'permission_decided': {
        const callId = str(d.call_id)
        for (let i = this.blocks.length - 1; i >= 0; i -= 1) {
          const block = this.blocks[i]
          if (block.kind === 'approval' && block.callId === callId) {
            block.decision = str(d.decision)
            break
          }
        }
        break
      }
      case 'state_changed': {
        const state = str(d.state)
        this.currentState = state
        this.states.push({ ts: event.ts, state })
        this.closeStreams()
        this.push({ kind: 'state', key: this.key(), state, ts: event.ts })
        break
      }
      case 'error': {
        const error: ErrorItem = {
          cursor: event.cursor,
          ts: event.ts,
          severity: str(d.severity) || 'error',
          phase: str(d.phase),
          message: str(d.message),
          detail: d.detail,
        }
        if (isError(event)) this.errorCount += 1
        else this.minorErrorCount += 1
        this.errors.push(error)
        if (this.errors.length > this.limits.maxErrors) this.errors = this.errors.slice(-this.limits.maxErrors)
        this.closeStreams()
        this.push({ kind: 'error', key: this.key(), error, ts: event.ts })
        break
      }
      case 'done':
        this.closeStreams()
        this.push({ kind: 'done', key: this.key(), step: numOrNull(d.step), reason: str(d.reason), ts: event.ts })
        break
      case 'token_usage':
        this.applyUsage(event)
        break
      default:
        // Other events are visible in the raw event list; they change nothing here.
        break
    }
    return true
  }

  /** The most recent open text/think block of this kind, or a new one. */
  private openStream(kind: 'text' | 'think', step: number | null, event: StudioEvent, fresh: boolean) {
    const last = this.blocks[this.blocks.length - 1]
    if (
      !fresh &&
      last &&
      last.kind === kind &&
      last.open &&
      (step === null || last.step === null || last.step === step)
    ) {
      return last
    }
    // A start for a block that is still open and empty is the same block.
    if (fresh && last && last.kind === kind && last.open && last.text === '' && last.step === step) return last
    // Interleaved thinking and text: close the other kind's stream before starting this one.
    this.closeStreams()
    const block = { kind, key: this.key(), step, text: '', open: true, ts: event.ts, cut: 0, sessionId: event.session_id }
    this.push(block)
    return block
  }

  /** Drop a block's oldest text beyond the limit, counting what was dropped. */
  private trim(block: { text: string; cut: number }): void {
    const over = block.text.length - this.limits.maxTextPerBlock
    if (over <= 0) return
    block.text = block.text.slice(over)
    block.cut += over
  }

  /** Characters dropped from the start of long blocks, over all blocks kept. */
  cutChars(): number {
    let total = 0
    for (const b of this.blocks) if ((b.kind === 'text' || b.kind === 'think') && b.cut > 0) total += b.cut
    return total
  }

  private closeStreams(): void {
    const last = this.blocks[this.blocks.length - 1]
    if (last && (last.kind === 'text' || last.kind === 'think')) last.open = false
  }

  private applyTool(event: StudioEvent): void {
    const d = event.data
    const call = callOf(d)
    const id = str(call.id ?? d.tool_id ?? d.call_id) || `anon-${event.cursor}`
    let tool = this.tools.get(id)
    if (!tool) {
      tool = {
        id,
        name: str(call.name ?? d.tool_name) || 'tool',
        state: 'pending',
        startedTs: timeOf(call.started_at) ?? event.ts,
        endedTs: null,
        progress: null,
        message: null,
        arguments: undefined,
        result: undefined,
        error: null,
        intermediate: [],
        step: numOrNull(d.step),
        agentId: event.agent_id,
        pausable: false,
        cancelable: false,
        paused: false,
        controls: [],
      }
      this.tools.set(id, tool)
      this.toolOrder.push(id)
      if (this.toolOrder.length > this.limits.maxTools) {
        const old = this.toolOrder.shift()
        if (old) this.tools.delete(old)
      }
      this.closeStreams()
      this.push({ kind: 'tool', key: this.key(), callId: id, ts: tool.startedTs })
    }
    const name = str(call.name ?? d.tool_name)
    if (name) tool.name = name
    const args = call.arguments ?? d.arguments
    if (args !== undefined) tool.arguments = args
    const state = str(call.state ?? d.state)
    if (state) tool.state = state
    if (typeof call.pausable === 'boolean') tool.pausable = call.pausable
    if (typeof call.cancelable === 'boolean') tool.cancelable = call.cancelable
    const progress = numOrNull(d.progress ?? call.progress)
    if (progress !== null) tool.progress = progress
    if (d.message != null) tool.message = str(d.message)
    switch (event.type) {
      case 'tool:start':
        if (!state) tool.state = 'executing'
        break
      case 'tool:intermediate':
        tool.intermediate.push(d.data ?? call.intermediate)
        if (tool.intermediate.length > 50) tool.intermediate.shift()
        break
      case 'tool:error':
        tool.state = state || 'failed'
        break
      case 'tool:canceled':
        tool.state = 'canceled'
        if (d.reason != null) tool.error = str(d.reason)
        break
      default:
        break
    }
    const result = call.result ?? d.result
    if (result !== undefined && result !== null) tool.result = result
    const error = d.error ?? call.error
    if (error != null && error !== '') tool.error = typeof error === 'string' ? error : JSON.stringify(error)
    if (event.type === 'tool:end' && !state) tool.state = tool.error ? 'failed' : 'completed'
    if (TOOL_END_STATES.has(tool.state)) tool.paused = false
    if (TOOL_END_STATES.has(tool.state) && tool.endedTs === null) {
      const duration = numOrNull(call.duration_ms ?? d.duration_ms)
      const updated = timeOf(call.updated_at)
      if (duration !== null) tool.endedTs = tool.startedTs + duration
      else tool.endedTs = updated !== null && updated >= tool.startedTs ? updated : event.ts
    }
  }

  private applyUsage(event: StudioEvent): void {
    const d = event.data
    const model = str(d.model) || 'unknown'
    const input = numOrNull(d.input_tokens) ?? 0
    const output = numOrNull(d.output_tokens) ?? 0
    const total = numOrNull(d.total_tokens) ?? input + output
    let usage = this.usage.get(model)
    if (!usage) {
      usage = { model, input: 0, output: 0, total: 0, points: [] }
      this.usage.set(model, usage)
    }
    usage.input += input
    usage.output += output
    usage.total += total
    usage.points.push([event.ts, usage.total])
    if (usage.points.length > 2000) usage.points.splice(0, usage.points.length - 2000)
  }

  private push(block: Block): void {
    this.blocks.push(block)
    const over = this.blocks.length - this.limits.maxBlocks
    if (over > 0) {
      this.blocks.splice(0, over)
      this.droppedBlocks += over
    }
  }

  private key(): string {
    this.nextKey += 1
    return `b${this.nextKey}`
  }

  /** Tool calls in start order. */
  toolList(): ToolCall[] {
    const out: ToolCall[] = []
    for (const id of this.toolOrder) {
      const tool = this.tools.get(id)
      if (tool) out.push(tool)
    }
    return out
  }

  /**
   * The assembled output as plain text (think blocks marked), for tests and copying: what is
   * kept, with a marker where the start of a long block was dropped.
   */
  plainText(): string {
    return this.blocks
      .filter((b): b is Extract<Block, { kind: 'text' | 'think' }> => b.kind === 'text' || b.kind === 'think')
      .map((b) => {
        const text = b.cut > 0 ? `[… ${b.cut} earlier characters not kept] ${b.text}` : b.text
        return b.kind === 'think' ? `[think] ${text}` : text
      })
      .join('\n')
  }
}
