import { useCallback, useEffect, useMemo, useRef, useState } from 'react'
import { useSearchParams } from 'react-router'
import { AgentLink, Badge, Card, CopyButton, ErrorNote, PageHeader, Segmented, SessionLink } from '../components/common'
import { JsonView } from '../components/JsonView'
import { VirtualTable, type Column } from '../components/VirtualTable'
import { apiUrl, normalizeEvent, request } from '../lib/api'
import { CHANNELS, KNOWN_TYPES, SEVERITIES, isFilterEmpty, matchesFilter, severityOf, summarize, type EventFilter } from '../lib/events'
import { formatClock, formatCount, formatDateTime } from '../lib/format'
import { useHub, useLive } from '../lib/hooks'
import { Ring } from '../lib/ring'
import type { EventsPage as EventsData, StudioEvent } from '../lib/types'

const FILTER_KEYS = ['agent_id', 'session_id', 'channel', 'event_type', 'severity', 'start', 'end', 'q'] as const
const LIVE_CAPACITY = 5000
const HISTORY_PAGE = 500
const HISTORY_MAX = 20_000

function readFilter(params: URLSearchParams): EventFilter {
  const filter: EventFilter = {}
  for (const key of FILTER_KEYS) {
    const value = params.get(key)
    if (value) filter[key] = value
  }
  return filter
}

/** datetime-local value (local time) <-> ISO UTC string. */
function toLocalInput(iso: string | undefined): string {
  if (!iso) return ''
  const ms = Date.parse(iso)
  if (!Number.isFinite(ms)) return ''
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000)
  return d.toISOString().slice(0, 19)
}

function fromLocalInput(value: string): string {
  if (!value) return ''
  const ms = Date.parse(value)
  return Number.isFinite(ms) ? new Date(ms).toISOString() : ''
}

function FilterBar({ filter, onApply }: { filter: EventFilter; onApply: (f: EventFilter) => void }) {
  const hub = useHub()
  const [draft, setDraft] = useState<EventFilter>(filter)
  useEffect(() => setDraft(filter), [filter])
  const set = (key: keyof EventFilter, value: string) => setDraft((d) => ({ ...d, [key]: value || undefined }))
  const agents = [...hub.agents.values()]
  return (
    <form
      className="filters"
      onSubmit={(e) => {
        e.preventDefault()
        onApply(draft)
      }}
      data-testid="event-filters"
    >
      <input className="input" list="agent-ids" placeholder="agent" value={draft.agent_id ?? ''} onChange={(e) => set('agent_id', e.target.value)} name="agent_id" />
      <datalist id="agent-ids">
        {agents.map((a) => (
          <option key={a.id} value={a.id}>
            {a.name ?? ''}
          </option>
        ))}
      </datalist>
      <input className="input" placeholder="session" value={draft.session_id ?? ''} onChange={(e) => set('session_id', e.target.value)} name="session_id" />
      <select className="input select" value={draft.channel ?? ''} onChange={(e) => set('channel', e.target.value)} name="channel">
        <option value="">any channel</option>
        {CHANNELS.map((c) => (
          <option key={c}>{c}</option>
        ))}
      </select>
      <input className="input" list="event-types" placeholder="type" value={draft.event_type ?? ''} onChange={(e) => set('event_type', e.target.value)} name="event_type" />
      <datalist id="event-types">
        {KNOWN_TYPES.map((t) => (
          <option key={t} value={t} />
        ))}
      </datalist>
      <select className="input select" value={draft.severity ?? ''} onChange={(e) => set('severity', e.target.value)} name="severity">
        <option value="">any severity</option>
        {SEVERITIES.map((s) => (
          <option key={s}>{s}</option>
        ))}
      </select>
      <input className="input" type="datetime-local" step="1" title="from" value={toLocalInput(draft.start)} onChange={(e) => set('start', fromLocalInput(e.target.value))} name="start" />
      <input className="input" type="datetime-local" step="1" title="to" value={toLocalInput(draft.end)} onChange={(e) => set('end', fromLocalInput(e.target.value))} name="end" />
      <input className="input grow" placeholder="search text…" value={draft.q ?? ''} onChange={(e) => set('q', e.target.value)} name="q" data-testid="event-search" />
      <button type="submit" className="btn btn-primary" data-testid="apply-filters">
        Apply
      </button>
      {!isFilterEmpty(filter) && (
        <button type="button" className="btn" onClick={() => onApply({})}>
          Clear
        </button>
      )}
    </form>
  )
}

