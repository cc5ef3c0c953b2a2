import { describe, expect, it } from 'vitest'
import {
  axisSize,
  compactJson,
  countOf,
  formatCost,
  formatCostOf,
  formatCostTicks,
  formatCount,
  formatDuration,
  formatPercent,
  formatRelative,
  shortId,
  timeTicks,
  tokenCostTrend,
  formatTokenSplit,
  truncate,
} from '../src/lib/format'
import { Ring, RateSeries } from '../src/lib/ring'
import { matchesFilter, summarize } from '../src/lib/events'
import { normalizeEvent, queryString } from '../src/lib/api'
import { ev } from './helpers'

describe('tokenCostTrend', () => {
  it('leaves an interval whose tokens all had no price without a cost, never $0', () => {
    const hour = '2026-11-27T15:00:00.000Z'
    const free = '2026-11-27T16:00:00.000Z'
    const [xs, input, output, cost] = tokenCostTrend(
      [
        { timestamp: hour, input: 40_000, output: 20_000 },
        { timestamp: free, input: 10, output: 5 },
      ],
      [
        { timestamp: hour, amount: null },
        { timestamp: free, amount: 0 },
      ],
    )
    expect(xs).toEqual([Date.parse(hour) / 1000, Date.parse(free) / 1000])
    expect([input, output]).toEqual([[40_000, 10], [20_000, 5]])
    expect(cost).toEqual([null, 0])
  })

  it('names the cached input beside the rest only when there is some', () => {
    expect(formatTokenSplit({ input: 10, output: 100, cache_read: 50_000, cache_creation: 2000 })).toBe('10 in · 52k cached · 100 out')
    expect(formatTokenSplit({ input: 10, output: 100 })).toBe('10 in · 100 out')
  })
})

describe('format', () => {
  it('abbreviates counts', () => {
    expect([0, 999, 1000, 1534, 25_400, 1_200_000, 3e9].map(formatCount)).toEqual([
      '0', '999', '1k', '1.5k', '25.4k', '1.2M', '3B',
    ])
    expect(formatCount(undefined)).toBe('–')
  })

  it('names a count with its noun, singular for exactly one', () => {
    expect(countOf(1, 'error')).toBe('1 error')
    expect(countOf(0, 'error')).toBe('0 errors')
    expect(countOf(2, 'session')).toBe('2 sessions')
    expect(countOf(1_500, 'event')).toBe('1.5k events')
    expect(countOf(1, 'unpriced token')).toBe('1 unpriced token')
    expect(countOf(3, 'index', 'indexes')).toBe('3 indexes')
  })

  it('formats money with enough digits for small amounts', () => {
    expect(formatCost(0)).toBe('$0.00')
    expect(formatCost(0.00123)).toBe('$0.0012')
    expect(formatCost(0.0000029)).toBe('$0.0000029') // a chart's legend read $0.0000
    expect(formatCost(12.345)).toBe('$12.35')
    expect(formatCost(5, 'EUR')).toBe('5.00 EUR')
  })

  it('labels cost axis ticks with the digits their step needs', () => {
    // Rounded to cents (and to 4 decimals below one), small costs read $0.00 or $0.0000.
    expect(formatCostTicks([0, 0.001, 0.002, 0.003, 0.004], 0.001)).toEqual(['$0.000', '$0.001', '$0.002', '$0.003', '$0.004'])
    expect(formatCostTicks([0, 0.00002, 0.00004], 0.00002)).toEqual(['$0.00000', '$0.00002', '$0.00004'])
    expect(formatCostTicks([0, 0.005, 0.01, 0.015], 0.005)).toEqual(['$0.000', '$0.005', '$0.010', '$0.015'])
    expect(formatCostTicks([0, 0.5, 1, 1.5], 0.5)).toEqual(['$0.00', '$0.50', '$1.00', '$1.50'])
    expect(formatCostTicks([0, 500, 1000, 1500], 500)).toEqual(['$0', '$500', '$1,000', '$1,500'])
  })

  it('never gives two cost axis ticks the same label', () => {
    for (let exponent = -8; exponent <= 3; exponent += 1) {
      for (const mantissa of [1, 2, 2.5, 5]) {
        const step = mantissa * 10 ** exponent
        const ticks = [0, 1, 2, 3, 4, 5].map((i) => i * step)
        const labels = formatCostTicks(ticks, step)
        expect(new Set(labels).size, `step ${step}: ${labels.join(' ')}`).toBe(ticks.length)
      }
    }
  })

  it('never shows unpriced tokens as $0', () => {
    expect(formatCostOf({ amount: null, currency: 'USD', unpriced_tokens: 1150 })).toBe('unpriced')
    expect(formatCostOf({ amount: 0.5, currency: 'USD', unpriced_tokens: 10 })).toBe('$0.50*')
    expect(formatCostOf({ amount: 0, currency: 'USD' })).toBe('$0.00')
    expect(formatCostOf(undefined)).toBe('$0.00')
  })

  it('formats durations', () => {
    expect(formatDuration(850)).toBe('850 ms')
    expect(formatDuration(2300)).toBe('2.3 s')
    expect(formatDuration(45_000)).toBe('45 s')
    expect(formatDuration(245_000)).toBe('4m 05s')
    expect(formatDuration(3 * 3600_000 + 7 * 60_000)).toBe('3h 07m')
    expect(formatDuration(2 * 86400_000 + 4 * 3600_000)).toBe('2d 4h')
    expect(formatDuration(-1)).toBe('–')
  })

  it('formats relative times', () => {
    const now = 1_000_000_000
    expect(formatRelative(now, now)).toBe('just now')
    expect(formatRelative(now - 12_000, now)).toBe('12s ago')
    expect(formatRelative(now - 5 * 60_000, now)).toBe('5m ago')
    expect(formatRelative(new Date(now - 3 * 3600_000).toISOString(), now)).toBe('3h ago')
    expect(formatRelative(null, now)).toBe('–')
  })

  it('formats percentages and ids', () => {
    expect(formatPercent(0.0714)).toBe('7.1%')
    expect(formatPercent(0.5)).toBe('50%')
    expect(formatPercent(0.0000001)).toBe('<0.1%')
    expect(shortId('abcdefghijklmnop')).toBe('abcdefgh…')
    expect(shortId('short')).toBe('short')
  })

  it('truncates without splitting characters', () => {
    expect(truncate('héllo wörld', 5)).toBe('héllo…')
    expect(truncate('😀😀😀', 2)).toBe('😀😀…')
    expect(compactJson({ a: 1, b: 'x  y' })).toBe('{"a":1,"b":"x y"}')
  })
})

