/**
 * The Annotation section: your Label Studio projects with labelled / pre-annotated / total counts; a new project
 * over a folder; pre-annotate with a marketplace module; export a dataset; train on the labels (the retraining
 * pipeline, from the module's current weights). Every error is shown as the server words it.
 */
import * as React from 'react';

import { ActionStatus, FormEnd, useAction } from './actions';
import { Annotation, AnnotationAPI, Catalog, labellingPageURL } from './api';
import { SLOW_MS } from './panelState';
import { PolledList } from './polledList';
import { useFetched, usePolled } from './usePolled';

/** "3 of 6 labelled · 6 pre-annotated" */
export function describeCounts(project: Annotation.IProject): string {
  return `${project.labelled} of ${project.total} labelled · ${project.preannotated} pre-annotated`;
}

/** How often a running pre-annotation's progress is asked (ms). */
export const PROGRESS_MS = 1000;

/** "Pre-annotating with fish-detector: 3 of 6 images" / "fish-detector pre-annotated 6 of 6 images (9 regions)" */
export function describePreannotation(p: Annotation.IPreannotation): string {
  const failed = p.failed.length ? `; ${p.failed.length} failed` : '';
  if (p.state === 'running') {
    const kept = p.continued ? ` (${p.continued} kept from the interrupted run)` : '';
    return `Pre-annotating with ${p.module}: ${p.done} of ${p.total} images${kept}${failed}`;
  }
  if (p.state === 'completed') {
    return `${p.module} pre-annotated ${p.predicted} of ${p.total} images (${p.regions} regions)${failed}`;
  }
  const reason = p.error ?? 'no reason given';
  return `Pre-annotation with ${p.module} ${p.state} after ${p.done} of ${p.total} images: ${reason}`;
}

/** Labels typed as "fish, coral": trimmed, empty ones and repeats left out. */
export function parseLabels(text: string): string[] {
  return [...new Set(text.split(',').map(label => label.trim()))].filter(Boolean);
}

function ModulePicker(props: {
  label: string;
  modules: Catalog.ICard[];
  value: string;
  onChange: (value: string) => void;
  none?: string;
}): JSX.Element {
  return (
    <select
      className="jp-mod-styled"
      aria-label={props.label}
      value={props.value}
      onChange={e => props.onChange(e.currentTarget.value)}
    >
      {props.none !== undefined && <option value="">{props.none}</option>}
      {props.modules.map(m => (
        <option key={m.id} value={m.id}>
          {m.title} ({m.id})
        </option>
      ))}
    </select>
  );
}

function NewProjectForm(props: {
  api: AnnotationAPI;
  modules: Catalog.ICard[];
  onCreated: (project: Annotation.IProject) => void;
  onCancel: () => void;
}): JSX.Element {
  const [title, setTitle] = React.useState('');
  const [folder, setFolder] = React.useState('');
  const [kind, setKind] = React.useState<Annotation.Kind>('detection');
  const [labels, setLabels] = React.useState('');
  const [module, setModule] = React.useState('');
  const [touched, setTouched] = React.useState(false);
  const action = useAction();
  const problem =
    title.trim().length < 3
      ? 'Give the project a title of 3 characters or more.'
      : !folder.trim()
        ? 'Give the folder of images, e.g. surveys/reef-2026.'
        : !module && parseLabels(labels).length === 0
          ? 'Give the labels, or a module whose classes are the labels.'
          : null;
  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    setTouched(true);
    if (problem) {
      return;
    }
    const request: Annotation.IProjectRequest = { title: title.trim(), folder: folder.trim(), kind };
    if (parseLabels(labels).length) {
      request.labels = parseLabels(labels);
    }
    if (module) {
      request.module = module;
    }
    action.run('Creating the project (the first one starts your Label Studio)…', () =>
      props.api.createAnnotationProject(request).then(props.onCreated)
    );
  };
  return (
    <form className="jp-ReefLab-form" aria-label="New annotation project" onSubmit={submit}>
      <label className="jp-ReefLab-field">
        <span>Title</span>
        <input className="jp-mod-styled" value={title} onChange={e => setTitle(e.currentTarget.value)} />
      </label>
      <label className="jp-ReefLab-field">
        <span>Folder of images</span>
        <input
          className="jp-mod-styled"
          value={folder}
          placeholder="e.g. surveys/reef-2026, or cloud:surveys (a storage connection's folder)"
          onChange={e => setFolder(e.currentTarget.value)}
        />
      </label>
      <label className="jp-ReefLab-field">
        <span>Kind</span>
        <select
          className="jp-mod-styled"
          value={kind}
          onChange={e => setKind(e.currentTarget.value as Annotation.Kind)}
        >
          <option value="detection">Detection (boxes)</option>
          <option value="classification">Classification (one label an image)</option>
        </select>
      </label>
      <label className="jp-ReefLab-field">
        <span>Labels</span>
        <input
          className="jp-mod-styled"
          value={labels}
          placeholder="e.g. fish, coral (empty: the module's classes)"
          onChange={e => setLabels(e.currentTarget.value)}
        />
      </label>
      <label className="jp-ReefLab-field">
        <span>Labels of a module</span>
        <ModulePicker
          label="Labels of a module"
          modules={props.modules}
          value={module}
          onChange={setModule}
          none="None"
        />
      </label>
      <FormEnd problem={touched && problem} action={action} submit="Create" onCancel={props.onCancel} />
    </form>
  );
}

