import { useCallback, useEffect, useState } from 'react'
import { BrowserRouter, NavLink, Navigate, Route, Routes } from 'react-router'
import { ConnectionIndicator, OfflineBanner } from './components/Connection'
import { request } from './lib/api'
import { fetchSession, logout, onAuthRequired, setCsrfToken } from './lib/auth'
import { HubContext, useNow, useRequestStore } from './lib/hooks'
import type { LiveHub } from './lib/hub'
import type { AgentView } from './lib/types'
import { AgentDetailPage } from './pages/AgentDetail'
import { AgentsPage } from './pages/Agents'
import { EventsPage } from './pages/Events'
import { InboxPage } from './pages/Inbox'
import { syncRequests } from './lib/requests'
import { LoginPage } from './pages/Login'
import { MetricsPage } from './pages/Metrics'
import { OverviewPage } from './pages/Overview'
import { SessionDetailPage } from './pages/SessionDetail'
import { SessionsPage } from './pages/Sessions'
import { SettingsPage } from './pages/Settings'

const NAV = [
  { to: '/', label: 'Overview', icon: '◎', end: true },
  { to: '/inbox', label: 'Inbox', icon: '✉' },
  { to: '/agents', label: 'Agents', icon: '◉' },
  { to: '/sessions', label: 'Sessions', icon: '☰' },
  { to: '/events', label: 'Events', icon: '≋' },
  { to: '/metrics', label: 'Metrics', icon: '▤' },
  { to: '/settings', label: 'Settings', icon: '⚙' },
]

/** Keeps the hub's agent table filled: a REST snapshot on start, on reconnect and now and then. */
function AgentSync({ hub }: { hub: LiveHub }) {
  useEffect(() => {
    let stopped = false
    let lastUnknown = -1
    let lastReconnects = -1
    let lastLoad = 0
    const load = () => {
      lastLoad = Date.now()
      request<{ agents: AgentView[] }>('/agents')
        .then((data) => {
          if (!stopped) hub.setAgents(data.agents ?? [])
        })
        .catch(() => undefined)
    }
    load()
    const id = setInterval(() => {
      const since = Date.now() - lastLoad
      const unknown = hub.unknownAgents !== lastUnknown
      const reconnected = hub.connection.reconnects !== lastReconnects
      if ((unknown || reconnected) && since > 1000) {
        lastUnknown = hub.unknownAgents
        lastReconnects = hub.connection.reconnects
        load()
      } else if (since > 5_000) {
        load()
      }
    }, 500)
    return () => {
      stopped = true
      clearInterval(id)
    }
  }, [hub])
  return null
}

/** Keeps the hub's requests filled: a REST snapshot on start, after a reconnect, and every 10 s. */
function RequestSync({ hub }: { hub: LiveHub }) {
  useEffect(() => {
    let stopped = false
    let running = false
    let lastReconnects = hub.connection.reconnects
    let lastResets = hub.storeResets
    let lastLoad = 0
    const load = () => {
      if (running) return
      running = true
      lastLoad = Date.now()
      syncRequests(hub)
        .catch(() => undefined)
        .finally(() => {
          running = false
        })
    }
    load()
    const id = setInterval(() => {
      if (stopped) return
      const reconnected = hub.connection.reconnects !== lastReconnects || hub.storeResets !== lastResets
      if (reconnected && hub.connection.state === 'open') {
        lastReconnects = hub.connection.reconnects
        lastResets = hub.storeResets
        load()
      } else if (Date.now() - lastLoad > 10_000 && document.visibilityState !== 'hidden') {
        load()
      }
    }, 500)
    return () => {
      stopped = true
      clearInterval(id)
    }
  }, [hub])
  return null
}

/** The live count of requests waiting for a person, beside the Inbox link and in the title. */
function InboxBadge({ testId = 'inbox-count' }: { testId?: string }) {
  const requests = useRequestStore()
  const now = useNow(1000)
  const count = requests.openCount(now)
  useEffect(() => {
    document.title = count > 0 ? `(${count}) Aster Studio` : 'Aster Studio'
  }, [count])
  if (count === 0) return null
  return (
    <span className="nav-badge" data-testid={testId} title={`${count} waiting for a decision`}>
      {count}
    </span>
  )
}

type Gate = 'checking' | 'login' | 'open'

