import { useState } from 'react'
import { login } from '../lib/auth'

/** The console token prompt, shown when the Studio has auth on and this browser is logged out. */
export function LoginPage({ onDone }: { onDone: () => void }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  return (
    <div className="login" data-testid="page-login">
      <form
        className="card login-card"
        onSubmit={(e) => {
          e.preventDefault()
          setBusy(true)
          login(token.trim())
            .then(() => {
              setError(null)
              onDone()
            })
            .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
            .finally(() => setBusy(false))
        }}
      >
        <div className="brand">
          <span className="brand-mark">✦</span>
          <span>
            Aster <b>Studio</b>
          </span>
        </div>
        <p className="muted">
          This Studio asks for its console token: the one it was started with, or the one it
          printed when it first started; <code className="mono">aster-studio console-token</code> makes a new one.
        </p>
        <input
          className="input"
          type="password"
          autoFocus
          autoComplete="current-password"
          placeholder="console token"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          data-testid="login-token"
        />
        {error && <div className="error-note">{error}</div>}
        <button type="submit" className="btn btn-primary" disabled={busy || !token.trim()} data-testid="login-submit">
          {busy ? 'Checking…' : 'Log in'}
        </button>
      </form>
    </div>
  )
}
