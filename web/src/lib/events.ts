/** What the console knows about event types: one-line summaries, severity, filtering. */
import { compactJson, formatCount, formatDuration, truncate } from './format'
import type { StudioEvent } from './types'

export const CHANNELS = ['progress', 'control', 'monitor'] as const
export const SEVERITIES = ['info', 'warn', 'error', 'fatal'] as const

export const KNOWN_TYPES = [
  'text_chunk_start',
  'text_chunk',
  'text_chunk_end',
  'think_chunk_start',
  'think_chunk',
  'think_chunk_end',
  'tool:start',
  'tool:progress',
  'tool:intermediate',
  'tool:end',
  'tool:error',
  'tool:canceled',
  'done',
  'permission_required',
  'permission_decided',
  'ask_user',
  'user_answer',
  'tool_control_response',
  'state_changed',
  'step_complete',
  'error',
  'token_usage',
  'tool_executed',
  'todo_update',
] as const

function str(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : String(value)
}

function num(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(value)
  return Number.isFinite(n) ? n : 0
}

export function callOf(data: Record<string, unknown>): Record<string, unknown> {
  const call = data.call
  return call && typeof call === 'object' && !Array.isArray(call) ? (call as Record<string, unknown>) : {}
}

/** The severity of an event: the `severity` field, or "error" for failures. */
export function severityOf(event: StudioEvent): string {
  const explicit = str(event.data.severity)
  if (explicit) return explicit
  if (event.type === 'tool:error') return 'error'
  return ''
}

const MINOR_SEVERITIES = new Set(['debug', 'info', 'notice', 'warn', 'warning'])

/** An `error` event of no severity or one above warning: what the Studio counts as an error. */
export function isError(event: StudioEvent): boolean {
  if (event.type.toLowerCase() !== 'error') return false
  return !MINOR_SEVERITIES.has(severityOf(event).toLowerCase())
}

/** A one-line, human summary of an event; plain text, never markup. */
export function summarize(event: StudioEvent): string {
  const d = event.data
  const call = callOf(d)
  switch (event.type) {
    case 'text_chunk':
    case 'think_chunk':
      return JSON.stringify(str(d.delta)).slice(1, -1)
    case 'text_chunk_end':
      return `step ${num(d.step)} · ${truncate(str(d.text).replace(/\s+/g, ' '), 120)}`
    case 'text_chunk_start':
    case 'think_chunk_start':
    case 'think_chunk_end':
      return `step ${num(d.step)}`
    case 'token_usage': {
      const model = str(d.model)
      return `${model ? `${model} · ` : ''}${formatCount(num(d.input_tokens))} in · ${formatCount(num(d.output_tokens))} out`
    }
    case 'state_changed':
      return `→ ${str(d.state)}`
    case 'step_complete':
      return `step ${num(d.step)}${d.duration_ms != null ? ` · ${formatDuration(num(d.duration_ms))}` : ''}`
    case 'error':
      return `${str(d.severity) || 'error'}${d.phase ? `/${str(d.phase)}` : ''} · ${str(d.message)}`
    case 'done':
      return `step ${num(d.step)} · ${str(d.reason)}`
    case 'tool_control_response':
      return `${str(d.call_id)} · ${str(d.action)} · ${d.ok === true ? 'ok' : 'refused'}${d.reason ? ` · ${str(d.reason)}` : ''}`
    case 'ask_user': {
      const questions = Array.isArray(d.questions) ? d.questions : []
      const first = questions[0] as Record<string, unknown> | undefined
      return `${str(d.request_id)} · ${questions.length} question${questions.length === 1 ? '' : 's'}${first ? ` · ${truncate(str(first.question), 100)}` : ''}`
    }
    case 'user_answer':
      return `${str(d.request_id)} · ${compactJson(d.answers, 120)}`
    case 'permission_decided':
      return `${str(d.call_id)} · ${str(d.decision)}${d.decided_by ? ` by ${str(d.decided_by)}` : ''}`
    default:
      break
  }
  if (event.type.startsWith('tool') || event.type === 'permission_required') {
    const name = str(call.name ?? d.tool_name)
    const state = str(call.state ?? d.state)
    const error = str(d.error ?? call.error)
    const parts = [name || str(call.id ?? d.tool_id)]
    if (state) parts.push(state)
    if (event.type === 'tool:progress' && d.progress != null) parts.push(`${Math.round(num(d.progress) * 100)}%`)
    if (d.message) parts.push(str(d.message))
    if (error) parts.push(error)
    if (event.type === 'tool:start') parts.push(compactJson(call.arguments ?? d.arguments, 80))
    return parts.filter(Boolean).join(' · ')
  }
  const { channel: _c, event_type: _t, type: _ty, agent_id: _a, session_id: _s, ...rest } = d
  return compactJson(rest, 160)
}

export interface EventFilter {
  agent_id?: string
  session_id?: string
  channel?: string
  event_type?: string
  severity?: string
  start?: string
  end?: string
  q?: string
}

/** The values of a comma-separated filter, trimmed, empty ones left out (the server's `_csv`). */
export function filterList(value: string | undefined): string[] {
  if (!value) return []
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean)
}

/**
 * The ids an id filter names, as the server reads it (`_ids`): each comma-separated one, and
 * the whole value as given, so that an id holding a comma can be filtered on too.
 */
export function filterIds(value: string | undefined): string[] {
  const parts = filterList(value)
  if (value && parts.length > 0 && !(parts.length === 1 && parts[0] === value)) parts.push(value)
  return parts
}

function inList(value: string, list: string[], foldCase: boolean): boolean {
  if (list.length === 0) return true
  const v = foldCase ? value.toLowerCase() : value
  return list.some((item) => (foldCase ? item.toLowerCase() : item) === v)
}

/**
 * Whether a live event matches the explorer's filters, by the rule the server applies to
 * history: agent, session, channel, type and severity filters are comma-separated lists.
 */
export function matchesFilter(event: StudioEvent, filter: EventFilter): boolean {
  if (!inList(event.agent_id, filterIds(filter.agent_id), false)) return false
  if (filter.session_id && !inList(event.session_id ?? '', filterIds(filter.session_id), false)) return false
  if (!inList(event.channel, filterList(filter.channel), true)) return false
  // As the Studio filters stored events: the type and the `severity` field, whatever their case
  // (a `tool:error` without a severity is shown red, but is not of severity error).
  if (!inList(event.type, filterList(filter.event_type), true)) return false
  if (filter.severity && !inList(str(event.data.severity), filterList(filter.severity), true)) return false
  if (filter.start) {
    const start = Date.parse(filter.start)
    if (Number.isFinite(start) && event.ts < start) return false
  }
  if (filter.end) {
    const end = Date.parse(filter.end)
    if (Number.isFinite(end) && event.ts >= end) return false
  }
  if (filter.q) {
    const needle = filter.q.toLowerCase()
    let haystack: string
    try {
      haystack = JSON.stringify(event.data).toLowerCase()
    } catch {
      haystack = ''
    }
    if (!haystack.includes(needle) && !event.type.toLowerCase().includes(needle)) return false
  }
  return true
}

export function isFilterEmpty(filter: EventFilter): boolean {
  return Object.values(filter).every((v) => v === undefined || v === '')
}
