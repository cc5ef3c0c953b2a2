import { Link } from 'react-router'
import { useRouteId } from '../lib/routes'
import { AgentLink, Badge, Card, ErrorNote, PageHeader, Stat } from '../components/common'
import { SessionLive } from '../components/SessionViews'
import { formatCostOf, formatCount, formatDateTime, formatDuration } from '../lib/format'
import { useApi, useNow } from '../lib/hooks'
import { useTranscript } from '../lib/useTranscript'
import type { SessionDetail } from '../lib/types'

export function SessionDetailPage() {
  const id = useRouteId('sessions')
  const now = useNow(1000)
  const session = useApi<SessionDetail>(`/sessions/${encodeURIComponent(id)}`, undefined, 5000)
  const live = useTranscript({ sessionId: id })
  const s = session.data
  // The stored summary refreshes every few seconds; the live fold is ahead of it while streaming.
  const t = live.transcript
  let liveIn = 0
  let liveOut = 0
  for (const u of t.usage.values()) {
    liveIn += u.input
    liveOut += u.output
  }
  const tokensIn = Math.max(s?.token_usage?.input ?? 0, liveIn)
  const tokensOut = Math.max(s?.token_usage?.output ?? 0, liveOut)
  const events = Math.max(s?.event_count ?? 0, t.eventCount)
  const start = s ? Date.parse(s.created_at) : NaN
  const end = s ? (s.ended_at ? Date.parse(s.ended_at) : s.status === 'active' ? now : Date.parse(s.updated_at)) : NaN
  return (
    <div className="page" data-testid="page-session">
      <PageHeader
        title={
          <span className="title-row">
            <span className="mono">{id}</span>
            {s && <Badge value={s.status} />}
          </span>
        }
        subtitle={
          <>
            <Link to="/sessions" className="link">
              ← Sessions
            </Link>
            {s && (
              <>
                {' '}
                · agent <AgentLink id={s.agent_id} name={s.agent_name} /> · started {formatDateTime(s.created_at)}
                {s.ended_at ? ` · ended ${formatDateTime(s.ended_at)}` : ''}
              </>
            )}
          </>
        }
        actions={
          <Link className="btn" to={`/events?mode=history&session_id=${encodeURIComponent(id)}`}>
            Raw events
          </Link>
        }
      />
      <ErrorNote error={session.error} />
      {s && (
        <div className="stats-grid">
          <Stat label="Duration" value={formatDuration(end - start)} hint={s.status === 'active' ? 'running' : s.status} />
          <Stat label="Events" value={formatCount(events)} />
          <Stat label="Tokens" value={formatCount(tokensIn + tokensOut)} hint={`${formatCount(tokensIn)} in · ${formatCount(tokensOut)} out`} />
          <Stat label="Cost" value={formatCostOf(s.cost)} />
          <Stat label="Tool calls" value={formatCount(live.transcript.tools.size)} />
          <Stat
            label="Errors"
            testId="session-errors"
            value={formatCount(t.errorCount)}
            tone={t.errorCount ? 'bad' : undefined}
            hint={t.minorErrorCount ? `${formatCount(t.minorErrorCount)} ${t.minorErrorCount === 1 ? 'warning' : 'warnings'}` : undefined}
          />
        </div>
      )}
      <Card>
        <SessionLive {...live} agentId={s?.agent_id ?? null} sessionId={id} />
      </Card>
    </div>
  )
}