describe('Ring and RateSeries', () => {
  it('keeps only the newest items', () => {
    const r = new Ring<number>(3)
    r.pushAll([1, 2, 3, 4, 5])
    expect(r.toArray()).toEqual([3, 4, 5])
    expect(r.fromNewest(0)).toBe(5)
    expect(r.evicted).toBe(2)
  })

  it('counts per second and forgets old seconds', () => {
    const s = new RateSeries(10)
    s.add(100_000, 3)
    s.add(100_500, 2)
    s.add(101_000, 4)
    const [xs, ys] = s.series(101_000)
    expect(xs.at(-1)).toBe(101)
    expect(ys.slice(-2)).toEqual([5, 4])
    const [, later] = s.series(130_000)
    expect(later.every((v) => v === 0)).toBe(true)
  })
})

describe('events', () => {
  it('normalizes REST items and stream payloads to one shape', () => {
    const rest = normalizeEvent({
      cursor: 7,
      timestamp: '2026-11-25T10:00:00.000Z',
      agent_id: 'a',
      session_id: 's',
      channel: 'monitor',
      event_type: 'token_usage',
      event: { input_tokens: 1 },
    })
    const live = normalizeEvent({
      cursor: 7,
      timestamp: '2026-11-25T10:00:00.000Z',
      agent_id: 'a',
      session_id: 's',
      channel: 'monitor',
      type: 'token_usage',
      data: { input_tokens: 1 },
    })
    expect(rest).toEqual(live)
    expect(rest.ts).toBe(Date.parse('2026-11-25T10:00:00.000Z'))
  })

  it('summarizes known events as plain text', () => {
    expect(summarize(ev('token_usage', { model: 'gpt-4o', input_tokens: 1500, output_tokens: 20 }))).toBe(
      'gpt-4o · 1.5k in · 20 out',
    )
    expect(summarize(ev('state_changed', { state: 'working' }))).toBe('→ working')
    expect(summarize(ev('text_chunk', { delta: 'a\nb' }))).toBe('a\\nb')
    expect(summarize(ev('tool:error', { call: { id: 'c', name: 'grep' }, error: 'boom' }))).toBe('grep · boom')
  })

  it('filters live events like the server filters history', () => {
    const e = ev('error', { severity: 'warn', message: 'Disk nearly full' }, { channel: 'monitor' })
    expect(matchesFilter(e, { channel: 'monitor', severity: 'warn' })).toBe(true)
    expect(matchesFilter(e, { q: 'disk nearly' })).toBe(true)
    expect(matchesFilter(e, { q: 'nothing' })).toBe(false)
    expect(matchesFilter(e, { agent_id: 'other' })).toBe(false)
    expect(matchesFilter(e, { start: new Date(e.ts + 1).toISOString() })).toBe(false)
    expect(matchesFilter(e, { severity: 'WARN', event_type: 'Error' })).toBe(true)
    // The server matches the severity field: a tool:error has none, though shown red.
    const failed = ev('tool:error', { call: { id: 'c', name: 'grep' }, error: 'boom' })
    expect(matchesFilter(failed, { severity: 'error' })).toBe(false)
  })

  it('reads agent, session, channel and type filters as comma-separated lists', () => {
    const a = ev('text_chunk', {}, { agent_id: 'ev-a', session_id: 's1', channel: 'progress' })
    const b = ev('text_chunk', {}, { agent_id: 'ev-b', session_id: 's2', channel: 'monitor' })
    expect(matchesFilter(a, { agent_id: 'ev-a,ev-b' })).toBe(true)
    expect(matchesFilter(b, { agent_id: 'ev-a, ev-b' })).toBe(true)
    expect(matchesFilter(b, { agent_id: 'ev-a,ev-c' })).toBe(false)
    expect(matchesFilter(b, { session_id: 's1,s2' })).toBe(true)
    expect(matchesFilter(b, { channel: 'progress,MONITOR' })).toBe(true)
    expect(matchesFilter(a, { event_type: 'error,text_chunk' })).toBe(true)
    expect(matchesFilter(a, { event_type: 'error,done' })).toBe(false)
  })

  it('matches an id that holds a comma as the whole filter value', () => {
    const e = ev('text_chunk', {}, { agent_id: 'team,alpha', session_id: 'run,1' })
    expect(matchesFilter(e, { agent_id: 'team,alpha' })).toBe(true)
    expect(matchesFilter(e, { session_id: 'run,1' })).toBe(true)
    expect(matchesFilter(e, { agent_id: 'team' })).toBe(false)
  })

  it('builds query strings from set values only', () => {
    expect(queryString({ a: 'x y', b: '', c: undefined, d: 3 })).toBe('?a=x+y&d=3')
    expect(queryString({})).toBe('')
  })
})

