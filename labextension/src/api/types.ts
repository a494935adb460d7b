/**
 * The JSON the ReefLab server answers, in one place: each namespace mirrors one capability's models
 * (server_extension/reeflab/handlers/, catalog/, deployments/, storage/, jobs/, pipelines/, serverless/, checks/).
 */
import type { Monitoring } from './monitoring';

export namespace ReefLab {
  export interface IBackends {
    [name: string]: string;
  }

  export interface IInfo {
    version: string;
    user: string;
    groups: string[];
    hub: string | null;
    backends: IBackends;
    deployments: IDeploymentLimits;
  }

  /** What a user may have at once, and how long a try lasts (DeploymentService.limits()). */
  export interface IDeploymentLimits {
    /** a try stops by itself after this many minutes */
    try_minutes: number;
    max_deployments: number;
    max_tries: number;
    max_gpus: number;
  }

  export interface IGPU {
    count: number;
    resource: string;
    model: string | null;
  }

  export interface IProfile {
    slug: string;
    display_name: string;
    description: string;
    default: boolean;
    cpu: number;
    memory: string;
    memory_bytes: number;
    gpu: IGPU | null;
    image: string;
  }

  export interface IProfiles {
    default: string | null;
    profiles: IProfile[];
  }

  /** Where your training runs are tracked (GET /reeflab/api/training); the password never comes. */
  export interface ITrainingInfo {
    tracking_uri: string | null;
    account: string | null;
    /** the MLflow UI under your server's base URL */
    ui: string;
  }

  /** What a refresh of the examples did (POST /reeflab/api/examples), paths relative to `folder`. */
  export interface IExamplesReport {
    folder: string;
    added: string[];
    updated: string[];
    /** changed by you: left as they are */
    kept: string[];
    deleted: string[];
  }
}

/** The marketplace (server_extension/reeflab/catalog/). */
export namespace Catalog {
  /** Facets a user filters on, spelled as the ai4-metadata keys (catalog/models.py FACETS). */
  export const FACETS = ['tasks', 'libraries', 'categories', 'data-type', 'tags'] as const;
  export type Facet = (typeof FACETS)[number];

  export type Sort = 'relevance' | 'title' | 'updated';
  export type Source = 'builtin' | 'installed' | 'remote';

  /** Values selected per facet; a module matches any value of a facet and every facet. */
  export type Filters = Partial<Record<Facet, string[]>>;

  export interface ISearchQuery {
    q?: string;
    filters?: Filters;
    sort?: Sort;
    page?: number;
    per_page?: number;
  }

  /** The short form of a module shown in search results (ModuleEntry.card()). */
  export interface ICard extends Record<Facet, string[]> {
    id: string;
    title: string;
    summary: string;
    source: Source;
    valid: boolean;
    deployable: boolean;
    /** false: no trained weights (a network built from a yaml), to be trained before it is tried */
    trained?: boolean;
    /** ISO date, '' when unknown */
    updated: string;
    /** whether it passed the platform's checks (absent from servers without checks) */
    check?: Checks.IBadge;
  }

  export interface IFacetCount {
    value: string;
    count: number;
  }

  export interface ISearchResult {
    total: number;
    page: number;
    per_page: number;
    /** 0 when nothing matches */
    pages: number;
    items: ICard[];
    facets: Record<Facet, IFacetCount[]>;
  }

  export interface IResources {
    cpu?: number;
    gpu?: number;
    memory_MB?: number;
    gpu_memory_MB?: number;
    [key: string]: unknown;
  }

  /** An ai4-metadata v2 document. Invalid modules may hold anything, so every field is optional. */
  export interface IMetadata {
    metadata_version?: string;
    title?: string;
    summary?: string;
    description?: string;
    links?: Record<string, unknown>;
    resources?: { inference?: IResources; training?: IResources; [key: string]: unknown };
    dates?: { created?: string; updated?: string };
    license?: string;
    [key: string]: unknown;
  }

  export interface IMetadataProblem {
    /** dotted path of the field, '' for the whole document */
    field: string;
    message: string;
  }

  /** Everything known about one module. */
  export interface IModule extends ICard {
    metadata: IMetadata;
    problems: IMetadataProblem[];
    entry_point: string | null;
    versions: string[];
    /** parameters of notebooks/retrain.pipeline that train it, when it has no trained weights */
    retrain?: Record<string, string> | null;
  }

