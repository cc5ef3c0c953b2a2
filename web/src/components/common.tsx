/** Small shared pieces: cards, stats, badges, the connect snippet and empty states. */
import { useState, type ReactNode } from 'react'
import { Link } from 'react-router'
import { authEnabled } from '../lib/auth'
import { formatCost, formatCount, truncate } from '../lib/format'
import { agentPath, sessionPath } from '../lib/routes'
import type { AgentView } from '../lib/types'

export function Card({
  title,
  actions,
  children,
  className,
  testId,
}: {
  title?: ReactNode
  actions?: ReactNode
  children: ReactNode
  className?: string
  testId?: string
}) {
  return (
    <section className={`card ${className ?? ''}`} data-testid={testId}>
      {(title || actions) && (
        <header className="card-head">
          <h2>{title}</h2>
          <div className="card-actions">{actions}</div>
        </header>
      )}
      <div className="card-body">{children}</div>
    </section>
  )
}

export function Stat({
  label,
  value,
  hint,
  tone,
  testId,
}: {
  label: string
  value: ReactNode
  hint?: ReactNode
  tone?: 'good' | 'warn' | 'bad' | 'info'
  testId?: string
}) {
  return (
    <div className={`stat ${tone ? `tone-${tone}` : ''}`} data-testid={testId}>
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
      {hint !== undefined && (
        <div className="stat-hint" title={typeof hint === 'string' ? hint : undefined}>
          {hint}
        </div>
      )}
    </div>
  )
}

export function PageHeader({ title, subtitle, actions }: { title: ReactNode; subtitle?: ReactNode; actions?: ReactNode }) {
  return (
    <div className="page-head">
      <div>
        <h1>{title}</h1>
        {subtitle && <p className="muted">{subtitle}</p>}
      </div>
      {actions && <div className="page-actions">{actions}</div>}
    </div>
  )
}

const STATE_TONE: Record<string, string> = {
  working: 'info',
  running: 'info',
  ready: 'good',
  idle: 'neutral',
  paused: 'warn',
  completed: 'good',
  failed: 'bad',
  active: 'info',
  suspended: 'warn',
  interrupted: 'warn',
  executing: 'info',
  pending: 'neutral',
  queued: 'neutral',
  canceled: 'warn',
  canceling: 'warn',
  online: 'good',
  offline: 'neutral',
  stalled: 'warn',
}

export function Badge({ value, tone }: { value: string | null | undefined; tone?: string }) {
  const text = value || '–'
  return <span className={`badge tone-${tone ?? STATE_TONE[text] ?? 'neutral'}`}>{text}</span>
}

/** An agent's state; greyed when it is offline: the state it last reported, not what it does. */
export function AgentState({ agent }: { agent: AgentView }) {
  if (agent.status === 'online') return <Badge value={agent.state} />
  return (
    <span title="last reported before it went offline" data-testid="agent-state-offline">
      <Badge value={agent.state} tone="neutral" />
    </span>
  )
}

export function AgentStatus({ agent }: { agent: AgentView }) {
  const status = agent.status === 'online' ? (agent.stalled ? (agent.waiting ? 'waiting' : 'stalled') : 'online') : 'offline'
  return (
    <span
      className={`status status-${status}`}
      data-testid="agent-status"
      title={status === 'waiting' ? 'Silent since its request to a person: waiting for a decision in the Inbox' : undefined}
    >
      <span className="dot" />
      {status === 'waiting' ? 'waiting for you' : status}
    </span>
  )
}

export function Tokens({ value }: { value: number | null | undefined }) {
  return <span className="num">{formatCount(value ?? 0)}</span>
}

export function Cost({ amount, currency }: { amount: number | null | undefined; currency?: string }) {
  // null: none of its tokens had a price (never an unpriced $0); undefined: not known yet.
  return <span className="num">{amount === null ? 'unpriced' : formatCost(amount, currency)}</span>
}

/** A link to an agent page; the id is encoded, the text rendered as text. */
export function AgentLink({ id, name }: { id: string; name?: string | null }) {
  const text = name || id
  const shown = truncate(text, 48)
  return (
    <Link className="link" to={agentPath(id)} title={shown === text ? undefined : text}>
      {shown}
    </Link>
  )
}

export function SessionLink({ id }: { id: string | null | undefined }) {
  if (!id) return <span className="muted">–</span>
  return (
    <Link className="link mono" to={sessionPath(id)} title={id}>
      {id.length > 14 ? `${id.slice(0, 12)}…` : id}
    </Link>
  )
}

/** The agent-facing address of this Studio, as an SDK expects it. */
export function studioAgentUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  return `${scheme}://${window.location.host}`
}

export function CopyButton({ text, label = 'Copy', title }: { text: string | (() => string); label?: string; title?: string }) {
  const [done, setDone] = useState(false)
  return (
    <button
      type="button"
      className="btn btn-small"
      title={title}
      onClick={() => {
        void navigator.clipboard?.writeText(typeof text === 'function' ? text() : text).then(() => {
          setDone(true)
          setTimeout(() => setDone(false), 1200)
        })
      }}
    >
      {done ? 'Copied' : label}
    </button>
  )
}

export function connectSnippet(url: string, withKey = false): string {
  return [
    `pip install aster-studio-sdk`,
    `export ASTER_STUDIO_ENABLED=1 ASTER_STUDIO_URL=${url}`,
    ...(withKey ? [`export ASTER_STUDIO_TOKEN=...  # an agent key: aster-studio keys create --name my-agent`] : []),
    ``,
    `# in your agent`,
    `from aster_studio_sdk import StudioClient`,
    ``,
    `studio = StudioClient(agent_id="my-agent", name="My agent", model="gpt-4o")`,
    `with studio.session() as s:`,
    `    s.state("working")`,
    `    s.text("Hello from my agent")`,
    `    s.token_usage(120, 30, model="gpt-4o")`,
    `studio.close(timeout=5)`,
  ].join('\n')
}

/** How to connect an agent: the exact URL of this Studio and a snippet. */
export function ConnectHelp({ title = 'No agents yet' }: { title?: string }) {
  const url = studioAgentUrl()
  const snippet = connectSnippet(url, authEnabled())
  return (
    <div className="empty" data-testid="connect-help">
      <div className="empty-icon">✦</div>
      <h3>{title}</h3>
      <p className="muted">
        Point an agent at this Studio. Agents connect over WebSocket to{' '}
        <code className="mono" data-testid="connect-url">{`${url}/v1/remote-agents/connect`}</code>
      </p>
      <div className="snippet">
        <div className="snippet-head">
          <span>Python</span>
          <CopyButton text={snippet} />
        </div>
        <pre className="mono">{snippet}</pre>
      </div>
      <p className="muted small">
        Or see it alive first: run <code className="mono">aster-studio demo</code>.
      </p>
    </div>
  )
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty-line muted">{children}</div>
}

export function ErrorNote({ error }: { error: string | null }) {
  if (!error) return null
  return <div className="error-note">Could not load: {error}</div>
}

export function Segmented<T extends string>({
  value,
  options,
  onChange,
  testId,
}: {
  value: T
  options: readonly T[]
  onChange: (v: T) => void
  testId?: string
}) {
  return (
    <div className="segmented" role="tablist" data-testid={testId}>
      {options.map((o) => (
        <button
          key={o}
          type="button"
          role="tab"
          aria-selected={o === value}
          className={o === value ? 'active' : ''}
          onClick={() => onChange(o)}
        >
          {o}
        </button>
      ))}
    </div>
  )
}
