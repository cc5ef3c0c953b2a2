/** Formatting of numbers, money, durations and times for display. */

export function formatCount(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return '–'
  const abs = Math.abs(value)
  if (abs < 1000) return Number.isInteger(value) ? String(value) : value.toFixed(1)
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'k'],
  ]
  for (const [size, suffix] of units) {
    if (abs >= size) {
      const scaled = value / size
      const digits = Math.abs(scaled) >= 100 ? 0 : 1
      return `${scaled.toFixed(digits).replace(/\.0$/, '')}${suffix}`
    }
  }
  return String(value)
}

/** A count and its noun, singular for exactly one: "1 error", "2 errors", "1.5k events". */
export function countOf(value: number | null | undefined, noun: string, plural = `${noun}s`): string {
  return `${formatCount(value)} ${value === 1 ? noun : plural}`
}

export function formatRate(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return '–'
  if (value > 0 && value < 10) return value.toFixed(1)
  return formatCount(Math.round(value))
}

/**
 * A cost as the API gives it: "unpriced" when none of its tokens had a price (the API's amount
 * is null then: never an unpriced $0), and a star when some of them had none.
 */
export function formatCostOf(cost: { amount: number | null; currency?: string; unpriced_tokens?: number } | null | undefined): string {
  if (!cost) return formatCost(0)
  if (cost.amount === null) return 'unpriced'
  return formatCost(cost.amount, cost.currency) + (cost.unpriced_tokens ? '*' : '')
}

/**
 * The tokens-and-cost trend as chart columns: time, input, output and cost, the cost null (no
 * point, "–" in the legend) for an interval whose tokens all had no price, never $0.
 */
export function tokenCostTrend(
  tokens: { timestamp: string; input: number; output: number }[],
  costs: { timestamp: string; amount: number | null }[],
): [number[], number[], number[], (number | null)[]] {
  const byTime = new Map(costs.map((p) => [p.timestamp, p.amount]))
  return [
    tokens.map((p) => Date.parse(p.timestamp) / 1000),
    tokens.map((p) => p.input),
    tokens.map((p) => p.output),
    tokens.map((p) => byTime.get(p.timestamp) ?? null),
  ]
}

/** Tokens in and out as a hint: "1.2k in · 50k cached · 300 out" (cached only when some were). */
export function formatTokenSplit(t: { input: number; output: number; cache_read?: number; cache_creation?: number } | null | undefined): string {
  const cached = (t?.cache_read ?? 0) + (t?.cache_creation ?? 0)
  return `${formatCount(t?.input ?? 0)} in${cached ? ` · ${formatCount(cached)} cached` : ''} · ${formatCount(t?.output ?? 0)} out`
}

export function formatCost(amount: number | null | undefined, currency = 'USD'): string {
  if (amount == null || !Number.isFinite(amount)) return '–'
  const symbol = currency === 'USD' ? '$' : ''
  const suffix = currency === 'USD' ? '' : ` ${currency}`
  const abs = Math.abs(amount)
  let text: string
  if (abs === 0) text = '0.00'
  else if (abs < 0.0001) text = amount.toFixed(Math.min(12, 1 - Math.floor(Math.log10(abs)))) // two significant digits, not $0.0000
  else if (abs < 0.01) text = amount.toFixed(4)
  else if (abs < 1000) text = amount.toFixed(2)
  else text = Math.round(amount).toLocaleString('en-US')
  return `${symbol}${text}${suffix}`
}

/** The decimals that show `step` exactly (0.0005 -> 4, 0.25 -> 2, 500 -> 0), at most 12. */
function decimalsOf(step: number): number {
  for (let digits = 0; digits < 12; digits += 1) {
    const scaled = step * 10 ** digits
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * scaled) return digits
  }
  return 12
}

/**
 * Labels for the ticks of a cost axis `step` apart (the chart's tick increment): as many
 * decimals as the step needs, never fewer than cents below $1,000, so that small costs do not
 * all read $0.00 (formatCost's two decimals, or four below a cent, made every tick of a
 * $0.00002 step $0.0000) and no two ticks read the same.
 */
