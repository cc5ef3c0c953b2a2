/** The live views of a session: terminal output, tool-call timeline, usage per model, errors. */
import { useVirtualizer } from '@tanstack/react-virtual'
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react'
import { Link } from 'react-router'
import { compactJson, countOf, formatClock, formatCostOf, formatCount, formatDuration } from '../lib/format'
import { useApi, useHub, useNow, useRequestStore } from '../lib/hooks'
import { syncRequests } from '../lib/requests'
import type { Block, ErrorItem, ToolCall, Transcript } from '../lib/transcript'
import type { CostAmount } from '../lib/types'
import { Chart } from './Chart'
import { Badge, CopyButton, Empty } from './common'
import { JsonView } from './JsonView'
import { RequestCard, RequestLine, ToolControls } from './Requests'

/**
 * A request inline in the output, with the same actions as the inbox. Until the Studio's record
 * of it is known (an old session, a Studio without requests), the event alone is shown.
 */
function InlineRequest({ block }: { block: Extract<Block, { kind: 'approval' | 'question' }> }) {
  const store = useRequestStore()
  const view =
    block.kind === 'approval'
      ? store.forEvent(block.agentId, 'permission', block.callId, block.cursor)
      : store.forEvent(block.agentId, 'question', block.requestId, block.cursor)
  if (view) {
    return (
      <div className="t-request">
        <RequestCard view={view} showContext={false} testId="inline-request" />
      </div>
    )
  }
  if (block.kind === 'approval') {
    return (
      <div className="t-approval" data-testid="t-approval">
        <span className="t-tag warn">approval</span> <b>{block.name}</b>{' '}
        <span className="mono small">{compactJson(block.args ?? {}, 100)}</span>{' '}
        {block.decision ? <Badge value={block.decision} tone={block.decision === 'allow' ? 'good' : 'bad'} /> : <Badge value="waiting" tone="warn" />}
      </div>
    )
  }
  const questions = Array.isArray(block.questions) ? block.questions.length : 0
  return (
    <div className="t-approval" data-testid="t-question">
      <span className="t-tag warn">question</span> {questions} question{questions === 1 ? '' : 's'}{' '}
      <span className="mono small">{compactJson(block.questions ?? [], 100)}</span>{' '}
      {block.answers ? <Badge value="answered" tone="good" /> : <Badge value="waiting" tone="warn" />}
    </div>
  )
}

/**
 * Where the start of a long block was dropped: how much, and where the whole text is (the
 * session's chunk events in the Events page; the end event carries the whole text).
 */
function CutMarker({ block }: { block: Extract<Block, { kind: 'text' | 'think' }> }) {
  if (block.cut <= 0) return null
  const prefix = block.kind === 'text' ? 'text_chunk' : 'think_chunk'
  const query = new URLSearchParams({ mode: 'history', event_type: `${prefix},${prefix}_end` })
  if (block.sessionId) query.set('session_id', block.sessionId)
  return (
    <div className="t-cut" data-testid="t-cut">
      … {block.cut.toLocaleString('en-US')} earlier characters of this block are not shown (the newest{' '}
      {block.text.length.toLocaleString('en-US')} are).{' '}
      <Link className="link" to={`/events?${query.toString()}`}>
        The whole text is in its events
      </Link>
    </div>
  )
}

function BlockView({ block, transcript, onTool }: { block: Block; transcript: Transcript; onTool: (id: string) => void }) {
  switch (block.kind) {
    case 'text':
      return (
        <>
          <CutMarker block={block} />
          <pre className={`t-text ${block.open ? 'open' : ''}`} data-testid="t-text">
            {block.text}
            {block.open && <span className="caret" />}
          </pre>
        </>
      )
    case 'think':
      return (
        <div className="t-think" data-testid="t-think">
          <span className="t-tag">thinking</span>
          <CutMarker block={block} />
          <pre>
            {block.text}
            {block.open && <span className="caret" />}
          </pre>
        </div>
      )
    case 'tool': {
      const tool = transcript.tools.get(block.callId)
      if (!tool) return null
      const ended = tool.endedTs ?? null
      return (
        <div className={`t-tool state-${tool.state}`} onClick={() => onTool(tool.id)} data-testid="t-tool">
          <span className="t-tool-icon">⚒</span>
          <span className="t-tool-name">{tool.name}</span>
          <span className="t-tool-args mono">{compactJson(tool.arguments ?? {}, 90)}</span>
          <Badge value={tool.state} tone={tool.state === 'failed' ? 'bad' : undefined} />
          {ended !== null && <span className="muted small">{formatDuration(ended - tool.startedTs)}</span>}
          {tool.paused && <Badge value="paused" tone="warn" />}
          <ToolControls agentId={tool.agentId} tool={tool} compact />
        </div>
      )
    }
    case 'state':
      return (
        <div className="t-state" data-testid="t-state">
          <span>state →</span> <Badge value={block.state} />
          <span className="muted small">{formatClock(block.ts)}</span>
        </div>
      )
    case 'error':
      return (
        <div className="t-error" data-testid="t-error">
          <b>{block.error.severity}</b>
          {block.error.phase ? ` · ${block.error.phase}` : ''} · {block.error.message}
        </div>
      )
    case 'done':
      return (
        <div className="t-done">
          ✓ done{block.reason ? ` (${block.reason})` : ''}
          {block.step !== null ? ` · step ${block.step}` : ''}
        </div>
      )
    case 'approval':
    case 'question':
      return <InlineRequest block={block} />
  }
}