/**
 * Start the live stream only once this browser may read: auth off, or logged in. A refused
 * request (401), or a stream that keeps failing while the session has expired, shows the login.
 */
function useAuthGate(hub: LiveHub): { gate: Gate; authEnabled: boolean; enter: () => void; leave: () => void } {
  const [gate, setGate] = useState<Gate>('checking')
  const [authEnabled, setAuthEnabled] = useState(false)
  const enter = useCallback(() => {
    setGate('open')
    hub.start()
  }, [hub])
  const leave = useCallback(() => {
    hub.stop()
    setGate('login')
  }, [hub])
  useEffect(() => {
    let stopped = false
    fetchSession()
      .then((s) => {
        if (stopped) return
        setAuthEnabled(s.auth_enabled)
        if (!s.auth_enabled || s.authenticated) enter()
        else setGate('login')
      })
      .catch(() => {
        if (!stopped) enter() // the API will say what is wrong
      })
    const off = onAuthRequired(() => {
      setAuthEnabled(true)
      leave()
    })
    return () => {
      stopped = true
      off()
    }
  }, [enter, leave])
  useEffect(() => {
    if (gate !== 'open' || !authEnabled) return
    const id = setInterval(() => {
      if (hub.connection.state !== 'reconnecting' || hub.connection.attempt < 2) return
      fetchSession()
        .then((s) => {
          if (s.auth_enabled && !s.authenticated) leave()
        })
        .catch(() => undefined)
    }, 3000)
    return () => clearInterval(id)
  }, [gate, authEnabled, hub, leave])
  return { gate, authEnabled, enter, leave }
}

export function App({ hub }: { hub: LiveHub }) {
  const [menuOpen, setMenuOpen] = useState(false)
  const { gate, authEnabled, enter, leave } = useAuthGate(hub)
  if (gate === 'checking') return <div className="login muted">Loading…</div>
  if (gate === 'login') return <LoginPage onDone={enter} />
  return (
    <HubContext.Provider value={hub}>
      <BrowserRouter basename="/studio">
        <AgentSync hub={hub} />
        <RequestSync hub={hub} />
        <div className="shell">
          <aside className={`sidebar ${menuOpen ? 'open' : ''}`}>
            <div className="brand">
              <span className="brand-mark">✦</span>
              <span>
                Aster <b>Studio</b>
              </span>
              {/* On a narrow screen the sidebar is a top bar whose menu opens from this button. */}
              <button
                type="button"
                className="btn menu-toggle"
                aria-expanded={menuOpen}
                aria-controls="main-nav"
                data-testid="menu-toggle"
                onClick={() => setMenuOpen((open) => !open)}
              >
                ☰ Menu
                <InboxBadge testId="menu-inbox-count" />
              </button>
            </div>
            <nav id="main-nav">
              {NAV.map((item) => (
                <NavLink key={item.to} to={item.to} end={item.end} className="nav-item" onClick={() => setMenuOpen(false)}>
                  <span className="nav-icon">{item.icon}</span>
                  {item.label}
                  {item.to === '/inbox' && <InboxBadge />}
                </NavLink>
              ))}
            </nav>
            <div className="sidebar-foot">
              <ConnectionIndicator />
              {authEnabled && (
                <button
                  type="button"
                  className="btn btn-small logout"
                  data-testid="logout"
                  onClick={() => {
                    void logout().finally(() => {
                      setCsrfToken(null)
                      leave()
                    })
                  }}
                >
                  Log out
                </button>
              )}
            </div>
          </aside>
          <main className="main">
            <OfflineBanner />
            <Routes>
              <Route path="/" element={<OverviewPage />} />
              <Route path="/inbox" element={<InboxPage />} />
              <Route path="/agents" element={<AgentsPage />} />
              <Route path="/agents/:id" element={<AgentDetailPage />} />
              <Route path="/sessions" element={<SessionsPage />} />
              <Route path="/sessions/:id" element={<SessionDetailPage />} />
              <Route path="/events" element={<EventsPage />} />
              <Route path="/metrics" element={<MetricsPage />} />
              <Route path="/settings" element={<SettingsPage />} />
              <Route path="*" element={<Navigate to="/" replace />} />
            </Routes>
          </main>
        </div>
      </BrowserRouter>
    </HubContext.Provider>
  )
}