function Inspector({ event, onClose }: { event: StudioEvent; onClose: () => void }) {
  const full = {
    cursor: event.cursor,
    timestamp: event.timestamp,
    agent_id: event.agent_id,
    session_id: event.session_id,
    channel: event.channel,
    event_type: event.type,
    data: event.data,
  }
  return (
    <Card
      className="inspector"
      testId="inspector"
      title={<span className="mono">{event.type}</span>}
      actions={
        <>
          <CopyButton text={JSON.stringify(full, null, 2)} />
          <button type="button" className="btn btn-small" onClick={onClose}>
            ✕
          </button>
        </>
      }
    >
      <dl className="kv">
        <dt>cursor</dt>
        <dd className="mono">{event.cursor}</dd>
        <dt>time</dt>
        <dd>{formatDateTime(event.ts)}.{String(event.ts % 1000).padStart(3, '0')}</dd>
        <dt>agent</dt>
        <dd>
          <AgentLink id={event.agent_id} />
        </dd>
        <dt>session</dt>
        <dd>
          <SessionLink id={event.session_id} />
        </dd>
        <dt>channel</dt>
        <dd>{event.channel}</dd>
      </dl>
      <div className="json-box tall">
        <JsonView value={event.data} defaultOpen={3} />
      </div>
    </Card>
  )
}