  export interface INeeds {
    cpu: number;
    gpu: number;
    memory_MB: number;
    gpu_memory_MB: number;
  }

  export interface IHardware {
    cpu: number;
    memory_MB: number;
    gpu: number;
  }

  /** One hardware profile the user may give a module. */
  export interface IFormProfile {
    slug: string;
    display_name: string;
    default: boolean;
    fits: boolean;
    /** what the profile lacks, when it does not fit */
    reason: string | null;
    limits: IHardware;
    prefill: IHardware;
    gpu_model: string | null;
    image: string;
  }

  /** The hardware choices for deploying a module, pre-filled from its inference needs. */
  export interface IForm {
    module: string;
    title: string;
    deployable: boolean;
    needs: INeeds;
    profiles: IFormProfile[];
    default: string | null;
    /** why no profile fits, when none does */
    reason: string | null;
  }

  export interface IRefreshResult {
    modules: number;
    invalid: number;
    errors: string[];
  }
}

/** Modules running as services (server_extension/reeflab/deployments/models.py). */
export namespace Deployments {
  export type State = 'queued' | 'starting' | 'ready' | 'failed' | 'stopped';
  export type Kind = 'deployment' | 'try';

  /** POST /reeflab/api/deployments */
  export interface IRequest {
    module: string;
    kind: Kind;
    profile?: string;
    title?: string;
    hardware?: Catalog.IHardware;
    /** name -> value; the values are never sent back */
    env?: Record<string, string>;
  }

  export interface IDeployment {
    id: string;
    owner: string;
    module: string;
    entry_point: string;
    title: string;
    kind: Kind;
    profile: string;
    hardware: Catalog.IHardware;
    /** the most its profile allows */
    limits: Catalog.IHardware | null;
    /** where its hardware is below what the module recommends (allowed) */
    warnings: string[];
    /** after it was stopped for lack of memory: the hardware to restart it with */
    suggestion: Catalog.IHardware | null;
    /** names only: values may be secrets */
    env: string[];
    state: State;
    /** why it failed or stopped; may be several lines of its log */
    reason: string | null;
    backend: string;
    created: string;
    started_at: string | null;
    ready_at: string | null;
    stopped_at: string | null;
    /** when a try stops by itself (ISO) */
    expires: string | null;
    /** under the server's base URL, e.g. "reeflab/deployments/1a2b3c4d/" */
    path: string;
    /** drift detection of its inputs: watched, and alerting now (null or absent: monitoring is off) */
    drift?: { enabled: boolean; alert: boolean } | null;
  }

  export interface IDetection {
    class_id: number;
    label: string;
    confidence: number;
    /** x1, y1, x2, y2 in pixels of the original image */
    box: [number, number, number, number];
  }

  export interface IClassScore {
    class_id: number;
    label: string;
    probability: number;
  }

  /** One image's answer from a module's DEEPaaS predict (detector or classifier). */
  export interface IPrediction {
    file: string;
    width: number;
    height: number;
    time_ms: number;
    /** detectors: the confidence threshold the boxes passed (the module takes it as `conf`) */
    conf?: number;
    detections?: IDetection[];
    classes?: IClassScore[];
  }

  export interface IPredictAnswer {
    status: string;
    predictions: IPrediction;
  }

  /** Predict options as query parameters: conf, iou, imgsz (detectors) or top_k (classifiers). */
  export type PredictOptions = Record<string, string | number>;
}

/** Storage connections, their files and mounts (server_extension/reeflab/storage/models.py). */
export namespace Storage {
  export type Kind = 's3' | 'webdav';
  export type MountState = 'unmounted' | 'mounting' | 'mounted' | 'error';

  export interface IMount {
    state: MountState;
    /** relative to the workspace (the file browser's root), e.g. "storage/cloud" */
    path: string;
    reason: string | null;
  }

  /** A connection as the server shows it: never a secret. */
  export interface IConnection {
    name: string;
    kind: Kind;
    created: string;
    /** the platform's own bucket: cannot be deleted */
    platform: boolean;
    /** where the data is, for people */
    location: string;
    /** what it is, in words: "your bucket ana on the platform" */
    description: string;
    /** S3: the bucket (and folder) its paths are in, e.g. "ana"; null for WebDAV */
    bucket_path: string | null;
    mount: IMount;
    endpoint?: string;
    bucket?: string;
    prefix?: string;
    region?: string;
    access_key?: string;
    url?: string;
    user?: string;
    vendor?: string;
  }

