/** How durations, counts and task ids read in the panel. */

/** "42 s", "3 min 07 s", "2 h 05 min", "3 d 4 h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '–';
  }
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return seconds < 10 && seconds > 0 ? `${seconds.toFixed(1)} s` : `${s} s`;
  }
  const pad = (v: number) => String(v).padStart(2, '0');
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min ${pad(s % 60)} s`;
  }
  const h = Math.floor(m / 60);
  if (h < 48) {
    return `${h} h ${pad(m % 60)} min`;
  }
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** The same, compact, for a table cell: "1.7 s", "42 s", "3m07s", "2h05m". */
export function formatShortDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 60) {
    return formatDuration(seconds);
  }
  const s = Math.floor(seconds);
  const pad = (v: number) => String(v).padStart(2, '0');
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${pad(s % 60)}s` : `${Math.floor(m / 60)}h${pad(m % 60)}m`;
}

/** A message id is a UUID; its first 6 digits tell tasks apart on screen (the full id is
 * in the cell's tooltip). */
export function shortTaskId(msgId: string | null): string {
  if (!msgId) {
    return '';
  }
  return msgId.split('-')[0].slice(0, 6);
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Bytes as the notebook widget writes them: "1.2 GB", "312 MB", "48 kB" ('' if unknown). */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) {
    return '';
  }
  const units: [string, number][] = [
    ['GB', 1e9],
    ['MB', 1e6],
    ['kB', 1e3]
  ];
  for (const [unit, size] of units) {
    if (Math.abs(n) >= size) {
      const value = n / size;
      return value < 10 ? `${value.toFixed(1)} ${unit}` : `${Math.round(value)} ${unit}`;
    }
  }
  return `${Math.floor(n)} B`;
}

/** CPU in percent of one core: "97%" ('' if unknown). */
export function formatCpu(cpu: number | null | undefined): string {
  return cpu === null || cpu === undefined ? '' : `${Math.round(cpu)}%`;
}
