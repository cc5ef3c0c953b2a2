/**
 * Requests agents make of people (docs/control.md): permission requests, questions and tool
 * controls, kept current from REST snapshots and the stream's `request` frames; their expiry
 * countdowns; and the shaping of an answer form into the body the Studio expects.
 *
 * Framework-free so the merge, count and shaping rules are unit-tested without a browser.
 */
import { ApiError, request } from './api'
import { TOOL_END_STATES, type ToolCall } from './transcript'

export type RequestKind = 'permission' | 'question' | 'tool_control'
export type RequestStatus = 'pending' | 'decided' | 'expired'
export type RequestStage = 'pending' | 'decided' | 'delivered' | 'acknowledged' | 'expired'

/** A request as the Studio reports it (`RequestView`). */
export interface RequestView {
  id: string
  kind: RequestKind
  agent_id: string
  session_id: string | null
  key: string
  status: RequestStatus
  stage: RequestStage
  created_at: string
  expires_at: string | null
  request: Record<string, unknown> | null
  response: Record<string, unknown> | null
  decided_by: string | null
  decided_at: string | null
  delivered_at: string | null
  acknowledged_at: string | null
  agent_response: Record<string, unknown> | null
  event_cursor: number | null
}

export interface RequestList {
  requests: RequestView[]
  pending: number
}

export interface AuditEntry {
  id: number
  timestamp: string
  actor: string
  action: string
  request_id: string
  agent_id: string
  detail: Record<string, unknown> | null
}

export interface QuestionOption {
  label: string
  description: string
}

export interface Question {
  question: string
  header: string
  options: QuestionOption[]
  multiSelect: boolean
}

// ---------------------------------------------------------------------------------------------
// Time

/** How far a request has come: a later stage never gives way to an earlier one. */
const STAGE_RANK: Record<string, number> = { pending: 0, decided: 1, delivered: 2, acknowledged: 3, expired: 3 }

export function stageRank(view: Pick<RequestView, 'stage'>): number {
  return STAGE_RANK[view.stage] ?? 0
}

function ms(value: string | null | undefined): number | null {
  if (!value) return null
  const parsed = Date.parse(value)
  return Number.isFinite(parsed) ? parsed : null
}

/** Pending, but its deadline has passed here (the Studio's `expired` frame is on its way). */
export function isOverdue(view: RequestView, now: number): boolean {
  const deadline = ms(view.expires_at)
  return view.status === 'pending' && deadline !== null && now >= deadline
}

/** Whether a person can still decide it: pending and not past its deadline. */
export function isOpen(view: RequestView, now: number): boolean {
  return view.status === 'pending' && !isOverdue(view, now)
}

/** The stage to show: a pending request past its deadline reads as expired at once. */
export function shownStage(view: RequestView, now: number): RequestStage {
  return isOverdue(view, now) ? 'expired' : view.stage
}

export interface Countdown {
  state: 'none' | 'running' | 'expired'
  remainingMs: number | null
  text: string
}