describe('chart axes', () => {
  it('are as wide as their longest label', () => {
    expect(axisSize(['$0.000', '$0.0075'])).toBeGreaterThanOrEqual(7 * 6.5 + 20)
    expect(axisSize(['$0.0075'])).toBeGreaterThan(56)
    expect(axisSize([])).toBe(40)
  })
})

describe('timeTicks', () => {
  const at = (day: number, h: number, m: number, sec = 0) => new Date(2026, 10, day, h, m, sec).getTime() / 1000

  it('gives seconds under a minute, the date under the first tick only', () => {
    const ticks = [at(27, 17, 55, 45), at(27, 17, 55, 50), at(27, 17, 55, 55)]
    expect(timeTicks(ticks, 5)).toEqual(['17:55:45\nNov 27', '17:55:50', '17:55:55'])
  })

  it('gives minutes, and the date again where the day changes', () => {
    const ticks = [at(26, 18, 0), at(26, 21, 0), at(27, 0, 0), at(27, 3, 0)]
    expect(timeTicks(ticks, 3 * 3600)).toEqual(['18:00\nNov 26', '21:00', '00:00\nNov 27', '03:00'])
  })

  it('gives dates alone from a day on, every label short enough for the left edge', () => {
    expect(timeTicks([at(26, 0, 0), at(27, 0, 0)], 86400)).toEqual(['Nov 26', 'Nov 27'])
    for (const label of timeTicks([at(27, 17, 55, 45)], 1)) {
      expect(Math.max(...label.split('\n').map((line) => line.length))).toBeLessThanOrEqual(8)
    }
  })
})