/** The agent's output as a terminal: assembled text, thinking, tool calls and state changes. */
export function Terminal({
  transcript,
  revision,
  onTool,
  height = 520,
}: {
  transcript: Transcript
  revision: number
  onTool: (id: string) => void
  height?: number | string
}) {
  const scroller = useRef<HTMLDivElement>(null)
  const [follow, setFollow] = useState(true)
  const blocks = transcript.blocks
  const virtualizer = useVirtualizer({
    count: blocks.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => 28,
    overscan: 8,
    getItemKey: (i) => blocks[i]?.key ?? i,
  })
  useLayoutEffect(() => {
    const el = scroller.current
    if (follow && el && blocks.length > 0) {
      virtualizer.scrollToIndex(blocks.length - 1, { align: 'end' })
      el.scrollTop = el.scrollHeight
    }
  }, [revision, follow]) // eslint-disable-line react-hooks/exhaustive-deps

  return (
    <div className="terminal-wrap">
      <div
        className="terminal"
        ref={scroller}
        style={{ height }}
        data-testid="terminal"
        onScroll={(e) => {
          const el = e.currentTarget
          const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40
          if (atBottom !== follow) setFollow(atBottom)
        }}
      >
        {blocks.length === 0 ? (
          <div className="muted t-empty">Waiting for output…</div>
        ) : (
          <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
            {transcript.droppedBlocks > 0 && <div className="muted small">… {transcript.droppedBlocks} earlier blocks not kept</div>}
            {virtualizer.getVirtualItems().map((item) => {
              const block = blocks[item.index]
              if (!block) return null
              return (
                <div
                  key={item.key}
                  data-index={item.index}
                  ref={virtualizer.measureElement}
                  className="t-block"
                  style={{ transform: `translateY(${item.start}px)` }}
                >
                  <BlockView block={block} transcript={transcript} onTool={onTool} />
                </div>
              )
            })}
          </div>
        )}
      </div>
      {!follow && (
        <button type="button" className="btn btn-small follow-btn" onClick={() => setFollow(true)}>
          ↓ Follow live output
        </button>
      )}
    </div>
  )
}

/** Tool calls in start order with state, timing bar, arguments and results. */
export function ToolTimeline({
  tools,
  selected,
  onSelect,
}: {
  tools: ToolCall[]
  selected: string | null
  onSelect: (id: string | null) => void
}) {
  const now = useNow(500)
  if (tools.length === 0) return <Empty>No tool calls yet.</Empty>
  const start = Math.min(...tools.map((t) => t.startedTs))
  // The axis runs to now while a call is running, else to the last call's end.
  const end = Math.max(start + 1, ...tools.map((t) => t.endedTs ?? now))
  const span = Math.max(1, end - start)
  const chosen = selected ? tools.find((t) => t.id === selected) : undefined
  return (
    <div className="timeline" data-testid="tool-timeline">
      <div className="timeline-rows">
        {tools.slice(-300).map((t) => {
          const stop = t.endedTs ?? now
          const left = ((t.startedTs - start) / span) * 100
          const width = Math.max(0.6, ((stop - t.startedTs) / span) * 100)
          return (
            <div
              key={t.id}
              className={`tl-row ${selected === t.id ? 'selected' : ''}`}
              onClick={() => onSelect(selected === t.id ? null : t.id)}
              data-testid="tool-row"
            >
              <span className="tl-name" title={t.name}>
                {t.name}
              </span>
              <Badge value={t.paused ? 'paused' : t.state} tone={t.state === 'failed' ? 'bad' : undefined} />
              <span className="tl-ctl">
                <ToolControls agentId={t.agentId} tool={t} compact />
              </span>
              <span className="tl-bar-track">
                <span className={`tl-bar state-${t.state}`} style={{ left: `${left}%`, width: `${width}%` }} />
              </span>
              <span className="tl-dur num">
                {formatDuration(stop - t.startedTs)}
                {t.endedTs === null && t.progress !== null ? ` · ${Math.round(t.progress * 100)}%` : ''}
              </span>
            </div>
          )
        })}
      </div>
      {chosen && (
        <div className="tl-detail" data-testid="tool-detail">
          <div className="tl-detail-head">
            <b>{chosen.name}</b> <span className="muted mono small">{chosen.id}</span>
            <span className="muted small">
              {' '}
              started {formatClock(chosen.startedTs)}
              {chosen.endedTs ? ` · took ${formatDuration(chosen.endedTs - chosen.startedTs)}` : ' · running'}
            </span>
          </div>
          {chosen.message && <div className="small">{chosen.message}</div>}
          <ToolControls agentId={chosen.agentId} tool={chosen} />
          {chosen.error && <div className="error-note">{chosen.error}</div>}
          <div className="grid-2 tight">
            <div>
              <div className="label">Arguments</div>
              <div className="json-box">
                <JsonView value={chosen.arguments ?? null} />
              </div>
            </div>
            <div>
              <div className="label">Result</div>
              <div className="json-box">
                <JsonView value={chosen.result ?? null} />
              </div>
            </div>
          </div>
        </div>
      )}
    </div>
  )
}

