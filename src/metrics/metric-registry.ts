/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
 * exposition format (version 0.0.4). Label sets are bounded: past `maxSeries` distinct label
 * values a metric folds new ones into `other`, so a label such as customer_id cannot grow a
 * scrape without limit.
 */

type Labels = Record<string, string>;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const keyOf = (labels: Labels) => Object.keys(labels).sort().map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',');
const fmt = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : '-Inf');

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly maxSeries = 200,
  ) {}

  /** A label set, or its `other` stand-in once the metric holds `maxSeries` of them. */
  protected bounded(labels: Labels, size: number, has: (key: string) => boolean): string {
    const key = keyOf(labels);
    if (has(key) || size < this.maxSeries) return key;
    return keyOf(Object.fromEntries(Object.keys(labels).map((k) => [k, 'other'])));
  }

  abstract render(): string[];
}

export class Counter extends Metric {
  private readonly values = new Map<string, number>();

  inc(labels: Labels = {}, by = 1): void {
    const key = this.bounded(labels, this.values.size, (k) => this.values.has(k));
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(keyOf(labels)) ?? 0;
  }

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`, ...[...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${fmt(v)}`)];
  }
}

/** A gauge read at scrape time. */
export class Gauge extends Metric {
  constructor(name: string, help: string, private readonly read: () => number | Iterable<[Labels, number]>) {
    super(name, help);
  }

  render(): string[] {
    const v = this.read();
    const rows = typeof v === 'number' ? [[{}, v] as [Labels, number]] : [...v];
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, ...rows.map(([l, n]) => `${this.name}${keyOf(l) ? `{${keyOf(l)}}` : ''} ${fmt(n)}`)];
  }
}

export class Histogram extends Metric {
  private readonly series = new Map<string, { buckets: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, private readonly bounds: readonly number[], maxSeries = 200) {
    super(name, help, maxSeries);
  }

  observe(value: number, labels: Labels = {}): void {
    const key = this.bounded(labels, this.series.size, (k) => this.series.has(k));
    let s = this.series.get(key);
    if (s === undefined) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.bounds.length; i++) if (value <= this.bounds[i]!) s.buckets[i]!++;
    s.sum += value;
    s.count++;
  }

  count(labels: Labels = {}): number {
    return this.series.get(keyOf(labels))?.count ?? 0;
  }

  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      this.bounds.forEach((b, i) => out.push(`${this.name}_bucket{${sep}le="${fmt(b)}"} ${s.buckets[i]}`));
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`, `${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`, `${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return out;
  }
}

export class MetricRegistry {
  private readonly metrics: Metric[] = [];

  add<M extends Metric>(metric: M): M {
    this.metrics.push(metric);
    return metric;
  }

  render(): string {
    return `${this.metrics.flatMap((m) => m.render()).join('\n')}\n`;
  }
}

/** Seconds, from a sub-millisecond request to a stuck one. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
