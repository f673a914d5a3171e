/**
 * A pipeline job's tasks as a layered DAG: each task sits one layer below its deepest
 * dependency (a longest-path layering), layers run top to bottom, tasks keep their pipeline
 * order within a layer. Pure geometry, so the renderer and its tests share it.
 */

export interface DagInput {
  name: string;
  depends_on: string[];
}

export interface DagNode {
  name: string;
  layer: number;
  x: number;
  y: number;
}

export interface DagEdge {
  from: string;
  to: string;
  /** An SVG path from the bottom of `from` to the top of `to`. */
  d: string;
}

export interface DagLayout {
  nodes: DagNode[];
  edges: DagEdge[];
  width: number;
  height: number;
}

export const NODE_W = 120;
export const NODE_H = 28;
const GAP_X = 16;
const GAP_Y = 30;
const PAD = 4;

/** Layer of each task (0 for tasks without dependencies); unknown dependencies are ignored. */
export function layers(tasks: DagInput[]): Map<string, number> {
  const byName = new Map(tasks.map(t => [t.name, t]));
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (name: string): number => {
    const known = layer.get(name);
    if (known !== undefined) {
      return known;
    }
    if (visiting.has(name)) {
      return 0; // a cycle (the engine refuses them): do not recurse forever
    }
    visiting.add(name);
    const deps = (byName.get(name)?.depends_on ?? []).filter(d => byName.has(d));
    const l = deps.length ? 1 + Math.max(...deps.map(visit)) : 0;
    visiting.delete(name);
    layer.set(name, l);
    return l;
  };
  tasks.forEach(t => visit(t.name));
  return layer;
}

export function layoutDag(tasks: DagInput[]): DagLayout {
  const layer = layers(tasks);
  const rows: string[][] = [];
  for (const t of tasks) {
    const l = layer.get(t.name)!;
    (rows[l] ??= []).push(t.name);
  }
  const widest = Math.max(1, ...rows.map(r => r.length));
  const width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X;
  const pos = new Map<string, DagNode>();
  rows.forEach((row, l) => {
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    const x0 = (width - rowWidth) / 2;
    row.forEach((name, i) => pos.set(name, { name, layer: l, x: x0 + i * (NODE_W + GAP_X), y: PAD + l * (NODE_H + GAP_Y) }));
  });
  const edges: DagEdge[] = [];
  for (const t of tasks) {
    const to = pos.get(t.name)!;
    for (const dep of t.depends_on) {
      const from = pos.get(dep);
      if (!from) {
        continue;
      }
      const x1 = from.x + NODE_W / 2;
      const y1 = from.y + NODE_H;
      const x2 = to.x + NODE_W / 2;
      const y2 = to.y;
      const my = (y1 + y2) / 2;
      edges.push({ from: dep, to: t.name, d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}` });
    }
  }
  return {
    nodes: tasks.map(t => pos.get(t.name)!),
    edges,
    width,
    height: PAD * 2 + Math.max(1, rows.length) * NODE_H + Math.max(0, rows.length - 1) * GAP_Y
  };
}