const MODEL_COLORS = ['#38bdf8', '#a78bfa', '#34d399', '#fbbf24', '#f472b6', '#fb923c', '#60a5fa', '#4ade80']

/**
 * Token use and cost per model, cumulative over time. The costs are the Studio's, priced as the
 * tokens came (by model family too, and at the price of that moment): never priced here.
 */
export function UsagePanel({ transcript, revision, sessionId }: { transcript: Transcript; revision: number; sessionId: string | null }) {
  const models = [...transcript.usage.values()]
  const session = useApi<{ cost_by_model?: Record<string, CostAmount>; tokens_by_model?: Record<string, { input: number; output: number; total: number }> }>(
    sessionId ? `/sessions/${encodeURIComponent(sessionId)}` : null,
    undefined,
    5000,
  )
  // The table is the Studio's, by the model it priced (an event without one is its agent's
  // model); the stream's own tally stands in until that has loaded, or without a session.
  const stored = session.data?.tokens_by_model
  const rows = stored
    ? Object.entries(stored).map(([model, t]) => ({ model, input: t.input, output: t.output, total: t.total }))
    : models.map((m) => ({ model: m.model, input: m.input, output: m.output, total: m.total }))
  const data = useMemo(() => {
    const times = new Set<number>()
    for (const m of models) for (const [ts] of m.points) times.add(ts)
    const xs = [...times].sort((a, b) => a - b)
    const series = models.map((m) => {
      const out: number[] = []
      let j = 0
      let last = 0
      for (const x of xs) {
        while (j < m.points.length && m.points[j][0] <= x) {
          last = m.points[j][1]
          j += 1
        }
        out.push(last)
      }
      return out
    })
    return [xs.map((x) => x / 1000), ...series]
  }, [revision]) // eslint-disable-line react-hooks/exhaustive-deps
  if (models.length === 0) return <Empty>No token usage reported yet.</Empty>
  return (
    <div data-testid="usage-panel">
      <table className="table compact">
        <thead>
          <tr>
            <th>Model</th>
            <th className="right">Input</th>
            <th className="right">Output</th>
            <th className="right">Total</th>
            <th className="right">Cost</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((m, i) => {
            const cost = session.data?.cost_by_model?.[m.model]
            return (
              <tr key={m.model}>
                <td>
                  <span className="swatch" style={{ background: MODEL_COLORS[i % MODEL_COLORS.length] }} />
                  <span className="mono small">{m.model}</span>
                </td>
                <td className="right num">{formatCount(m.input)}</td>
                <td className="right num">{formatCount(m.output)}</td>
                <td className="right num">{formatCount(m.total)}</td>
                <td className="right num">
                  {!cost ? '…' : cost.amount === null ? <span className="muted" title="No price for this model when its tokens came">unpriced</span> : formatCostOf(cost)}
                </td>
              </tr>
            )
          })}
        </tbody>
      </table>
      {data[0].length > 1 && (
        <Chart
          data={data as [number[], ...number[][]]}
          series={models.map((m, i) => ({ label: m.model, color: MODEL_COLORS[i % MODEL_COLORS.length], format: formatCount }))}
          height={150}
          yFormat={formatCount}
        />
      )}
    </div>
  )
}

