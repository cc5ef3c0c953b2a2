/** A fixed-capacity buffer that keeps the newest items: bounded memory for live lists. */
export class Ring<T> {
  private items: (T | undefined)[]
  private start = 0
  private count = 0
  /** Items pushed out by newer ones since creation (or the last clear). */
  evicted = 0

  constructor(readonly capacity: number) {
    if (capacity < 1) throw new RangeError('capacity must be at least 1')
    this.items = new Array<T | undefined>(capacity)
  }

  get size(): number {
    return this.count
  }

  push(item: T): void {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item
      this.count += 1
    } else {
      this.items[this.start] = item
      this.start = (this.start + 1) % this.capacity
      this.evicted += 1
    }
  }

  pushAll(items: readonly T[]): void {
    for (const item of items) this.push(item)
  }

  /** The i-th oldest item (0 = oldest). */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.count) return undefined
    return this.items[(this.start + index) % this.capacity]
  }

  /** The i-th newest item (0 = newest). */
  fromNewest(index: number): T | undefined {
    return this.at(this.count - 1 - index)
  }

  toArray(): T[] {
    const out: T[] = []
    for (let i = 0; i < this.count; i += 1) out.push(this.at(i) as T)
    return out
  }

  clear(): void {
    this.items = new Array<T | undefined>(this.capacity)
    this.start = 0
    this.count = 0
    this.evicted = 0
  }
}

/** Per-second counters over a sliding window, for live rate charts. */
export class RateSeries {
  private readonly buckets: Float64Array
  private lastSecond = 0

  constructor(readonly seconds: number) {
    this.buckets = new Float64Array(seconds)
  }

  add(nowMs: number, amount = 1): void {
    this.advance(Math.floor(nowMs / 1000))
    this.buckets[this.lastSecond % this.seconds] += amount
  }

  /** Timestamps (s) and values of the window ending at `nowMs`, oldest first. */
  series(nowMs: number): [number[], number[]] {
    this.advance(Math.floor(nowMs / 1000))
    const xs: number[] = []
    const ys: number[] = []
    for (let s = this.lastSecond - this.seconds + 1; s <= this.lastSecond; s += 1) {
      xs.push(s)
      ys.push(s < 0 ? 0 : this.buckets[((s % this.seconds) + this.seconds) % this.seconds])
    }
    return [xs, ys]
  }

  /** Average per second over the last `window` complete seconds. */
  rate(nowMs: number, window = 5): number {
    this.advance(Math.floor(nowMs / 1000))
    let sum = 0
    for (let i = 1; i <= window; i += 1) {
      const s = this.lastSecond - i
      if (s >= 0) sum += this.buckets[s % this.seconds]
    }
    return sum / window
  }

  private advance(second: number): void {
    if (this.lastSecond === 0) {
      this.lastSecond = second
      return
    }
    if (second <= this.lastSecond) return
    const steps = Math.min(second - this.lastSecond, this.seconds)
    for (let i = 1; i <= steps; i += 1) this.buckets[(this.lastSecond + i) % this.seconds] = 0
    this.lastSecond = second
  }
}
