/** Small pure formatters shared by the sections (unit-tested). */
import { Session, Slots } from './api';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n: number | string | null | undefined): string {
  let v = Number(n ?? 0);
  if (!isFinite(v) || v <= 0) {
    return '0 B';
  }
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

/** "5s", "3m", "2h", "4d" since `iso` (an ISO date or epoch seconds). */
export function age(when: string | number | null | undefined, now: number = Date.now()): string {
  if (when === null || when === undefined || when === '') {
    return '';
  }
  const t = typeof when === 'number' ? when * 1000 : Date.parse(when);
  if (!isFinite(t)) {
    return '';
  }
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h`;
  }
  return `${Math.floor(s / 86400)}d`;
}

/** "cpu 2 · 4 GiB · GPU 0.5": what a session asked for, in one line. */
export function slots(r: Slots | null | undefined): string {
  if (!r) {
    return '';
  }
  const parts: string[] = [];
  if (r.cpu !== undefined) {
    parts.push(`cpu ${r.cpu}`);
  }
  if (r.mem !== undefined) {
    parts.push(bytes(r.mem));
  }
  if (Number(r['cuda.device'] ?? 0) > 0) {
    parts.push(`GPU ×${r['cuda.device']}`);
  }
  if (Number(r['cuda.shares'] ?? 0) > 0) {
    parts.push(`fGPU ${r['cuda.shares']}`);
  }
  return parts.join(' · ');
}

export type StatusTone = 'ok' | 'busy' | 'idle' | 'bad';

/** Colour family of a status (sessions, pipeline tasks, service routes): running or done green, starting/stopping amber, ended grey, failed red. */
export function statusTone(status: Session['status'] | string): StatusTone {
  switch (status) {
    case 'RUNNING':
    case 'SUCCEEDED':
    case 'HEALTHY':
      return 'ok';
    case 'PENDING':
    case 'SCHEDULED':
    case 'PREPARING':
    case 'TERMINATING':
    case 'WAITING':
    case 'RETRYING':
    case 'CANCELLING':
    case 'PROVISIONING':
    case 'DEGRADED':
      return 'busy';
    case 'ERROR':
    case 'FAILED':
    case 'UNHEALTHY':
    case 'FAILED_TO_START':
      return 'bad';
    default:
      return 'idle';
  }
}

/** 0..1 of used over capacity, safe for zero capacity. */
export function fraction(used: number | string | undefined, total: number | string | undefined): number {
  const u = Number(used ?? 0);
  const t = Number(total ?? 0);
  if (!isFinite(u) || !isFinite(t) || t <= 0) {
    return 0;
  }
  return Math.min(1, Math.max(0, u / t));
}

/** "data:ro, models" → ["data:ro", "models"] (the engine parses each mount). */
export function parseMounts(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map(s => s.trim())
    .filter(Boolean);
}

/** Resource slots from form fields; empty fields are left to the engine. A fractional GPU is fGPU shares, a whole number devices. */
export function resourcesFromForm(f: { cpu: string; mem: string; gpu: string }): Record<string, string> {
  const resources: Record<string, string> = {};
  if (f.cpu.trim()) {
    resources.cpu = f.cpu.trim();
  }
  if (f.mem.trim()) {
    resources.mem = f.mem.trim();
  }
  const gpu = f.gpu.trim();
  if (gpu && Number(gpu) > 0) {
    resources[Number.isInteger(Number(gpu)) && Number(gpu) >= 1 ? 'cuda.device' : 'cuda.shares'] = gpu;
  }
  return resources;
}