/** "expires in 42 s", "expires in 4:05", "expired", or nothing for a request without deadline. */
export function countdown(view: RequestView, now: number): Countdown {
  if (view.status === 'expired' || isOverdue(view, now)) return { state: 'expired', remainingMs: 0, text: 'expired' }
  const deadline = ms(view.expires_at)
  if (deadline === null || view.status !== 'pending') return { state: 'none', remainingMs: null, text: '' }
  const remaining = deadline - now
  const seconds = Math.ceil(remaining / 1000)
  let text: string
  if (seconds < 60) text = `${seconds} s`
  else if (seconds < 3600) text = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`
  else text = `${Math.floor(seconds / 3600)}h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`
  return { state: 'running', remainingMs: remaining, text: `expires in ${text}` }
}

/** How long ago it was asked, in milliseconds. */
export function ageMs(view: RequestView, now: number): number {
  const created = ms(view.created_at)
  return created === null ? 0 : Math.max(0, now - created)
}

// ---------------------------------------------------------------------------------------------
// The store

const MAX_CLOSED = 500

function keyOf(agentId: string, kind: string, key: string): string {
  return `${agentId}\u0000${kind}\u0000${key}`
}

/**
 * Every request the console knows: all pending ones and the newest closed ones. Frames and
 * snapshots can arrive in any order, so an update never moves a request back to an earlier stage.
 */
export class RequestStore {
  private readonly byId = new Map<string, RequestView>()
  /** When each request was last changed here (ms), for snapshot reconciliation. */
  private readonly seenAt = new Map<string, number>()
  /** Bumped on every change; views memoize on it. */
  version = 0
  private sortedCache: { version: number; list: RequestView[] } | null = null

  get size(): number {
    return this.byId.size
  }

  get(id: string): RequestView | undefined {
    return this.byId.get(id)
  }

  /** Apply one view; returns whether it changed anything. */
  upsert(view: RequestView, now = Date.now()): boolean {
    if (!view || typeof view.id !== 'string') return false
    const known = this.byId.get(view.id)
    if (known) {
      if (stageRank(view) < stageRank(known)) return false
      if (stageRank(view) === stageRank(known) && JSON.stringify(view) === JSON.stringify(known)) return false
    }
    this.byId.set(view.id, view)
    this.seenAt.set(view.id, now)
    this.version += 1
    this.trim()
    return true
  }

  /**
   * Apply a REST snapshot of every pending request, fetched from `startedAt` on. A request we
   * hold as pending that is missing from it, and has not changed since the fetch began, was
   * decided or expired while we were not listening: its id is returned so it can be re-read.
   */
  applyPendingSnapshot(views: RequestView[], startedAt: number, now = Date.now()): string[] {
    const listed = new Set(views.map((v) => v.id))
    for (const view of views) this.upsert(view, now)
    const stale: string[] = []
    for (const [id, view] of this.byId) {
      if (view.status === 'pending' && !listed.has(id) && (this.seenAt.get(id) ?? 0) < startedAt) stale.push(id)
    }
    return stale
  }

  /** Forget a request (the Studio no longer knows it). */
  remove(id: string): void {
    if (this.byId.delete(id)) {
      this.seenAt.delete(id)
      this.version += 1
    }
  }

  clear(): void {
    if (this.byId.size === 0) return
    this.byId.clear()
    this.seenAt.clear()
    this.version += 1
  }

  /** Newest first. */
  list(): RequestView[] {
    if (this.sortedCache?.version !== this.version) {
      const list = [...this.byId.values()].sort((a, b) =>
        a.created_at === b.created_at ? (a.id < b.id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1,
      )
      this.sortedCache = { version: this.version, list }
    }
    return this.sortedCache.list
  }

  /** Requests a person can still decide (pending and within their deadline), oldest first. */
  open(now: number): RequestView[] {
    return this.list()
      .filter((v) => isOpen(v, now))
      .reverse()
  }

  openCount(now: number): number {
    let n = 0
    for (const view of this.byId.values()) if (isOpen(view, now)) n += 1
    return n
  }

  /** The request an event created (by its cursor), else the newest for the same key. */
  forEvent(agentId: string, kind: RequestKind, key: string, cursor?: number): RequestView | undefined {
    let newest: RequestView | undefined
    const wanted = keyOf(agentId, kind, key)
    for (const view of this.byId.values()) {
      if (cursor !== undefined && view.event_cursor === cursor) return view
      if (keyOf(view.agent_id, view.kind, view.key) !== wanted) continue
      if (!newest || view.created_at > newest.created_at) newest = view
    }
    return newest
  }

  /** Tool controls sent for one call of one agent, oldest first. */
  controlsFor(agentId: string, callId: string): RequestView[] {
    return this.list()
      .filter((v) => v.kind === 'tool_control' && v.agent_id === agentId && v.key === callId)
      .reverse()
  }

  private trim(): void {
    let closed = 0
    for (const view of this.byId.values()) if (view.status !== 'pending') closed += 1
    if (closed <= MAX_CLOSED) return
    // Oldest closed requests leave first; pending ones always stay.
    const list = this.list()
    for (let i = list.length - 1; i >= 0 && closed > MAX_CLOSED; i -= 1) {
      const view = list[i]
      if (view.status === 'pending') continue
      this.byId.delete(view.id)
      this.seenAt.delete(view.id)
      closed -= 1
    }
    this.version += 1
  }
}

// ---------------------------------------------------------------------------------------------
// Keeping the store current

/** The part of the hub a sync needs (kept narrow so it is easy to fake in tests). */
export interface RequestSink {
  readonly requests: RequestStore
  changed(): void
}

/**
 * Fill the store from REST: every pending request and the newest others. Frames keep it current
 * between syncs; a sync on start and after each reconnect covers what was said while away.
 */
export async function syncRequests(hub: RequestSink, query: { agent_id?: string } = {}): Promise<void> {
  const startedAt = Date.now()
  const [pending, recent] = await Promise.all([
    request<RequestList>('/requests', { query: { status: 'pending', limit: 1000, ...query } }),
    request<RequestList>('/requests', { query: { status: 'all', limit: 200, ...query } }),
  ])
  for (const view of recent.requests ?? []) hub.requests.upsert(view)
  let stale = hub.requests.applyPendingSnapshot(pending.requests ?? [], startedAt)
  if (query.agent_id) stale = stale.filter((id) => hub.requests.get(id)?.agent_id === query.agent_id)
  await Promise.all(
    stale.slice(0, 50).map((id) =>
      request<RequestView>(`/requests/${encodeURIComponent(id)}`)
        .then((view) => hub.requests.upsert(view))
        .catch((error: unknown) => {
          if (error instanceof ApiError && error.status === 404) hub.requests.remove(id)
        }),
    ),
  )
  hub.changed()
}

// ---------------------------------------------------------------------------------------------
// What is asked

function text(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value)
}

/** The questions of an `ask_user` request, whatever odd shapes an agent sent. */
export function questionsOf(raw: unknown): Question[] {
  if (!Array.isArray(raw)) return []
  const out: Question[] = []
  for (const item of raw) {
    if (typeof item === 'string') {
      out.push({ question: item, header: '', options: [], multiSelect: false })
      continue
    }
    if (!item || typeof item !== 'object') continue
    const q = item as Record<string, unknown>
    const options: QuestionOption[] = []
    if (Array.isArray(q.options)) {
      for (const option of q.options) {
        if (option && typeof option === 'object') {
          const o = option as Record<string, unknown>
          const label = text(o.label ?? o.value)
          if (label) options.push({ label, description: text(o.description) })
        } else if (option != null && text(option)) {
          options.push({ label: text(option), description: '' })
        }
      }
    }
    out.push({
      question: text(q.question ?? q.text),
      header: text(q.header),
      options,
      multiSelect: q.multi_select === true || q.multiSelect === true,
    })
  }
  return out
}

/** What the person filled in for one question. */
export interface AnswerDraft {
  /** Chosen option labels (one at most for single choice). */
  selected: string[]
  /** Free text: the whole answer without options, or "Other" beside them. */
  other: string
}

export function emptyDrafts(questions: Question[]): AnswerDraft[] {
  return questions.map(() => ({ selected: [], other: '' }))
}

/** Choose an option: single choice replaces (and clears "Other"), multiple choice toggles. */
export function toggleOption(question: Question, draft: AnswerDraft, label: string): AnswerDraft {
  if (question.multiSelect) {
    const selected = draft.selected.includes(label) ? draft.selected.filter((l) => l !== label) : [...draft.selected, label]
    return { ...draft, selected }
  }
  return { selected: [label], other: '' }
}

/** Type free text: for a single-choice question it replaces the chosen option. */
export function setOther(question: Question, draft: AnswerDraft, value: string): AnswerDraft {
  if (!question.multiSelect && question.options.length > 0 && value.trim()) return { selected: [], other: value }
  return { ...draft, other: value }
}

export type ShapedAnswers =
  | { ok: true; answers: Record<string, string | string[]> }
  | { ok: false; missing: number[] }

/**
 * The body of POST /requests/{id}/answer: `{question: answer}` for single choice and free text,
 * `{question: [answers]}` for multiple choice (options in the order offered, then "Other").
 * Every question needs an answer; the indexes of the unanswered ones are returned otherwise.
 */
export function shapeAnswers(questions: Question[], drafts: AnswerDraft[]): ShapedAnswers {
  const answers: Record<string, string | string[]> = {}
  const missing: number[] = []
  questions.forEach((question, i) => {
    const draft = drafts[i] ?? { selected: [], other: '' }
    const other = draft.other.trim()
    if (question.multiSelect) {
      const chosen = question.options.map((o) => o.label).filter((label) => draft.selected.includes(label))
      if (other) chosen.push(other)
      if (chosen.length === 0) missing.push(i)
      else answers[question.question] = chosen
      return
    }
    const value = other || draft.selected[0] || ''
    if (!value) missing.push(i)
    else answers[question.question] = value
  })
  return missing.length ? { ok: false, missing } : { ok: true, answers }
}

/** The answers of a decided question request, as lines of text for display. */
export function answerLines(response: Record<string, unknown> | null): { question: string; answer: string }[] {
  const answers = response?.answers
  if (!answers || typeof answers !== 'object') return []
  if (Array.isArray(answers)) return answers.map((a, i) => ({ question: `#${i + 1}`, answer: text(a) }))
  return Object.entries(answers as Record<string, unknown>).map(([question, answer]) => ({
    question,
    answer: Array.isArray(answer) ? answer.map(text).join(', ') : text(answer),
  }))
}

