/** The connection indicator: live, reconnecting (with countdown), or offline. */
import { formatRate } from '../lib/format'
import { useLive, useNow } from '../lib/hooks'

export function ConnectionIndicator() {
  const hub = useLive()
  const now = useNow(500)
  const info = hub.connection
  const rate = hub.eventRate.rate(now, 3)
  let tone = 'connecting'
  let label = 'Connecting…'
  if (info.state === 'open') {
    tone = 'live'
    label = 'Live'
  } else if (info.state === 'reconnecting') {
    tone = 'down'
    const wait = info.retryAt ? Math.max(0, Math.ceil((info.retryAt - now) / 1000)) : 0
    label = wait > 0 ? `Reconnecting in ${wait}s` : 'Reconnecting…'
  } else if (info.state === 'stopped') {
    tone = 'down'
    label = 'Disconnected'
  }
  return (
    <div className={`conn conn-${tone}`} data-testid="connection" data-state={info.state} title={info.lastError ?? ''}>
      <span className="dot" />
      <span className="conn-label">{label}</span>
      {info.state === 'open' && <span className="conn-rate num">{formatRate(rate)} ev/s</span>}
      {info.state === 'reconnecting' && (
        <button type="button" className="btn btn-small" onClick={() => hub.stream.reconnectNow()}>
          Retry now
        </button>
      )}
    </div>
  )
}
