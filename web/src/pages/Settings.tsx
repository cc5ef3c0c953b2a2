import { useEffect, useState } from 'react'
import { Card, ConnectHelp, ErrorNote, PageHeader } from '../components/common'
import { request } from '../lib/api'
import { fetchHealth, healthFacts, type Healthz } from '../lib/health'
import { useApi } from '../lib/hooks'
import type { ModelPricing } from '../lib/types'

const HEALTH_REFRESH_MS = 5000

/** This Studio as `/healthz` tells it: its storage, and its place in a cluster. */
function StudioFacts() {
  const [health, setHealth] = useState<Healthz | null>(null)
  const [error, setError] = useState<string | null>(null)
  useEffect(() => {
    let controller = new AbortController()
    const load = () => {
      controller.abort()
      controller = new AbortController()
      fetchHealth(controller.signal)
        .then((h) => {
          setHealth(h)
          setError(null)
        })
        .catch((err: unknown) => {
          if (!controller.signal.aborted) setError(err instanceof Error ? err.message : String(err))
        })
    }
    load()
    const id = setInterval(() => {
      if (document.visibilityState !== 'hidden') load()
    }, HEALTH_REFRESH_MS)
    return () => {
      clearInterval(id)
      controller.abort()
    }
  }, [])
  return (
    <Card title="This Studio" actions={<span className="muted small">from /healthz, every 5 s</span>}>
      <ErrorNote error={error} />
      {health && (
        <dl className="kv kv-wide" data-testid="studio-facts">
          {healthFacts(health).map(([label, value, bad]) => (
            <div key={label} className="kv-row">
              <dt>{label}</dt>
              <dd className={bad ? 'error-text' : undefined} title={value}>
                {value}
              </dd>
            </div>
          ))}
        </dl>
      )}
    </Card>
  )
}

function PriceRow({ price, onSaved }: { price: ModelPricing; onSaved: () => void }) {
  const [editing, setEditing] = useState(false)
  const [input, setInput] = useState(String(price.input_price_per_m))
  const [output, setOutput] = useState(String(price.output_price_per_m))
  const [error, setError] = useState<string | null>(null)
  const save = async () => {
    try {
      await request('/pricing', {
        method: 'PUT',
        body: { model: price.model, input_price_per_m: Number(input), output_price_per_m: Number(output), currency: 'USD' }, // the only currency: a row an older release kept in another is saved as what totals count it in
      })
      setEditing(false)
      setError(null)
      onSaved()
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }
  const remove = async () => {
    try {
      await request(`/pricing/${encodeURIComponent(price.model)}`, { method: 'DELETE' })
      onSaved()
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }
  return (
    <tr data-testid="price-row">
      <td className="mono">{price.model}</td>
      {editing ? (
        <>
          <td className="right">
            <input className="input num-input" type="number" min="0" step="any" value={input} onChange={(e) => setInput(e.target.value)} />
          </td>
          <td className="right">
            <input className="input num-input" type="number" min="0" step="any" value={output} onChange={(e) => setOutput(e.target.value)} />
          </td>
          <td>{price.currency}</td>
          <td className="right">
            <button type="button" className="btn btn-small btn-primary" onClick={() => void save()}>
              Save
            </button>{' '}
            <button type="button" className="btn btn-small" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </td>
        </>
      ) : (
        <>
          <td className="right num">{price.input_price_per_m}</td>
          <td className="right num">{price.output_price_per_m}</td>
          <td>{price.currency}</td>
          <td className="right">
            <button type="button" className="btn btn-small" onClick={() => setEditing(true)}>
              Edit
            </button>{' '}
            <button type="button" className="btn btn-small btn-danger" onClick={() => void remove()}>
              Delete
            </button>
          </td>
        </>
      )}
      {error && <td className="text-bad small">{error}</td>}
    </tr>
  )
}

export function SettingsPage() {
  const pricing = useApi<Record<string, ModelPricing>>('/pricing')
  const [model, setModel] = useState('')
  const [input, setInput] = useState('')
  const [output, setOutput] = useState('')
  const [error, setError] = useState<string | null>(null)
  const rows = Object.values(pricing.data ?? {}).sort((a, b) => a.model.localeCompare(b.model))
  const add = async () => {
    const i = Number(input)
    const o = Number(output)
    if (!model.trim() || input === '' || output === '' || !(i >= 0) || !(o >= 0)) {
      setError('A model name and two prices (0 or more) are needed.')
      return
    }
    try {
      await request('/pricing', { method: 'PUT', body: { model: model.trim(), input_price_per_m: i, output_price_per_m: o, currency: 'USD' } })
      setModel('')
      setInput('')
      setOutput('')
      setError(null)
      pricing.reload()
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }
  return (
    <div className="page" data-testid="page-settings">
      <PageHeader title="Settings" subtitle="Prices turn reported tokens into cost" />
      <Card title="Price table" actions={<span className="muted small">USD per 1,000,000 tokens · a price of 0 is a free model</span>}>
        <ErrorNote error={pricing.error} />
        <table className="table" data-testid="pricing-table">
          <thead>
            <tr>
              <th>Model</th>
              <th className="right">Input / M</th>
              <th className="right">Output / M</th>
              <th>Currency</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((p) => (
              <PriceRow key={p.model} price={p} onSaved={pricing.reload} />
            ))}
            {rows.length === 0 && !pricing.loading && (
              <tr>
                <td colSpan={5} className="muted">
                  No prices yet: every token is counted but unpriced.
                </td>
              </tr>
            )}
          </tbody>
          <tfoot>
            <tr>
              <td>
                <input className="input" placeholder="model name, e.g. gpt-4.1" value={model} onChange={(e) => setModel(e.target.value)} data-testid="price-model" />
              </td>
              <td className="right">
                <input className="input num-input" type="number" min="0" step="any" placeholder="0.00" value={input} onChange={(e) => setInput(e.target.value)} data-testid="price-input" />
              </td>
              <td className="right">
                <input className="input num-input" type="number" min="0" step="any" placeholder="0.00" value={output} onChange={(e) => setOutput(e.target.value)} data-testid="price-output" />
              </td>
              <td>USD</td>
              <td className="right">
                <button type="button" className="btn btn-primary" onClick={() => void add()} data-testid="price-add">
                  Add model
                </button>
              </td>
            </tr>
          </tfoot>
        </table>
        {error && <div className="error-note">{error}</div>}
      </Card>
      <Card title="Connect an agent">
        <ConnectHelp title="This Studio's address" />
      </Card>
      <StudioFacts />
    </div>
  )
}