export function formatCostTicks(ticks: number[], step: number): string[] {
  const top = Math.max(0, ...ticks.map(Math.abs))
  const needed = step > 0 && Number.isFinite(step) ? decimalsOf(step) : 2
  const digits = top >= 1000 ? needed : Math.max(2, needed)
  return ticks.map((t) => {
    const text = t.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    return text.startsWith('-') ? `-$${text.slice(1)}` : `$${text}`
  })
}

export function formatPercent(fraction: number | null | undefined): string {
  if (fraction == null || !Number.isFinite(fraction)) return '–'
  const pct = fraction * 100
  if (pct === 0) return '0%'
  if (pct < 0.1) return '<0.1%'
  return `${pct < 10 ? pct.toFixed(1) : Math.round(pct)}%`
}

/** A duration in milliseconds: "850 ms", "2.3 s", "4m 05s", "3h 07m", "2d 4h". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return '–'
  if (ms < 1000) return `${Math.round(ms)} ms`
  const seconds = ms / 1000
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`
  const total = Math.floor(seconds)
  const d = Math.floor(total / 86400)
  const h = Math.floor((total % 86400) / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  if (d > 0) return `${d}d ${h}h`
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`
  return `${m}m ${String(s).padStart(2, '0')}s`
}

/** "just now", "12s ago", "5m ago", "3h ago", "2d ago"; future times read as "just now". */
export function formatRelative(ts: number | string | null | undefined, now: number): string {
  const ms = typeof ts === 'string' ? Date.parse(ts) : ts
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '–'
  const diff = Math.floor((now - ms) / 1000)
  if (diff < 2) return 'just now'
  if (diff < 60) return `${diff}s ago`
  if (diff < 3600) return `${Math.floor(diff / 60)}m ago`
  if (diff < 86400) return `${Math.floor(diff / 3600)}h ago`
  return `${Math.floor(diff / 86400)}d ago`
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0')
}

/** Local wall-clock time with milliseconds: "14:03:07.125". */
export function formatClock(ts: number | string | null | undefined, withMs = true): string {
  const ms = typeof ts === 'string' ? Date.parse(ts) : ts
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '–'
  const d = new Date(ms)
  const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base
}

/** Local date and time: "2026-11-25 14:03:07". */
export function formatDateTime(ts: number | string | null | undefined): string {
  const ms = typeof ts === 'string' ? Date.parse(ts) : ts
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '–'
  const d = new Date(ms)
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatClock(ms, false)}`
}

export function shortId(id: string | null | undefined, length = 8): string {
  if (!id) return '–'
  return id.length <= length + 1 ? id : `${id.slice(0, length)}…`
}

/** Cut a string for a one-line summary, never splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text
  // Counted in code points (at most two code units each), so a pair is never cut in half.
  const chars = Array.from(text.slice(0, max * 2 + 1))
  if (chars.length <= max) return chars.join('')
  return `${chars.slice(0, max).join('')}…`
}

/** A compact one-line JSON rendering of any value. */
export function compactJson(value: unknown, max = 160): string {
  let text: string
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value) ?? ''
  } catch {
    text = String(value)
  }
  return truncate(text.replace(/\s+/g, ' '), max)
}

/**
 * The width of a value axis: its longest label (11 px digits are about 6.5 px wide) plus the tick
 * and gap, so labels such as `$0.0075` are not clipped at the chart's edge.
 */
export function axisSize(values: readonly string[] | null | undefined): number {
  let longest = 0
  for (const v of values ?? []) longest = Math.max(longest, String(v).length)
  return Math.max(40, Math.ceil(longest * 6.5) + 20)
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/**
 * Labels for a time axis's ticks (unix seconds), in local time: "17:55:45" under a minute's
 * step, "17:55" up to a day's, "Nov 27" from a day's on; the date goes on a second line under
 * the first tick and wherever the day changes. Short enough for the first label, centred on the
 * chart's left edge, not to be cut off there (uPlot's own, "11/27/26 5:55pm", was).
 */
export function timeTicks(ticks: readonly number[], step: number): string[] {
  let day = ''
  return ticks.map((t) => {
    const d = new Date(t * 1000)
    const date = `${MONTHS[d.getMonth()]} ${d.getDate()}`
    if (step >= 86400) return date
    const time = step < 60 ? formatClock(t * 1000, false) : `${pad(d.getHours())}:${pad(d.getMinutes())}`
    const label = date === day ? time : `${time}\n${date}`
    day = date
    return label
  })
}