export function ErrorsPanel({ errors }: { errors: ErrorItem[] }) {
  const [open, setOpen] = useState<number | null>(null)
  if (errors.length === 0) return <Empty>No errors.</Empty>
  return (
    <ul className="error-list" data-testid="errors-panel">
      {[...errors].reverse().slice(0, 100).map((e) => (
        <li key={e.cursor} onClick={() => setOpen(open === e.cursor ? null : e.cursor)} className="clickable">
          <div className="error-line">
            <Badge value={e.severity} tone={e.severity === 'warn' || e.severity === 'info' ? 'warn' : 'bad'} />
            <span className="error-msg">{e.message || '(no message)'}</span>
            <span className="muted small">{formatClock(e.ts)}</span>
          </div>
          {e.phase && <div className="muted small">phase: {e.phase}</div>}
          {open === e.cursor && e.detail !== undefined && (
            <div className="json-box">
              <JsonView value={e.detail} />
            </div>
          )}
        </li>
      ))}
    </ul>
  )
}

export function StateStrip({ states }: { states: { ts: number; state: string }[] }) {
  if (states.length === 0) return null
  return (
    <div className="state-strip" data-testid="state-strip">
      {states.slice(-12).map((s, i) => (
        <span key={`${s.ts}-${i}`} className="state-chip" title={formatClock(s.ts)}>
          <Badge value={s.state} />
          <span className="muted tiny">{formatClock(s.ts, false)}</span>
        </span>
      ))}
    </div>
  )
}

/** Requests of this session (or agent) waiting for a person, pinned above the output. */
export function RequestsSlot({ agentId, sessionId }: { agentId: string | null; sessionId: string | null }) {
  const store = useRequestStore()
  const now = useNow(1000)
  const hub = useHub()
  // Load this agent's requests once, so old ones in the history find their record too.
  useEffect(() => {
    if (agentId) void syncRequests(hub, { agent_id: agentId }).catch(() => undefined)
  }, [hub, agentId])
  const open = store.open(now).filter((v) => (sessionId ? v.session_id === sessionId : agentId ? v.agent_id === agentId : false))
  if (open.length === 0) return null
  return (
    <div className="approvals-slot" data-testid="approvals-slot">
      {open.map((view) => (
        <RequestLine key={view.id} view={view} />
      ))}
    </div>
  )
}

/** The full live session layout shared by the agent and session pages. */
export function SessionLive({
  transcript,
  revision,
  loading,
  error,
  truncated,
  agentId,
  sessionId,
}: {
  transcript: Transcript
  revision: number
  loading: boolean
  error: string | null
  truncated: boolean
  agentId?: string | null
  sessionId?: string | null
}) {
  const [tool, setTool] = useState<string | null>(null)
  const [tab, setTab] = useState<'tools' | 'usage' | 'errors'>('tools')
  useEffect(() => {
    if (tool) setTab('tools')
  }, [tool])
  const tools = transcript.toolList()
  return (
    <div className="session-live">
      <RequestsSlot agentId={agentId ?? transcript.agentId} sessionId={sessionId ?? null} />
      <StateStrip states={transcript.states} />
      {error && <div className="error-note">History could not be loaded: {error}</div>}
      {truncated && <div className="muted small">Showing the most recent part of a long history.</div>}
      <div className="session-grid">
        <div className="session-main">
          <div className="panel-title">
            Output {loading && <span className="muted small">loading history…</span>}
            <span className="muted small right-push">{countOf(transcript.eventCount, 'event')}</span>
            {transcript.cutChars() > 0 ? (
              <CopyButton
                text={() => transcript.plainText()}
                label="Copy shown text"
                title="Copies the text shown here: the start of blocks over 200,000 characters is not kept (see the marker in the output)"
              />
            ) : (
              <CopyButton text={() => transcript.plainText()} />
            )}
          </div>
          <Terminal transcript={transcript} revision={revision} onTool={setTool} height="calc(100vh - 320px)" />
        </div>
        <div className="session-side">
          <div className="tabs" role="tablist">
            <button type="button" className={tab === 'tools' ? 'active' : ''} onClick={() => setTab('tools')} data-testid="tab-tools">
              Tool calls <span className="count">{tools.length}</span>
            </button>
            <button type="button" className={tab === 'usage' ? 'active' : ''} onClick={() => setTab('usage')} data-testid="tab-usage">
              Tokens &amp; cost
            </button>
            <button type="button" className={tab === 'errors' ? 'active' : ''} onClick={() => setTab('errors')} data-testid="tab-errors">
              Errors <span className={`count ${transcript.errorCount ? 'bad' : ''}`}>{transcript.errors.length}</span>
            </button>
          </div>
          <div className="tab-body">
            {tab === 'tools' && <ToolTimeline tools={tools} selected={tool} onSelect={setTool} />}
            {tab === 'usage' && <UsagePanel transcript={transcript} revision={revision} sessionId={sessionId ?? null} />}
            {tab === 'errors' && <ErrorsPanel errors={transcript.errors} />}
          </div>
        </div>
      </div>
    </div>
  )
}
