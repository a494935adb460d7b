/** The Annotation section against an API in memory, driven as a user would. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as React from 'react';
import { act } from 'react';
import { ServerConnection } from '@jupyterlab/services';

import { AnnotationView, describeCounts, describePreannotation, parseLabels, PROGRESS_MS } from '../annotation';
import { Annotation, AnnotationAPI, Catalog, labellingPageURL, ReefLabError } from '../api';
import { button, click, field, IRendered, render, select, settle, typeInto } from './render';

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
});

function card(id: string): Catalog.ICard {
  return { id, title: id, deployable: true } as Catalog.ICard;
}

function project(id: number, changes: Partial<Annotation.IProject> = {}): Annotation.IProject {
  return {
    id,
    title: `Project ${id}`,
    kind: 'detection',
    folder: 'scenes',
    module: null,
    labels: ['fish'],
    total: 6,
    labelled: 0,
    preannotated: 0,
    ...changes
  };
}

const preannotationCalls: Record<number, number> = {};

function progressOf(
  id: number,
  module: string,
  state: Annotation.IPreannotation['state'],
  done: number,
  total: number
): Annotation.IPreannotation {
  const ended = state === 'running' ? null : '2026-12-06T08:01:00Z';
  const predicted = state === 'completed' ? total : done;
  const started = '2026-12-06T08:00:00Z';
  return { project: id, module, state, total, done, predicted, regions: 9, failed: [], error: null, started, ended };
}

/** Let `ms` pass, React updating as the timers fire. */
async function waitFor(ms: number): Promise<void> {
  await act(async () => {
    await new Promise(resolve => setTimeout(resolve, ms));
  });
}

function fakeAnnotation(projects: Annotation.IProject[]): AnnotationAPI {
  return {
    annotationProjects: vi.fn(async () => projects.map(p => ({ ...p }))),
    createAnnotationProject: vi.fn(async (request: Annotation.IProjectRequest) => {
      if (request.folder === 'empty') {
        throw new ReefLabError("'empty' holds no images: put JPEG or PNG files in it first", 400);
      }
      const made = project(projects.length + 1, { title: request.title, folder: request.folder, kind: request.kind });
      projects.push(made);
      return made;
    }),
    preannotate: vi.fn(async (id: number, module: string) => {
      if (module === 'fish-classifier') {
        throw new ReefLabError("'fish-classifier' is not a detector (it is a classify module)", 400);
      }
      const p = projects.find(x => x.id === id)!;
      p.module = module;
      return progressOf(id, module, 'running', 0, p.total);
    }),
    // the server's answers while it runs: half the images, then all of them
    preannotation: vi.fn(async (id: number) => {
      const p = projects.find(x => x.id === id)!;
      const asked = (preannotationCalls[id] = (preannotationCalls[id] ?? 0) + 1);
      if (asked < 2) {
        return progressOf(id, p.module!, 'running', p.total / 2, p.total);
      }
      p.preannotated = p.total;
      return progressOf(id, p.module!, 'completed', p.total, p.total);
    }),
    exportProject: vi.fn(async (_id: number, folder: string) => ({
      folder,
      data: `${folder}/data.yaml`,
      train: 2,
      val: 1,
      names: ['fish']
    })),
    trainOnProject: vi.fn(async (id: number) => {
      const p = projects.find(x => x.id === id)!;
      if (!p.labelled) {
        const words = 'no image of this project is labelled yet: label (or accept pre-annotations) first';
        throw new ReefLabError(words, 400);
      }
      return {
        id: 'run1',
        title: `Train fish-detector on '${p.title}' (${p.labelled} labelled images)`,
        dataset: {
          folder: 'datasets/annotation-1', data: 'datasets/annotation-1/data.yaml', train: 2, val: 1, names: []
        }
      } as unknown as Annotation.ITraining;
    }),
    imageModules: vi.fn(async () => [card('fish-detector'), card('fish-classifier')])
  };
}

