/** A uPlot time-series chart that resizes with its box and updates data in place. */
import { useEffect, useRef } from 'react'
import { axisSize, timeTicks } from '../lib/format'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export interface SeriesSpec {
  label: string
  color: string
  fill?: boolean
  bars?: boolean
  /** How values show in the legend (and on the right axis, for a right-hand series). */
  format?: (value: number) => string
  /** Labels for the right axis's ticks, given all of them and their step (over `format`). */
  ticks?: TickLabels
  /** Draw against a second y axis on the right (e.g. cost beside tokens). */
  right?: boolean
}

/** Labels for an axis's ticks, given all of them and the step between them. */
export type TickLabels = (ticks: number[], step: number) => string[]

interface ChartProps {
  /** [xs (unix seconds), ...ys] */
  data: uPlot.AlignedData
  series: SeriesSpec[]
  height?: number
  yFormat?: (value: number) => string
  /** Labels for the left axis's ticks, given all of them and their step (over `yFormat`). */
  yTicks?: TickLabels
  /** A fixed x range in unix seconds (otherwise it fits the data). */
  xRange?: [number, number]
  testId?: string
}

const AXIS = {
  stroke: '#8b98ad',
  grid: { stroke: 'rgba(148,163,184,0.12)', width: 1 },
  ticks: { stroke: 'rgba(148,163,184,0.2)', width: 1 },
  font: '11px system-ui, sans-serif',
}

function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16)
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`
}

export function Chart({ data, series, height = 180, yFormat, yTicks, xRange, testId }: ChartProps) {
  const range = useRef(xRange)
  range.current = xRange
  const box = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  const shape = series.map((s) => `${s.label}:${s.color}:${s.bars ? 1 : 0}:${s.right ? 1 : 0}`).join('|')

  useEffect(() => {
    const el = box.current
    if (!el) return
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => (range.current ? [range.current[0], range.current[1]] : [min, max]),
        },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
        right: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { ...AXIS, values: (_u: uPlot, ticks: number[], _axis: number, _space: number, step: number) => timeTicks(ticks, step) },
        {
          ...AXIS,
          size: (_u: uPlot, values: string[]) => axisSize(values),
          values: (_u, ticks, _axis, _space, step) =>
            yTicks ? yTicks(ticks, step) : ticks.map((t) => (yFormat ? yFormat(t) : String(t))),
        },
        ...series
          .filter((s) => s.right)
          .slice(0, 1)
          .map((s) => ({
            ...AXIS,
            scale: 'right',
            side: 1 as const,
            size: (_u: uPlot, values: string[]) => axisSize(values),
            grid: { show: false },
            values: (_u: uPlot, ticks: number[], _axis: number, _space: number, step: number) =>
              s.ticks ? s.ticks(ticks, step) : ticks.map((t) => (s.format ? s.format(t) : String(t))),
          })),
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          scale: s.right ? 'right' : 'y',
          stroke: s.color,
          width: 1.6,
          fill: s.fill || s.bars ? withAlpha(s.color, s.bars ? 0.55 : 0.14) : undefined,
          paths: s.bars ? bars : undefined,
          points: s.right ? { show: true, size: 6, fill: s.color } : { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : s.format ? s.format(v) : String(v)),
        })),
      ],
    }
    plot.current = new uPlot(opts, data, el)
    const observer = new ResizeObserver(() => {
      if (plot.current && el.clientWidth > 0) plot.current.setSize({ width: el.clientWidth, height })
    })
    observer.observe(el)
    return () => {
      observer.disconnect()
      plot.current?.destroy()
      plot.current = null
    }
    // Rebuilt only when the series change; data flows through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height])

  useEffect(() => {
    plot.current?.setData(data)
  }, [data])

  return <div className="chart" ref={box} data-testid={testId} />
}