  export interface IS3Request {
    kind: 's3';
    name: string;
    endpoint: string;
    bucket: string;
    prefix?: string;
    region?: string;
    access_key: string;
    secret_key: string;
  }

  export interface IWebDAVRequest {
    kind: 'webdav';
    name: string;
    url: string;
    user: string;
    password: string;
    vendor?: 'owncloud' | 'nextcloud' | 'other';
  }

  export type IRequest = IS3Request | IWebDAVRequest;

  export interface ICapabilities {
    mounts: { available: boolean; reason: string | null };
    mount_folder: string;
  }

  export interface IEntry {
    name: string;
    type: 'file' | 'directory';
    size: number | null;
    modified: string | null;
    path: string;
  }

  export interface IListing {
    connection: string;
    path: string;
    items: IEntry[];
    /** give it back as `page` for the next entries; null at the end */
    next_page: string | null;
  }

  export interface ITestResult {
    ok: boolean;
    seconds: number;
  }
}

/** Notebook jobs (server_extension/reeflab/jobs/models.py) and MLflow runs (training/tracking.py). */
export namespace Jobs {
  export type State = 'starting' | 'running' | 'completed' | 'failed' | 'cancelled';

  export interface IProgress {
    cell: number;
    cells: number;
    source: string;
  }

  export interface IJobError {
    cell_index: number | null;
    execution_count: number | null;
    ename: string;
    evalue: string;
    source: string;
  }

  export interface IJob {
    id: string;
    title: string;
    notebook: string;
    output: string;
    /** under the server's base URL: opens the executed notebook in Lab */
    output_url: string;
    parameters: Record<string, unknown>;
    kernel: string;
    profile: string;
    cpu: number;
    memory_MB: number;
    gpu: number;
    /** a distributed job's ranks on each node (torchrun); null: not a distributed one */
    processes?: number | null;
    nodes?: number;
    /** the rank whose failure failed a distributed job */
    failed_rank?: number | null;
    state: State;
    reason: string | null;
    progress: IProgress;
    error: IJobError | null;
    backend: string;
    created: string;
    started_at: string | null;
    finished_at: string | null;
  }

  export interface IRun {
    id: string;
    name: string;
    experiment: string;
    status: string;
    /** ms since the epoch */
    start_time: number | null;
    end_time: number | null;
    params: Record<string, string>;
    metrics: Record<string, number>;
    /** the run in the MLflow UI, under the server's base URL */
    path: string;
  }
}

/** Elyra pipeline runs (server_extension/reeflab/pipelines/models.py): every node a notebook job. */
export namespace Pipelines {
  export type State = Jobs.State;
  export type NodeState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'skipped';

  /** POST /reeflab/api/pipelines */
  export interface IRequest {
    /** relative to the Jupyter root folder, ending in .pipeline */
    pipeline: string;
    parameters?: Record<string, string>;
    profile?: string;
    title?: string;
  }

  export interface INode {
    id: string;
    label: string;
    filename: string;
    parents: string[];
    state: NodeState;
    reason: string | null;
    progress: Jobs.IProgress;
    error: Jobs.IJobError | null;
    /** the executed notebook, relative to the root folder */
    output: string | null;
    started_at: string | null;
    finished_at: string | null;
  }

  export interface IRun {
    id: string;
    owner: string;
    title: string;
    pipeline: string;
    output: string;
    /** under the server's base URL: the folder of the executed notebooks in Lab */
    output_url: string;
    parameters: Record<string, string>;
    profile: string;
    state: State;
    reason: string | null;
    nodes: INode[];
    backend: string;
    created: string;
    started_at: string | null;
    finished_at: string | null;
  }
}

/** Serverless services on the OSCAR-compatible engine, through /reeflab/api/serverless/. */
export namespace Serverless {
  /** An OSCAR FDL service definition (only what the panel shows). */
  export interface IService {
    name: string;
    image?: string;
    cpu?: string;
    memory?: string;
    environment?: { variables?: Record<string, string> };
    input?: Array<{ storage_provider?: string; path?: string }>;
    output?: Array<{ storage_provider?: string; path?: string }>;
    [key: string]: unknown;
  }

  export type JobStatus = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | string;