function ProjectRow(props: {
  project: Annotation.IProject;
  api: AnnotationAPI;
  modules: Catalog.ICard[];
  onChanged: () => void;
}): JSX.Element {
  const { project, api } = props;
  const action = useAction();
  const [module, setModule] = React.useState(project.module ?? props.modules[0]?.id ?? '');
  const [folder, setFolder] = React.useState(`datasets/${project.title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`);
  const [epochs, setEpochs] = React.useState('10');
  const [said, setSaid] = React.useState<string | null>(null);
  // the latest pre-annotation: as the list said it, then asked every PROGRESS_MS while it runs
  const [progress, setProgress] = React.useState<Annotation.IPreannotation | null>(project.preannotation ?? null);
  React.useEffect(() => {
    const listed = project.preannotation;
    if (listed && (!progress || listed.started !== progress.started || listed.done > progress.done)) {
      setProgress(listed);
    }
  }, [project.preannotation]);
  React.useEffect(() => {
    if (progress?.state !== 'running') {
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => {
      api
        .preannotation(project.id, controller.signal)
        .then(next => {
          setProgress(next);
          if (next.state !== 'running') {
            props.onChanged(); // the counts changed
          }
        })
        .catch(() => undefined); // the list's next answer says it again
    }, PROGRESS_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [progress]);
  React.useEffect(() => {
    if (!module && (project.module || props.modules.length)) {
      setModule(project.module ?? props.modules[0].id);
    }
  }, [project.module, props.modules]);
  const run = (what: string, call: () => Promise<string>) => {
    setSaid(null);
    action.run(what, () =>
      call().then(words => {
        setSaid(words);
        props.onChanged();
      })
    );
  };
  const busy = action.busy !== null;
  return (
    <li className="jp-ReefLab-deployment jp-ReefLab-annotationProject" aria-label={project.title}>
      <div className="jp-ReefLab-deploymentHead">
        <strong className="jp-ReefLab-deploymentTitle">{project.title}</strong>
        <span className="jp-ReefLab-badge">{project.kind}</span>
        <a
          className="jp-ReefLab-button"
          href={labellingPageURL(project.id)}
          target="_blank"
          rel="noopener noreferrer"
          aria-label={`Open ${project.title} in Label Studio`}
          title="Label its images in Label Studio, in a new tab (your server logs you in)"
        >
          Open in Label Studio
        </a>
      </div>
      <div className="jp-ReefLab-muted" aria-label={`Counts of ${project.title}`}>
        {describeCounts(project)}
      </div>
      <div className="jp-ReefLab-muted">
        {project.folder} · {project.labels.join(', ')}
      </div>
      <div className="jp-ReefLab-rowActions">
        <ModulePicker
          label={`Module for ${project.title}`}
          modules={props.modules}
          value={module}
          onChange={setModule}
        />
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={busy || !module || progress?.state === 'running'}
          onClick={() => {
            setSaid(null);
            action.run(`Starting the pre-annotation with ${module}…`, () =>
              api.preannotate(project.id, module).then(setProgress)
            );
          }}
        >
          Pre-annotate
        </button>
        <label className="jp-ReefLab-inline">
          <span>Epochs</span>
          <input
            className="jp-mod-styled"
            type="number"
            min={1}
            value={epochs}
            aria-label={`Epochs for ${project.title}`}
            onChange={e => setEpochs(e.currentTarget.value)}
          />
        </label>
        <button
          type="button"
          className="jp-ReefLab-button jp-mod-accept"
          disabled={busy}
          title="Export the labelled images and run the retraining pipeline on them, from the module's current weights"
          onClick={() =>
            run('Starting the training…', () =>
              api
                .trainOnProject(project.id, { module: module || undefined, epochs: Number(epochs) || 1 })
                .then(
                  started =>
                    `Training started: ${started.title} (pipeline run ${started.id}, on ${started.dataset.folder}); ` +
                    'follow it under Jobs'
                )
            )
          }
        >
          Train on this project
        </button>
      </div>
      <div className="jp-ReefLab-rowActions">
        <input
          className="jp-mod-styled"
          value={folder}
          aria-label={`Export folder of ${project.title}`}
          onChange={e => setFolder(e.currentTarget.value)}
        />
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={busy}
          onClick={() =>
            run('Exporting…', () =>
              api
                .exportProject(project.id, folder.trim())
                .then(done => `Exported ${done.train} training and ${done.val} validation images to ${done.folder}`)
            )
          }
        >
          Export
        </button>
      </div>
      {progress && (
        <div className="jp-ReefLab-muted" role={progress.state === 'failed' ? 'alert' : 'status'}>
          {progress.state === 'running' && (
            <progress
              max={progress.total || 1}
              value={progress.done}
              aria-label={`Pre-annotation of ${project.title}`}
            />
          )}{' '}
          {describePreannotation(progress)}
        </div>
      )}
      <ActionStatus action={action} />
      {said && (
        <p className="jp-ReefLab-muted" role="status">
          {said}
        </p>
      )}
    </li>
  );
}

export function AnnotationView(props: { api: AnnotationAPI; visible: boolean; refreshKey?: number }): JSX.Element {
  const { api } = props;
  const fetch = React.useCallback((signal: AbortSignal) => api.annotationProjects(signal), [api]);
  const projects = usePolled(fetch, () => SLOW_MS * 2, props.visible, props.refreshKey);
  // the module pickers' choices, asked once the section was first shown
  const [shown, setShown] = React.useState(props.visible);
  React.useEffect(() => setShown(seen => seen || props.visible), [props.visible]);
  const modules = useFetched(shown ? signal => api.imageModules(signal) : null, [api, shown]);
  const [creating, setCreating] = React.useState(false);
  const moduleList = modules.value ?? [];
  return (
    <div aria-label="Annotation">
      {creating ? (
        <NewProjectForm
          api={api}
          modules={moduleList}
          onCreated={() => {
            setCreating(false);
            projects.refresh();
          }}
          onCancel={() => setCreating(false)}
        />
      ) : (
        <div className="jp-ReefLab-rowActions">
          <button type="button" className="jp-ReefLab-button" onClick={() => setCreating(true)}>
            New project
          </button>
        </div>
      )}
      <PolledList
        polled={projects}
        label="Your annotation projects"
        loading="Loading your projects…"
        empty="No annotation project yet: New project labels a folder of your images."
      >
        {project => (
          <ProjectRow key={project.id} project={project} api={api} modules={moduleList} onChanged={projects.refresh} />
        )}
      </PolledList>
    </div>
  );
}
