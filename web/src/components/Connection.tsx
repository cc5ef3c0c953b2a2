/** The connection indicator: live, reconnecting (with countdown), or offline. */
import { useEffect, useState } from 'react'
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

/** A banner over the page while the stream is down for more than a moment. */
export function OfflineBanner() {
  const hub = useLive()
  const now = useNow(500)
  const info = hub.connection
  const [downSince, setDownSince] = useState<number | null>(null)
  useEffect(() => {
    if (info.state === 'reconnecting' && downSince === null) setDownSince(Date.now())
    if (info.state === 'open' && downSince !== null) setDownSince(null)
  }, [info.state, downSince])
  if (downSince === null || now - downSince < 2000) return null
  return (
    <div className="offline-banner" role="status" data-testid="offline-banner">
      The connection to the Studio was lost; reconnecting. Live views resume where they left off.
    </div>
  )
}