// ---------------------------------------------------------------------------------------------
// Acting on requests

const DECIDER_KEY = 'aster.decidedBy'

/** The name this browser signs decisions with (empty: the Studio records "console"). */
export function deciderName(): string {
  try {
    return globalThis.localStorage?.getItem(DECIDER_KEY) ?? ''
  } catch {
    return ''
  }
}

export function setDeciderName(name: string): void {
  try {
    if (name.trim()) globalThis.localStorage?.setItem(DECIDER_KEY, name.trim())
    else globalThis.localStorage?.removeItem(DECIDER_KEY)
  } catch {
    // Storage may be unavailable (private mode): the name then lasts for this page only.
  }
}

function signed<T extends Record<string, unknown>>(body: T): T & { decided_by?: string } {
  const name = deciderName()
  return name ? { ...body, decided_by: name.slice(0, 256) } : body
}

export function decide(id: string, decision: 'allow' | 'deny', note: string): Promise<RequestView> {
  const body: Record<string, unknown> = { decision }
  if (note.trim()) body.note = note.trim()
  return request<RequestView>(`/requests/${encodeURIComponent(id)}/decision`, { method: 'POST', body: signed(body) })
}

export function answer(id: string, answers: Record<string, string | string[]>): Promise<RequestView> {
  return request<RequestView>(`/requests/${encodeURIComponent(id)}/answer`, { method: 'POST', body: signed({ answers }) })
}

