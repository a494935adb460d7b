/** Annotation projects in your own Label Studio: make, pre-annotate with a module, export, train on. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { searchParams } from './catalog';
import { json, requestAPI } from './transport';
import { Catalog, Pipelines } from './types';

export namespace Annotation {
  export type Kind = 'detection' | 'classification';

  /** A project with its counts (AnnotationService._describe). */
  export interface IProject {
    id: number;
    title: string;
    kind: Kind;
    folder: string | null;
    /** the module that pre-annotated it last (what Train continues from) */
    module: string | null;
    labels: string[];
    total: number;
    labelled: number;
    preannotated: number;
    created?: string;
    /** its latest pre-annotation since the server started (null: none) */
    preannotation?: IPreannotation | null;
  }

  export interface IProjectRequest {
    title: string;
    folder: string;
    kind: Kind;
    labels?: string[];
    module?: string;
  }

  /** A pre-annotation's progress (it runs in the background): images done of total, and how it ended. */
  export interface IPreannotation {
    project: number;
    module: string;
    /** interrupted: the user's server stopped while it ran (pre-annotating again continues) */
    state: 'running' | 'completed' | 'failed' | 'interrupted';
    total: number;
    done: number;
    /** images an interrupted run had predicted, kept by this one */
    continued?: number;
    predicted: number;
    regions: number;
    failed: { file: string; error: string }[];
    error: string | null;
    started: string;
    ended: string | null;
  }

  export interface IExported {
    folder: string;
    data: string;
    train: number;
    val: number;
    names: string[];
  }

  export interface ITrainRequest {
    module?: string;
    epochs?: number;
    profile?: string;
  }

  /** The pipeline run "Train on this project" started, with the dataset it trains on. */
  export type ITraining = Pipelines.IRun & { dataset: IExported };
}

/**
 * A project's labelling page in your Label Studio, served by your server (it logs you in there: no second
 * password): the first task to label, with the image and the label buttons.
 */
export function labellingPageURL(
  id: number,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return URLExt.join(settings.baseUrl, 'reeflab/annotation/ui/projects', String(id), 'data') + '?labeling=1';
}

function projectEndpoint(id: number, ...rest: string[]): string {
  return URLExt.join('annotation', 'projects', String(id), ...rest);
}

export const annotationApi = {
  annotationProjects: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Annotation.IProject[]> =>
    requestAPI<{ projects: Annotation.IProject[] }>('annotation/projects', { signal }, settings).then(
      answer => answer.projects
    ),
  createAnnotationProject: (
    request: Annotation.IProjectRequest,
    settings?: ServerConnection.ISettings
  ): Promise<Annotation.IProject> => requestAPI<Annotation.IProject>('annotation/projects', json(request), settings),
  /** Start a pre-annotation (202): its progress document. */
  preannotate: (
    id: number,
    module: string,
    settings?: ServerConnection.ISettings
  ): Promise<Annotation.IPreannotation> =>
    requestAPI<Annotation.IPreannotation>(projectEndpoint(id, 'preannotate'), json({ module }), settings),
  preannotation: (
    id: number,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<Annotation.IPreannotation> =>
    requestAPI<Annotation.IPreannotation>(projectEndpoint(id, 'preannotate'), { signal }, settings),
  exportProject: (id: number, folder: string, settings?: ServerConnection.ISettings): Promise<Annotation.IExported> =>
    requestAPI<Annotation.IExported>(projectEndpoint(id, 'export'), json({ folder }), settings),
  trainOnProject: (
    id: number,
    request: Annotation.ITrainRequest,
    settings?: ServerConnection.ISettings
  ): Promise<Annotation.ITraining> =>
    requestAPI<Annotation.ITraining>(projectEndpoint(id, 'train'), json(request), settings),
  /** The marketplace modules that can run here, for the module pickers (the server says which kind fits). */
  imageModules: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Catalog.ICard[]> =>
    requestAPI<Catalog.ISearchResult>(
      `catalog/modules?${searchParams({ filters: { tasks: ['Computer Vision'] }, per_page: 100 })}`,
      { signal },
      settings
    ).then(answer => answer.items.filter(card => card.deployable))
};

export type AnnotationAPI = typeof annotationApi;
