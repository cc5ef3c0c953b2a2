import { useState } from 'react'
import { Link } from 'react-router'
import { sessionPath, useRouteId } from '../lib/routes'
import { AgentState, AgentStatus, Card, ErrorNote, PageHeader, Stat } from '../components/common'
import { JsonView } from '../components/JsonView'
import { SessionLive } from '../components/SessionViews'
import { displayName, uptimeMs } from '../lib/agents'
import { countOf, formatClock, formatCostOf, formatCount, formatDateTime, formatDuration, formatRelative } from '../lib/format'
import { useApi, useLive, useNow } from '../lib/hooks'
import { useTranscript } from '../lib/useTranscript'
import type { AgentView, SessionList } from '../lib/types'

export function AgentDetailPage() {
  const id = useRouteId('agents')
  const hub = useLive()
  const now = useNow(1000)
  const rest = useApi<AgentView>(`/agents/${encodeURIComponent(id)}`, undefined, 10_000)
  const agent = hub.agents.get(id) ?? rest.data
  const sessions = useApi<SessionList>('/sessions', { agent_id: id, limit: 25 }, 10_000)
  const [pinned, setPinned] = useState<string | null>(null)

  const latest = sessions.data?.sessions?.[0]?.id ?? null
  const sessionId = pinned ?? agent?.current_session_id ?? latest
  const live = useTranscript(sessionId ? { sessionId } : { agentId: agent ? id : null })

  if (!agent) {
    return (
      <div className="page">
        <PageHeader title={id} subtitle={<Link to="/agents" className="link">← Agents</Link>} />
        {rest.loading ? <div className="muted">Loading…</div> : <ErrorNote error={rest.error ?? 'unknown agent'} />}
      </div>
    )
  }
  const following = !pinned
  return (
    <div className="page" data-testid="page-agent">
      <PageHeader
        title={
          <span className="title-row">
            <span data-testid="agent-name">{displayName(agent)}</span>
            <AgentStatus agent={agent} />
            <AgentState agent={agent} />
          </span>
        }
        subtitle={
          <>
            <Link to="/agents" className="link">
              ← Agents
            </Link>{' '}
            · <span className="mono">{agent.id}</span>
            {agent.model ? (
              <>
                {' '}
                · <span className="mono">{agent.model}</span>
              </>
            ) : null}
          </>
        }
      />
      <div className="stats-grid">
        <Stat label="Tokens" value={formatCount(agent.token_usage?.total ?? 0)} hint={`${formatCount(agent.token_usage?.input ?? 0)} in · ${formatCount(agent.token_usage?.output ?? 0)} out`} testId="agent-tokens" />
        <Stat label="Cost" value={formatCostOf(agent.cost)} hint={agent.unpriced_tokens ? countOf(agent.unpriced_tokens, 'unpriced token') : 'all priced'} />
        <Stat label="Events" value={formatCount(agent.event_count ?? 0)} hint={`last ${formatRelative(agent.last_event_at, now)}`} />
        <Stat label="Errors" value={formatCount(agent.error_count ?? 0)} tone={agent.error_count ? 'bad' : undefined} />
        <Stat label="Uptime" value={formatDuration(uptimeMs(agent, now))} hint={agent.status === 'online' ? `since ${formatClock(agent.connected_at, false)}` : `last seen ${formatRelative(agent.last_seen, now)}`} />
      </div>
      <Card
        title={
          <span className="title-row">
            Session
            <select
              className="input select"
              value={sessionId ?? ''}
              onChange={(e) => setPinned(e.target.value || null)}
              data-testid="session-picker"
            >
              {!sessionId && <option value="">(no session)</option>}
              {sessionId && !sessions.data?.sessions?.some((s) => s.id === sessionId) && <option value={sessionId}>{sessionId}</option>}
              {(sessions.data?.sessions ?? []).map((s) => (
                <option key={s.id} value={s.id}>
                  {s.id} · {s.status}
                  {s.id === agent.current_session_id ? ' (current)' : ''}
                </option>
              ))}
            </select>
            {following ? (
              <span className="pill live">following current session</span>
            ) : (
              <button type="button" className="btn btn-small" onClick={() => setPinned(null)}>
                Follow current
              </button>
            )}
            {sessionId && (
              <Link className="link small" to={sessionPath(sessionId)}>
                open session →
              </Link>
            )}
            <Link className="link small" to={`/sessions?agent_id=${encodeURIComponent(agent.id)}`}>
              all sessions →
            </Link>
            <Link className="link small" to={`/events?mode=history&agent_id=${encodeURIComponent(agent.id)}`}>
              events →
            </Link>
          </span>
        }
      >
        <SessionLive {...live} agentId={agent.id} sessionId={sessionId} />
      </Card>
      <details className="card details">
        <summary>Capabilities and metadata</summary>
        <div className="grid-2 tight">
          <div>
            <div className="label">Capabilities</div>
            <div className="json-box">
              <JsonView value={agent.capabilities ?? []} />
            </div>
          </div>
          <div>
            <div className="label">Metadata</div>
            <div className="json-box">
              <JsonView value={agent.metadata ?? {}} />
            </div>
          </div>
        </div>
        <div className="muted small">
          Registered {formatDateTime(agent.registered_at)} · connected {formatDateTime(agent.connected_at)} · last seen {formatDateTime(agent.last_seen)}
        </div>
      </details>
    </div>
  )
}
