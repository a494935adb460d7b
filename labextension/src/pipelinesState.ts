/** Pure helpers of the pipeline runs in the Jobs section: the form's checks, node words, polling. */
import { Pipelines } from './api';
import { FAST_MS, SLOW_MS } from './panelState';

/** What each node state reads as on its chip. */
export const NODE_STATE_WORDS: Record<Pipelines.NodeState, string> = {
  pending: 'waiting',
  running: 'running',
  completed: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
  skipped: 'skipped'
};

export function runActive(run: Pick<Pipelines.IRun, 'state'>): boolean {
  return run.state === 'starting' || run.state === 'running';
}

/** Poll fast while a run goes on, slowly otherwise. */
export function pipelinesInterval(runs: Pipelines.IRun[] | null): number | null {
  return runs?.some(runActive) ? FAST_MS : SLOW_MS;
}

/** "2 of 4 steps done", "failed at crop": the run in a few words, next to its state. */
export function summarizeRun(run: Pipelines.IRun): string {
  const total = run.nodes.length;
  const done = run.nodes.filter(n => n.state === 'completed').length;
  const failed = run.nodes.find(n => n.state === 'failed');
  if (failed) {
    return `failed at ${failed.label}`;
  }
  if (!total) {
    return '';
  }
  return `${done} of ${total} steps done`;
}

/** The chip's words for one node: "detect: cell 3 of 9", "crop: failed in cell 4", "report: waiting". */
export function describeNode(node: Pipelines.INode): string {
  const { cell, cells } = node.progress;
  if (node.state === 'running' && cells > 0) {
    return `cell ${cell} of ${cells}`;
  }
  if (node.state === 'failed' && node.error?.cell_index !== null && node.error?.cell_index !== undefined) {
    return `failed in cell ${node.error.cell_index + 1}`;
  }
  return NODE_STATE_WORDS[node.state];
}

/** Why a node failed or was skipped, in one line; null when there is nothing to say. */
export function nodeProblem(node: Pipelines.INode): string | null {
  if (node.state === 'failed' && node.error) {
    const where = node.error.cell_index !== null ? ` in cell ${node.error.cell_index + 1}` : '';
    return `${node.label}${where} of ${node.filename}: ${node.error.ename}: ${node.error.evalue}`;
  }
  if ((node.state === 'failed' || node.state === 'skipped') && node.reason) {
    return `${node.label}: ${node.reason}`;
  }
  return null;
}

/**
 * The form's parameters, one KEY=VALUE a line (blank lines and # comments left out), or the first
 * line that is not one, in words.
 */
export function parseParameters(text: string): { parameters: Record<string, string>; problem: string | null } {
  const parameters: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith('#')) {
      continue;
    }
    const equals = line.indexOf('=');
    const name = equals < 0 ? line : line.slice(0, equals).trim();
    if (equals < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      return {
        parameters,
        problem: `Line ${i + 1} ("${line}"): write one parameter a line as NAME=value, e.g. MIN_CONFIDENCE=0.5.`
      };
    }
    parameters[name] = line.slice(equals + 1).trim();
  }
  return { parameters, problem: null };
}

/** What is wrong with the pipeline path the user typed, in words; null when it can be sent. */
export function pipelinePathProblem(path: string): string | null {
  const clean = path.trim();
  if (!clean) {
    return 'Give the path of a .pipeline file, e.g. notebooks/detect_classify.pipeline.';
  }
  if (clean.startsWith('/') || clean.split('/').includes('..')) {
    return 'Give the path relative to your files (the file browser\'s top folder), without "/" first or "..".';
  }
  if (!clean.endsWith('.pipeline')) {
    return `"${clean}" is not a pipeline: pick a .pipeline file made with the Elyra pipeline editor.`;
  }
  return null;
}

/** Listeners of "run this pipeline" requests (the command on a .pipeline file). */
type PipelineListener = (path: string) => void;
const listeners = new Set<PipelineListener>();
let pending: string | null = null;

/**
 * Ask the Jobs section to open its form for `path`: the section may not exist yet (folded panel),
 * so the latest request waits for the first listener.
 */
export function requestPipelineRun(path: string): void {
  if (listeners.size) {
    listeners.forEach(listener => listener(path));
  } else {
    pending = path;
  }
}

/** Hear "run this pipeline" requests; gives the one that came before anyone listened. */
export function onPipelineRunRequest(listener: PipelineListener): () => void {
  listeners.add(listener);
  if (pending !== null) {
    const path = pending;
    pending = null;
    listener(path);
  }
  return () => listeners.delete(listener);
}
