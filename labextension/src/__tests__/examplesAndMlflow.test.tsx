/** Refreshing the examples from the Jobs section, and the MLflow link in the panel's header. */
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Pipelines, PipelinesAPI, ReefLab } from '../api';
import { MlflowLink } from '../panel';
import { describeExamples, PipelinesView } from '../pipelines';
import { button, click, IRendered, render, settle } from './render';

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
});

const noRuns: PipelinesAPI = {
  pipelineRuns: vi.fn(async () => [] as Pipelines.IRun[]),
  runPipeline: vi.fn(),
  cancelPipelineRun: vi.fn(),
  deletePipelineRun: vi.fn(),
  pipelineLog: vi.fn(async () => [])
};

const report = (changes: Partial<ReefLab.IExamplesReport>): ReefLab.IExamplesReport => ({
  folder: 'notebooks',
  added: [],
  updated: [],
  kept: [],
  deleted: [],
  ...changes
});

describe('Examples', () => {
  it('says what a refresh did, naming the files kept because you changed them', () => {
    expect(describeExamples(report({}))).toBe('Examples in notebooks/: already up to date.');
    const said = describeExamples(report({ added: ['a.ipynb'], updated: ['b.ipynb', 'c.ipynb'], kept: ['d.ipynb'] }));
    expect(said).toBe(
      'Examples in notebooks/: 1 added, 2 updated to the latest, 1 you changed kept as they are (d.ipynb).'
    );
  });

  it('points a new user at the shipped pipeline and refreshes the examples from the Jobs section', async () => {
    const refresh = vi.fn(async () => report({ added: ['detect_classify.pipeline'] }));
    view = await render(<PipelinesView api={noRuns} refreshExamples={refresh} />);
    await settle();
    expect(view.host.textContent).toContain('notebooks/detect_classify.pipeline');
    await click(button(view.host, 'Refresh examples'));
    await settle();
    expect(refresh).toHaveBeenCalled();
    expect(view.host.querySelector('[role="status"]')!.textContent).toBe('Examples in notebooks/: 1 added.');
  });
});

describe('MLflow link', () => {
  it('opens the MLflow UI through your server when it has a tracking server, and is absent otherwise', async () => {
    const tracked = async () => ({ tracking_uri: 'http://127.0.0.1:5005', account: 'ana', ui: 'reeflab/mlflow/' });
    view = await render(<MlflowLink info={tracked} />);
    await settle();
    const link = view.host.querySelector('a')!;
    expect(link.textContent).toContain('MLflow');
    expect(link.getAttribute('href')).toMatch(/reeflab\/mlflow\/$/);
    expect(link.getAttribute('target')).toBe('_blank');
    view.unmount();
    view = await render(<MlflowLink info={async () => ({ tracking_uri: null, account: null, ui: 'reeflab/mlflow/' })} />);
    await settle();
    expect(view.host.querySelector('a')).toBeNull();
  });
});