export function EventsPage() {
  const hub = useLive()
  const [params, setParams] = useSearchParams()
  const filter = useMemo(() => readFilter(params), [params])
  const filterKey = JSON.stringify(filter)
  const mode = params.get('mode') === 'history' ? 'history' : 'live'
  const [paused, setPaused] = useState(false)
  const [selected, setSelected] = useState<StudioEvent | null>(null)

  // Live tail: a bounded buffer of matching events, filled from the hub's batches.
  const live = useRef(new Ring<StudioEvent>(LIVE_CAPACITY))
  const [frozen, setFrozen] = useState<StudioEvent[] | null>(null)
  const [missed, setMissed] = useState(0)
  useEffect(() => {
    const ring = new Ring<StudioEvent>(LIVE_CAPACITY)
    for (let i = Math.max(0, hub.events.size - 20_000); i < hub.events.size; i += 1) {
      const e = hub.events.at(i)
      if (e && matchesFilter(e, filter)) ring.push(e)
    }
    live.current = ring
    let closed = false
    // The tail opens with the newest stored events, so a console opened after they came is
    // not empty; those older than the first live one go before it.
    request<EventsData>('/events', { query: { ...filter, limit: HISTORY_PAGE } })
      .then((data) => {
        const current = live.current
        if (closed || current.size >= LIVE_CAPACITY) return
        const oldest = current.size > 0 ? (current.at(0) as StudioEvent).cursor : Infinity
        const stored = (data.events ?? []).map(normalizeEvent).filter((e) => e.cursor < oldest)
        if (stored.length === 0) return
        const seeded = new Ring<StudioEvent>(LIVE_CAPACITY)
        seeded.pushAll(stored.reverse())
        seeded.pushAll(current.toArray())
        live.current = seeded
        hub.changed()
      })
      .catch(() => undefined)
    const off = hub.onEvents((batch) => {
      for (const e of batch) if (matchesFilter(e, filter)) live.current.push(e)
    })
    return () => {
      closed = true
      off()
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [hub, filterKey])

  const pause = useCallback(() => {
    const ring = live.current
    const snapshot: StudioEvent[] = []
    for (let i = 0; i < ring.size; i += 1) snapshot.push(ring.fromNewest(i) as StudioEvent)
    setFrozen(snapshot)
    setMissed(0)
    setPaused(true)
  }, [])
  const resume = useCallback(() => {
    setFrozen(null)
    setPaused(false)
  }, [])
  useEffect(() => {
    if (!paused) return
    const newest = frozen?.[0]?.cursor ?? 0
    return hub.onEvents((batch) => {
      let n = 0
      for (const e of batch) if (e.cursor > newest && matchesFilter(e, filter)) n += 1
      if (n) setMissed((m) => m + n)
    })
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [paused, frozen, filterKey])

  // History: pages of stored events, newest first, loaded on demand.
  const [history, setHistory] = useState<StudioEvent[]>([])
  const [historyState, setHistoryState] = useState<{ loading: boolean; error: string | null; done: boolean }>({ loading: false, error: null, done: false })
  const loadHistory = useCallback(
    async (reset: boolean) => {
      setHistoryState((s) => ({ ...s, loading: true, error: null }))
      try {
        const before = reset ? undefined : history.at(-1)?.cursor
        const data = await request<EventsData>('/events', { query: { ...filter, limit: HISTORY_PAGE, before } })
        const items = (data.events ?? []).map(normalizeEvent)
        setHistory((prev) => {
          const merged = reset ? items : [...prev, ...items]
          return merged.slice(0, HISTORY_MAX)
        })
        setHistoryState({ loading: false, error: null, done: items.length < HISTORY_PAGE })
      } catch (err) {
        setHistoryState({ loading: false, error: err instanceof Error ? err.message : String(err), done: false })
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [filterKey, history],
  )
  useEffect(() => {
    if (mode === 'history') void loadHistory(true)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [mode, filterKey])

  const setMode = (m: 'live' | 'history') => {
    const next = new URLSearchParams(params)
    if (m === 'history') next.set('mode', 'history')
    else next.delete('mode')
    setParams(next, { replace: true })
    setSelected(null)
  }
  const applyFilter = (f: EventFilter) => {
    const next = new URLSearchParams()
    if (mode === 'history') next.set('mode', 'history')
    for (const key of FILTER_KEYS) if (f[key]) next.set(key, f[key] as string)
    setParams(next)
    setSelected(null)
    if (paused) resume()
  }

  useEffect(() => {
    if (!selected) return
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setSelected(null)
    }
    window.addEventListener('keydown', onKey)
    return () => window.removeEventListener('keydown', onKey)
  }, [selected])

  const ring = live.current
  const rows: { count: number; get: (i: number) => StudioEvent | undefined } =
    mode === 'history'
      ? { count: history.length, get: (i) => history[i] }
      : frozen
        ? { count: frozen.length, get: (i) => frozen[i] }
        : { count: ring.size, get: (i) => ring.fromNewest(i) }

  const columns: Column<StudioEvent>[] = [
    { key: 'time', header: 'Time', width: '104px', render: (e) => <span className="mono small muted">{formatClock(e.ts)}</span> },
    { key: 'type', header: 'Type', width: '150px', render: (e) => <span className={`etype ch-${e.channel}`}>{e.type}</span> },
    {
      key: 'agent',
      header: 'Agent',
      width: 'minmax(90px, 0.8fr)',
      render: (e) => (
        <span className="small ellipsis" title={e.agent_id}>
          {hub.agents.get(e.agent_id)?.name || e.agent_id}
        </span>
      ),
    },
    {
      key: 'summary',
      header: 'Summary',
      width: 'minmax(200px, 3fr)',
      render: (e) => {
        const sev = severityOf(e)
        return (
          <span className="ellipsis">
            {sev && sev !== 'info' && <Badge value={sev} tone={sev === 'warn' ? 'warn' : 'bad'} />} {summarize(e)}
          </span>
        )
      },
    },
    { key: 'cursor', header: '#', width: '72px', align: 'right', render: (e) => <span className="mono tiny muted">{e.cursor}</span> },
  ]

  const exportQuery = { ...filter }
  const connected = hub.connection.state === 'open'
  return (
    <div className="page" data-testid="page-events">
      <PageHeader
        title="Events"
        subtitle={mode === 'live' ? 'Live tail of every event as it arrives' : 'Stored events, newest first'}
        actions={
          <>
            <a className="btn" href={apiUrl('/events/export', { format: 'jsonl', ...exportQuery })} download data-testid="export-jsonl">
              Export JSONL
            </a>
            <a className="btn" href={apiUrl('/events/export', { format: 'csv', ...exportQuery })} download data-testid="export-csv">
              Export CSV
            </a>
          </>
        }
      />
      <Card>
        <FilterBar filter={filter} onApply={applyFilter} />
      </Card>
      <div className={`events-layout ${selected ? 'with-inspector' : ''}`}>
        <Card
          title={
            <span className="toolbar">
              <Segmented value={mode} options={['live', 'history'] as const} onChange={setMode} testId="events-mode" />
              {mode === 'live' &&
                (paused ? (
                  <button type="button" className="btn btn-primary" onClick={resume} data-testid="resume">
                    ▶ Resume{missed ? ` (${formatCount(missed)} new)` : ''}
                  </button>
                ) : (
                  <button type="button" className="btn" onClick={pause} data-testid="pause">
                    ❚❚ Pause
                  </button>
                ))}
              {mode === 'live' && !paused && <span className={`pill ${connected ? 'live' : ''}`}>{connected ? 'streaming' : 'waiting for stream'}</span>}
            </span>
          }
          actions={
            <span className="muted small" data-testid="events-count">
              {formatCount(rows.count)} {mode === 'live' ? `shown (newest ${formatCount(LIVE_CAPACITY)} kept)` : 'loaded'}
            </span>
          }
        >
          <ErrorNote error={historyState.error} />
          <VirtualTable
            testId="events-table"
            count={rows.count}
            getRow={rows.get}
            rowKey={(e) => e.cursor}
            columns={columns}
            rowHeight={32}
            height="calc(100vh - 300px)"
            selectedKey={selected?.cursor ?? null}
            onRowClick={(e) => {
              setSelected(e)
              if (mode === 'live' && !paused) pause()
            }}
            rowClass={(e) => (severityOf(e) === 'error' || severityOf(e) === 'fatal' ? 'row-bad' : '')}
            empty={
              mode === 'live'
                ? isFilterEmpty(filter)
                  ? 'Waiting for events…'
                  : 'No live event matches yet. Switch to history to search stored events.'
                : historyState.loading
                  ? 'Loading…'
                  : 'No stored event matches.'
            }
            footer={
              mode === 'history' && history.length > 0 && !historyState.done ? (
                <div className="load-more">
                  <button type="button" className="btn" disabled={historyState.loading || history.length >= HISTORY_MAX} onClick={() => void loadHistory(false)} data-testid="load-older">
                    {historyState.loading ? 'Loading…' : 'Load older'}
                  </button>
                </div>
              ) : null
            }
          />
          {mode === 'live' && (
            <div className="muted small footnote">
              Older events leave the live tail to keep the page fast;{' '}
              <button type="button" className="linklike" onClick={() => setMode('history')}>
                query the history
              </button>{' '}
              to see them.
            </div>
          )}
        </Card>
        {selected && <Inspector event={selected} onClose={() => setSelected(null)} />}
      </div>
    </div>
  )
}
