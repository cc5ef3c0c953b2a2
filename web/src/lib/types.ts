/** Wire shapes of the Studio's dashboard API (docs/api.md, DASHBOARD-API.md section 4). */

export interface TokenCount {
  /** input read fresh, apart from the prompt cache's */
  input: number
  output: number
  /** input + output + cache_read + cache_creation */
  total: number
  cache_read?: number
  cache_creation?: number
  /** the part of `output` spent reasoning */
  reasoning?: number
}

export interface CostAmount {
  /** null when none of the tokens had a price */
  amount: number | null
  currency: string
  /** tokens without a price, when there are any */
  unpriced_tokens?: number
}

export type AgentStatus = 'online' | 'offline'

export interface AgentView {
  id: string
  name: string | null
  model: string | null
  capabilities: string[]
  metadata: Record<string, unknown>
  status: AgentStatus
  state: string | null
  stalled: boolean
  /**
   * Console-side (not on the wire): a request of this agent waits for a person's decision, so
   * a stall is the person's to end (`markWaiting`).
   */
  waiting?: boolean
  current_session_id: string | null
  registered_at: string | null
  connected_at: string | null
  last_seen: string | null
  last_event_at: string | null
  token_usage: TokenCount
  cost: CostAmount
  unpriced_tokens: number
  event_count: number
  error_count: number
}

/** An event as the console keeps it: REST items and stream payloads normalized to one shape. */
export interface StudioEvent {
  cursor: number
  timestamp: string
  /** Milliseconds since the epoch, parsed once. */
  ts: number
  agent_id: string
  session_id: string | null
  channel: string
  type: string
  data: Record<string, unknown>
}

export interface OverviewStats {
  active_agents: number
  active_sessions: number
  total_requests: number
  token_usage: TokenCount
  cost: CostAmount
  error_rate: number
  avg_latency_ms: number
  period: string
  updated_at: string
  agents?: { online: number; working: number; stalled: number; offline: number; total: number }
  events_per_second?: number
  events_total?: number
  error_count?: number
  unpriced_tokens?: number
  latest_errors?: RawEventItem[]
  windows?: Record<string, { token_usage: TokenCount; cost: CostAmount; unpriced_tokens: number; requests: number }>
}

export interface RawEventItem {
  cursor: number
  timestamp: string
  agent_id?: string
  session_id?: string | null
  channel?: string
  event_type?: string
  type?: string
  event?: Record<string, unknown>
  data?: Record<string, unknown>
}

export interface EventsPage {
  events: RawEventItem[]
  cursor?: number
  next_cursor?: number
  /** `/events` (newest first): the cursor to read the next, older page before; null at the start. */
  next_before?: number | null
}

export interface SessionSummary {
  id: string
  agent_id: string
  agent_name?: string | null
  status: string
  message_count: number
  token_usage: TokenCount
  cost?: CostAmount
  created_at: string
  updated_at: string
  ended_at?: string | null
  event_count?: number
  metadata?: Record<string, unknown>
}

export interface SessionList {
  sessions: SessionSummary[]
  total: number
  has_more: boolean
}

export interface SessionDetail extends SessionSummary {
  messages?: { id?: string; role: string; content: string; timestamp: string }[]
}

export interface TokenTrendPoint {
  timestamp: string
  input: number
  output: number
}

export interface TokenStats {
  period: string
  total: TokenCount
  by_agent?: Record<string, TokenCount>
  by_model?: Record<string, TokenCount>
  trend?: TokenTrendPoint[]
  cost?: CostAmount
}

export interface CostStats {
  period: string
  total: CostAmount
  by_agent?: Record<string, CostAmount>
  by_model?: Record<string, CostAmount>
  /** amount null: an interval whose tokens all had no price */
  trend?: { timestamp: string; amount: number | null }[]
}

export interface Percentiles {
  p50: number
  p95: number
  p99: number
  avg: number
  max: number
  /** How many values were measured (ours; absent from the original Studio). */
  count?: number
}

export interface PerformanceStats {
  period: string
  ttft: Percentiles
  tpot: Percentiles
  tool_latency: Record<string, Percentiles>
  avg_loop_count: number
  request_count: number
  error_count: number
  error_rate: number
}

export interface ModelPricing {
  model: string
  input_price_per_m: number
  output_price_per_m: number
  currency: string
}

export type Period = '1h' | '24h' | '7d' | '30d'
export const PERIODS: Period[] = ['1h', '24h', '7d', '30d']