describe('Annotation section', () => {
  it('asks the server nothing while it is folded (listing wakes the Label Studio)', async () => {
    const api = fakeAnnotation([project(1)]);
    view = await render(<AnnotationView api={api} visible={false} />);
    await settle();
    expect(api.annotationProjects).not.toHaveBeenCalled();
    expect(api.imageModules).not.toHaveBeenCalled();
  });

  it('lists projects with their counts', async () => {
    const api = fakeAnnotation([project(1, { labelled: 3, preannotated: 6 })]);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    const row = view.host.querySelector('[aria-label="Project 1"]')!;
    expect(row.textContent).toContain('3 of 6 labelled · 6 pre-annotated');
    expect(describeCounts(project(2))).toBe('0 of 6 labelled · 0 pre-annotated');
    expect(parseLabels(' fish, coral,,fish ')).toEqual(['fish', 'coral']);
  });

  it("shows a pre-annotation the server says ended badly, in the server's words", async () => {
    const failed = {
      ...progressOf(1, 'fish-detector', 'failed', 2, 6),
      error: "'fish-detector' stopped after 2 of 6 images (status 1): see preannotate.log",
      failed: [{ file: 'survey:scenes/a.jpg', error: 'could not be read from storage' }]
    };
    const api = fakeAnnotation([project(1, { preannotation: failed })]);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    const row = view.host.querySelector('[aria-label="Project 1"]')!;
    expect(row.querySelector('[role="alert"]')?.textContent).toContain('stopped after 2 of 6 images');
    expect(describePreannotation({ ...failed, state: 'running' })).toBe(
      'Pre-annotating with fish-detector: 2 of 6 images; 1 failed'
    );
    expect(api.preannotation).not.toHaveBeenCalled(); // it ended: nothing to ask
  });

  it('says a pre-annotation the server restart interrupted, and what a continued run kept', async () => {
    const cut = {
      ...progressOf(1, 'fish-detector', 'interrupted', 8, 24),
      error: 'your server stopped after 8 of 24 images: pre-annotate again with fish-detector to continue'
    };
    const api = fakeAnnotation([project(1, { preannotation: cut })]);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    const row = view.host.querySelector('[aria-label="Project 1"]')!;
    expect(row.querySelector('[role="status"]')?.textContent).toContain(
      'Pre-annotation with fish-detector interrupted after 8 of 24 images: your server stopped'
    );
    expect(api.preannotation).not.toHaveBeenCalled(); // it ended: nothing to ask
    expect(describePreannotation({ ...cut, state: 'running', done: 10, continued: 8 })).toBe(
      'Pre-annotating with fish-detector: 10 of 24 images (8 kept from the interrupted run)'
    );
  });

  it("opens each project's labelling page in Label Studio, through the user's server, in a new tab", async () => {
    const api = fakeAnnotation([project(1), project(7)]);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    const link = view.host.querySelector<HTMLAnchorElement>('[aria-label="Project 7"] a')!;
    expect(link.textContent).toBe('Open in Label Studio');
    expect(link.getAttribute('aria-label')).toBe('Open Project 7 in Label Studio');
    expect(new URL(link.href).pathname).toMatch(/\/reeflab\/annotation\/ui\/projects\/7\/data$/);
    expect(new URL(link.href).search).toBe('?labeling=1');
    expect(link.target).toBe('_blank');
    expect(link.rel).toContain('noopener');
    const settings = ServerConnection.makeSettings({ baseUrl: 'http://hub.example/user/a%40b/' });
    expect(labellingPageURL(3, settings)).toBe(
      'http://hub.example/user/a%40b/reeflab/annotation/ui/projects/3/data?labeling=1'
    );
  });

  it('makes a project over a folder, and shows what the server says is wrong', async () => {
    const projects: Annotation.IProject[] = [];
    const api = fakeAnnotation(projects);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    expect(view.host.textContent).toContain('No annotation project yet');
    await click(button(view.host, 'New project'));
    await click(button(view.host, 'Create'));
    expect(view.host.textContent).toContain('Give the project a title');
    expect(api.createAnnotationProject).not.toHaveBeenCalled();
    await typeInto(field(view.host, 'Title'), 'Reef survey');
    await typeInto(field(view.host, 'Folder of images'), 'empty');
    await select(field<HTMLSelectElement>(view.host, 'Labels of a module'), 'fish-detector');
    await click(button(view.host, 'Create'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')?.textContent).toContain("'empty' holds no images");
    await typeInto(field(view.host, 'Folder of images'), 'scenes');
    await click(button(view.host, 'Create'));
    await settle();
    expect(api.createAnnotationProject).toHaveBeenLastCalledWith({
      title: 'Reef survey',
      folder: 'scenes',
      kind: 'detection',
      module: 'fish-detector'
    });
    await settle();
    expect(view.host.querySelector('[aria-label="Reef survey"]')).not.toBeNull();
  });

  it('pre-annotates with a picked module, exports, and trains on the project', async () => {
    const projects = [project(1)];
    const api = fakeAnnotation(projects);
    view = await render(<AnnotationView api={api} visible={true} />);
    await settle();
    const row = () => view!.host.querySelector('[aria-label="Project 1"]')!;
    await select(field<HTMLSelectElement>(row(), 'Module for Project 1'), 'fish-classifier');
    await click(button(row(), 'Pre-annotate'));
    await settle();
    expect(row().querySelector('[role="alert"]')?.textContent).toContain("'fish-classifier' is not a detector");
    await select(field<HTMLSelectElement>(row(), 'Module for Project 1'), 'fish-detector');
    await click(button(row(), 'Pre-annotate'));
    await settle();
    // it runs in the background: the row shows its progress, asked again until it ends
    expect(row().textContent).toContain('Pre-annotating with fish-detector: 0 of 6 images');
    expect(row().querySelector<HTMLProgressElement>('progress[aria-label="Pre-annotation of Project 1"]')!.max).toBe(6);
    expect(button(row(), 'Pre-annotate')!.disabled).toBe(true);
    await waitFor(PROGRESS_MS + 100);
    await settle();
    expect(row().textContent).toContain('Pre-annotating with fish-detector: 3 of 6 images');
    expect(row().querySelector<HTMLProgressElement>('progress')!.value).toBe(3);
    await waitFor(PROGRESS_MS + 100);
    await settle();
    await settle();
    expect(row().textContent).toContain('fish-detector pre-annotated 6 of 6 images (9 regions)');
    expect(row().querySelector('progress')).toBeNull();
    expect(row().textContent).toContain('0 of 6 labelled · 6 pre-annotated'); // the counts asked again
    expect(api.preannotation).toHaveBeenCalledTimes(2);

    await click(button(row(), 'Train on this project'));
    await settle();
    expect(row().querySelector('[role="alert"]')?.textContent).toContain('no image of this project is labelled yet');

    projects[0].labelled = 3;
    await typeInto(field(row(), 'Epochs for Project 1'), '1');
    await click(button(row(), 'Train on this project'));
    await settle();
    expect(api.trainOnProject).toHaveBeenLastCalledWith(1, { module: 'fish-detector', epochs: 1 });
    expect(row().textContent).toContain('Training started');
    expect(row().textContent).toContain('pipeline run run1');

    await typeInto(field(row(), 'Export folder of Project 1'), 'datasets/reef');
    await click(button(row(), 'Export'));
    await settle();
    expect(api.exportProject).toHaveBeenLastCalledWith(1, 'datasets/reef');
    expect(row().textContent).toContain('Exported 2 training and 1 validation images to datasets/reef');
  });
});