  export interface IJob {
    name: string;
    status: JobStatus;
    creation_time: string | null;
    start_time: string | null;
    finish_time: string | null;
    /** ReefLab's: the caller's own name for the input file ('' when none was given) */
    file?: string;
    /** ReefLab's: the uploaded object ('bucket/key') a job made by an upload reads */
    input?: string;
    /** ReefLab's: where a succeeded job's results were written ('bucket/key' each) */
    outputs?: string[];
  }

  /** POST /reeflab/api/serverless/services: a marketplace module as a service. */
  export interface IMakeRequest {
    module: string;
    name?: string;
    /** FDL quantities: "1", "0.5"; "2000M" */
    cpu?: string;
    memory?: string;
    /** storage paths (bucket/folder) whose uploads trigger the service */
    inputs?: string[];
    outputs?: string[];
  }

  /** the same figures as a deployment's metrics */
  export type ILatency = Monitoring.ILatency;
  export type ICounts = Monitoring.ICounts;

  /** GET /system/services/<name>/metrics (ReefLab's engine; the owner only): calls counted by the engine. */
  export interface IMetrics {
    service: string;
    total: ICounts & { sync: ICounts; async: ICounts };
    window: ICounts & {
      since_s: number;
      step_s: number;
      latency_s: ILatency;
      buckets: Array<ICounts & { start: number; latency_s: ILatency }>;
    };
    sync: ICounts & { latency_s: ILatency };
    /** latency_s: queued to finished; run_s: the job's run */
    async: ICounts & { latency_s: ILatency; run_s: ILatency };
    jobs: { pending: number; running: number };
  }

  export interface IBatchRequest {
    service: string;
    inputs: string;
    output?: string;
  }

  /** A batch run by the user's server (serverless/gateway.py BatchState). */
  export interface IBatch {
    id: string;
    service: string;
    inputs: string;
    output: string;
    status: 'starting' | 'running' | 'succeeded' | 'failed';
    done: number;
    total: number;
    /** the files that failed, with why */
    failed: Array<Record<string, string>>;
    message: string;
    /** seconds since the epoch */
    started: number;
    finished: number | null;
  }

  /** Whether this server has a serverless engine, and why not. */
  export interface IAvailability {
    available: boolean;
    reason: string | null;
  }
}

/** A module's quality checks (server_extension/reeflab/checks/): runs of the checks, their reports, badges. */
export namespace Checks {
  export type State = Jobs.State;
  export type ResultState = 'passed' | 'failed' | 'skipped';

  /** What one check found (CheckResult). */
  export interface IResult {
    /** "metadata", "deepaas", "tests", "style", "security", "dockerfile", "licence", "resources" */
    name: string;
    /** what it asserts, e.g. "ai4-metadata is valid" */
    title: string;
    /** skipped: it cannot run here; the reason says why */
    state: ResultState;
    /** what failed and how to fix it, or what was measured */
    reason: string;
    /** the tool's output, trimmed */
    details: string;
    seconds: number;
  }

  /** All checks of one module (CheckReport). */
  export interface IReport {
    module: string;
    version: string;
    /** sha256 of the module's files: a changed module is checked again */
    digest: string;
    /** the folder or installed package checked */
    source: string;
    /** ISO date */
    checked: string;
    /** no check failed (skipped ones do not fail it) */
    passed: boolean;
    results: IResult[];
  }

  /** POST /reeflab/api/checks */
  export interface IRequest {
    module: string;
  }

  /** A run of the checks on one module, with its report once it ended. */
  export interface IRun {
    id: string;
    owner: string;
    title: string;
    module: string;
    source: string;
    state: State;
    /** why the run itself failed (the checks could not run) */
    reason: string | null;
    report: IReport | null;
    backend: string;
    created: string;
    started_at: string | null;
    finished_at: string | null;
  }

  /** A module in the platform's catalogue (GET /reeflab/api/catalog/published). */
  export interface IPublication {
    id: string;
    /** the hub user who published it: only they can replace or remove it */
    publisher: string;
    /** ISO date */
    published: string;
    /** the passing report it was published with */
    check: IReport;
  }

  /** What a module's card and page show: its latest check (a catalogue entry's "check"). */
  export interface IBadge {
    state: 'passed' | 'failed' | 'unchecked';
    /** ISO date, null when never checked */
    checked: string | null;
    /** the check run's id or the shared report's name, null when never checked */
    report: string | null;
    /** the checks that failed, when known */
    failed?: string[];
  }
}
