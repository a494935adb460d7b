/** The pipeline runs of the Jobs section against an API in memory, driven as a user would. */
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Pipelines, PipelinesAPI, ReefLabError } from '../api';
import { JobsView } from '../jobs';
import { PipelinesView } from '../pipelines';
import { requestPipelineRun } from '../pipelinesState';
import { pipelineNode, pipelineRun } from './fakePipelines';
import { button, click, field, IRendered, render, settle, typeInto } from './render';

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
});

function fakePipelines(runs: Pipelines.IRun[]): PipelinesAPI {
  return {
    pipelineRuns: vi.fn(async () => runs.map(r => ({ ...r }))),
    runPipeline: vi.fn(async (request: Pipelines.IRequest) => {
      if (request.pipeline === 'missing.pipeline') {
        throw new ReefLabError("No pipeline 'missing.pipeline' in your files.", 404);
      }
      const run = pipelineRun('new', { pipeline: request.pipeline, parameters: request.parameters ?? {} });
      runs.push(run);
      return run;
    }),
    cancelPipelineRun: vi.fn(async (id: string) => {
      const run = runs.find(r => r.id === id)!;
      run.state = 'cancelled';
      return { ...run };
    }),
    deletePipelineRun: vi.fn(async (id: string) => {
      runs.splice(
        runs.findIndex(r => r.id === id),
        1
      );
    }),
    pipelineLog: vi.fn(async (_id: string, node: string | null) =>
      node ? [`${node}: executing cell 3`] : ['run started', 'detect done']
    )
  };
}

const textarea = (host: ParentNode, label: string) => field<HTMLTextAreaElement>(host, label);

async function typeText(element: HTMLTextAreaElement, value: string): Promise<void> {
  // React listens to `input`; a textarea's value setter is its own prototype's
  const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value')!.set!;
  const { act } = await import('react');
  await act(async () => {
    setter.call(element, value);
    element.dispatchEvent(new Event('input', { bubbles: true }));
  });
}

