import { describe, expect, it } from 'vitest';

import { Pipelines } from '../api';
import {
  describeNode,
  nodeProblem,
  onPipelineRunRequest,
  parseParameters,
  pipelinePathProblem,
  pipelinesInterval,
  requestPipelineRun,
  summarizeRun
} from '../pipelinesState';
import { pipelineNode, pipelineRun } from './fakePipelines';

describe('pipeline form', () => {
  it('reads NAME=value lines, skipping blanks and comments, values keeping their "="', () => {
    expect(parseParameters('IMAGES_DIR = photos\n\n# a comment\nQUERY=a=b\r\nEMPTY=')).toEqual({
      parameters: { IMAGES_DIR: 'photos', QUERY: 'a=b', EMPTY: '' },
      problem: null
    });
  });

  it('names the line that is not a parameter', () => {
    expect(parseParameters('A=1\nmin confidence 0.5').problem).toMatch(/^Line 2 \("min confidence 0.5"\): .*NAME=value/);
    expect(parseParameters('1X=2').problem).toMatch(/^Line 1/);
  });

  it('says what is wrong with the pipeline path', () => {
    expect(pipelinePathProblem('')).toMatch(/Give the path of a .pipeline file/);
    expect(pipelinePathProblem('/home/ana/x.pipeline')).toMatch(/relative to your files/);
    expect(pipelinePathProblem('../x.pipeline')).toMatch(/without/);
    expect(pipelinePathProblem('train.ipynb')).toMatch(/is not a pipeline/);
    expect(pipelinePathProblem(' pipelines/detect_classify.pipeline ')).toBeNull();
  });
});

describe('pipeline run words', () => {
  it('describes each node: waiting, cell progress, done, the failing cell, skipped', () => {
    expect(describeNode(pipelineNode('detect'))).toBe('waiting');
    expect(describeNode(pipelineNode('detect', { state: 'running', progress: { cell: 3, cells: 9, source: '' } }))).toBe(
      'cell 3 of 9'
    );
    expect(describeNode(pipelineNode('detect', { state: 'running' }))).toBe('running');
    expect(describeNode(pipelineNode('detect', { state: 'completed' }))).toBe('done');
    const failed = pipelineNode('crop', {
      state: 'failed',
      error: { cell_index: 3, execution_count: 4, ename: 'FileNotFoundError', evalue: 'work/x.json', source: '' }
    });
    expect(describeNode(failed)).toBe('failed in cell 4');
    expect(nodeProblem(failed)).toBe('crop in cell 4 of pipelines/crop.ipynb: FileNotFoundError: work/x.json');
    const skipped = pipelineNode('report', { state: 'skipped', reason: 'crop failed' });
    expect(describeNode(skipped)).toBe('skipped');
    expect(nodeProblem(skipped)).toBe('report: crop failed');
    expect(nodeProblem(pipelineNode('detect', { state: 'completed' }))).toBeNull();
  });

  it('summarizes a run and polls fast only while one goes on', () => {
    const run = pipelineRun('r1', {
      nodes: [pipelineNode('detect', { state: 'completed' }), pipelineNode('crop', { state: 'running' })]
    });
    expect(summarizeRun(run)).toBe('1 of 2 steps done');
    expect(summarizeRun({ ...run, nodes: [pipelineNode('crop', { state: 'failed' })] })).toBe('failed at crop');
    expect(pipelinesInterval([run])).toBe(2000);
    expect(pipelinesInterval([{ ...run, state: 'completed' } as Pipelines.IRun])).toBe(15000);
    expect(pipelinesInterval(null)).toBe(15000);
  });
});

describe('run this pipeline', () => {
  it('keeps a request made before the Jobs section listens, then hands new ones to it', () => {
    requestPipelineRun('early.pipeline');
    const heard: string[] = [];
    const stop = onPipelineRunRequest(path => heard.push(path));
    requestPipelineRun('later.pipeline');
    stop();
    requestPipelineRun('unheard.pipeline');
    expect(heard).toEqual(['early.pipeline', 'later.pipeline']);
    onPipelineRunRequest(() => undefined)(); // the unheard one waited: nothing leaks into other tests
  });
});