export type ToolAction = 'pause' | 'resume' | 'cancel'

/** The actions a running call offers: what it says it supports, and what its state allows. */
export function toolActions(tool: Pick<ToolCall, 'state' | 'pausable' | 'cancelable' | 'paused'>): ToolAction[] {
  if (TOOL_END_STATES.has(tool.state)) return []
  const actions: ToolAction[] = []
  if (tool.pausable) actions.push(tool.paused ? 'resume' : 'pause')
  if (tool.cancelable && tool.state !== 'canceling') actions.push('cancel')
  return actions
}

export function controlTool(agentId: string, callId: string, action: ToolAction, note = ''): Promise<RequestView> {
  const body: Record<string, unknown> = { action }
  if (note.trim()) body.note = note.trim()
  return request<RequestView>(
    `/agents/${encodeURIComponent(agentId)}/tools/${encodeURIComponent(callId)}/control`,
    { method: 'POST', body: signed(body) },
  )
}

/** Why a decision was refused, in words a person can act on. */
export interface Refusal {
  kind: 'conflict' | 'expired' | 'gone' | 'error'
  message: string
  decidedBy?: string
  decidedAt?: string
}

export function refusalOf(error: unknown): Refusal {
  if (error instanceof ApiError) {
    const detail = error.detail
    if (error.status === 409) {
      const by = typeof detail.decided_by === 'string' ? detail.decided_by : undefined
      const at = typeof detail.decided_at === 'string' ? detail.decided_at : undefined
      return { kind: 'conflict', message: error.message, decidedBy: by, decidedAt: at }
    }
    if (error.status === 410) return { kind: 'expired', message: error.message }
    if (error.status === 404) return { kind: 'gone', message: error.message }
    return { kind: 'error', message: error.message }
  }
  return { kind: 'error', message: error instanceof Error ? error.message : String(error) }
}
