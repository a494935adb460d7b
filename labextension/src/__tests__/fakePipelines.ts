/** Pipeline runs and nodes as the server sends them, for the panel's tests. */
import { Pipelines } from '../api';

export function pipelineNode(id: string, extra: Partial<Pipelines.INode> = {}): Pipelines.INode {
  return {
    id,
    label: id,
    filename: `pipelines/${id}.ipynb`,
    parents: [],
    state: 'pending',
    reason: null,
    progress: { cell: 0, cells: 0, source: '' },
    error: null,
    output: null,
    started_at: null,
    finished_at: null,
    ...extra
  };
}

export function pipelineRun(id: string, extra: Partial<Pipelines.IRun> = {}): Pipelines.IRun {
  return {
    id,
    owner: 'ana',
    title: `detect_classify ${id}`,
    pipeline: 'detect_classify.pipeline',
    output: `pipeline-runs/${id}`,
    output_url: `lab/tree/pipeline-runs/${id}`,
    parameters: {},
    profile: 'cpu-small',
    state: 'running',
    reason: null,
    nodes: ['detect', 'crop', 'classify', 'report'].map(n => pipelineNode(n)),
    backend: 'local',
    created: `2026-11-23T10:00:0${id.length}`,
    started_at: null,
    finished_at: null,
    ...extra
  };
}