describe('Pipeline runs', () => {
  it('shows each step with its state, the failing cell, a step log, cancels and removes', async () => {
    const runs = [
      pipelineRun('a', {
        nodes: [
          pipelineNode('detect', { state: 'completed' }),
          pipelineNode('crop', {
            state: 'running',
            progress: { cell: 2, cells: 6, source: 'crop(img)' },
            output: 'pipeline-runs/a/crop.ipynb'
          }),
          pipelineNode('classify'),
          pipelineNode('report')
        ]
      }),
      pipelineRun('bb', {
        state: 'failed',
        nodes: [
          pipelineNode('detect', {
            state: 'failed',
            error: { cell_index: 4, execution_count: 5, ename: 'ValueError', evalue: 'no images in photos', source: '' }
          }),
          pipelineNode('crop', { state: 'skipped', reason: 'detect failed' })
        ]
      })
    ];
    const api = fakePipelines(runs);
    view = await render(<PipelinesView api={api} />);
    await settle();
    const names = [...view.host.querySelectorAll('[aria-label="Your pipeline runs"] > li')].map(li =>
      li.getAttribute('aria-label')
    );
    expect(names).toEqual(['detect_classify bb', 'detect_classify a']); // newest first
    const running = view.host.querySelector('[aria-label="detect_classify a"]')!;
    const steps = [...running.querySelectorAll('[aria-label="Steps of detect_classify a"] li')].map(li => li.textContent);
    expect(steps).toEqual(['detect done', 'crop cell 2 of 6', 'classify waiting', 'report waiting']);
    expect(running.textContent).toContain('1 of 4 steps done');
    const failed = view.host.querySelector('[aria-label="detect_classify bb"]')!;
    expect(failed.querySelector('[aria-label="Why"]')!.textContent).toBe(
      'detect in cell 5 of pipelines/detect.ipynb: ValueError: no images in photos\ncrop: detect failed'
    );
    expect(failed.textContent).toContain('failed at detect');

    // a step's log, then the run's
    await click(button(running.querySelector('[aria-label="crop"]')!, /crop/));
    await settle();
    expect(api.pipelineLog).toHaveBeenLastCalledWith('a', 'crop', 200, expect.anything());
    expect(running.querySelector('[aria-label="Log of step crop"]')!.textContent).toContain('crop: executing cell 3');
    expect(running.querySelector<HTMLAnchorElement>('a[href$="pipeline-runs/a/crop.ipynb"]')!.textContent).toBe(
      "crop's notebook"
    );
    await click(button(running, 'Log'));
    await settle();
    expect(running.querySelector('[aria-label="Log of detect_classify a"]')!.textContent).toContain('detect done');

    await click(button(running, 'Cancel'));
    await settle();
    expect(api.cancelPipelineRun).toHaveBeenCalledWith('a');
    expect(view.host.querySelector('[aria-label="detect_classify a"]')!.textContent).toContain('cancelled');
    await click(button(failed, 'Remove'));
    await settle();
    expect(api.deletePipelineRun).toHaveBeenCalledWith('bb');
    expect(view.host.querySelector('[aria-label="detect_classify bb"]')).toBeNull();
  });

  it('runs a pipeline with KEY=VALUE parameters, saying what is wrong first', async () => {
    const api = fakePipelines([]);
    view = await render(<PipelinesView api={api} />);
    await settle();
    expect(view.host.textContent).toContain('No pipeline runs yet');
    await click(button(view.host, 'Run pipeline'));
    const form = view.host.querySelector('form[aria-label="Run a pipeline"]')!;
    await typeInto(field(form, 'Pipeline file'), 'detect.ipynb');
    await click(button(form, 'Run'));
    expect(form.querySelector('[role="alert"]')!.textContent).toContain('is not a pipeline');
    await typeInto(field(form, 'Pipeline file'), 'missing.pipeline');
    await typeText(textarea(form, 'Parameters'), 'IMAGES_DIR=photos\nVIA local');
    await click(button(form, 'Run'));
    expect(form.querySelector('[role="alert"]')!.textContent).toContain('Line 2 ("VIA local")');
    expect(api.runPipeline).not.toHaveBeenCalled();
    await typeText(textarea(form, 'Parameters'), 'IMAGES_DIR=photos\nVIA=local');
    await click(button(form, 'Run'));
    await settle();
    expect(form.querySelector('[role="alert"]')!.textContent).toContain("No pipeline 'missing.pipeline'");
    await typeInto(field(form, 'Pipeline file'), 'detect_classify.pipeline');
    await click(button(form, 'Run'));
    await settle();
    expect(api.runPipeline).toHaveBeenLastCalledWith({
      pipeline: 'detect_classify.pipeline',
      parameters: { IMAGES_DIR: 'photos', VIA: 'local' }
    });
    expect(view.host.querySelector('form[aria-label="Run a pipeline"]')).toBeNull();
    expect(view.host.querySelector('[aria-label="detect_classify new"]')).not.toBeNull();
  });

  it('opens the form for a pipeline file the command names', async () => {
    view = await render(<PipelinesView api={fakePipelines([])} />);
    await settle();
    const { act } = await import('react');
    await act(async () => requestPipelineRun('surveys/detect_classify.pipeline'));
    expect(field(view.host, 'Pipeline file').value).toBe('surveys/detect_classify.pipeline');
  });

  it('is part of the Jobs section when the API has the pipeline calls', async () => {
    const api = {
      ...fakePipelines([pipelineRun('a')]),
      jobs: vi.fn(async () => []),
      cancelJob: vi.fn(),
      deleteJob: vi.fn(),
      jobLog: vi.fn(async () => []),
      trainingRuns: vi.fn(async () => [])
    };
    view = await render(<JobsView api={api} />);
    await settle();
    const headings = [...view.host.querySelectorAll('h4')].map(h => h.textContent);
    expect(headings).toEqual(['Pipeline runs', 'Notebook jobs']);
    expect(view.host.querySelector('[aria-label="detect_classify a"]')).not.toBeNull();
    expect(api.pipelineRuns).toHaveBeenCalledTimes(1); // no request storm from re-renders
  });
});
