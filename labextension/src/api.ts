/**
 * The REST API of the ipar_widgets server extension (`<base_url>/ipar/...`).
 *
 * Requests go through `ServerConnection`, which adds the token and the XSRF header like
 * for every other Jupyter server call.  A failed call rejects with an `ApiError` whose
 * message is the server's explanation, ready to show to the user.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Task counts from the controller's records. */
export interface ITaskCounts {
  pending: number;
  running: number;
  queued_on_engines: number;
  done: number;
  failed: number;
  aborted: number;
  submitted: number;
}

/** One engine as the controller sees it. */
export interface IEngine {
  id: number;
  pid: number | null;
  state: 'idle' | 'busy';
  /** The message id of the task it runs, when busy. */
  task: string | null;
  /** Seconds it has been busy, when busy. */
  busy_for: number | null;
  queue: number;
  completed: number;
  failed: number;
  /** Its latest usage report: CPU in percent of one core, memory in bytes (null: none). */
  cpu?: number | null;
  rss?: number | null;
  peak_rss?: number | null;
  gpu_memory?: number | null;
}

/** The engines' usage summed over those that reported (`reporting`). */
export interface ICosts {
  cpu: number | null;
  rss: number | null;
  peak_rss: number | null;
  gpu_memory: number | null;
  reporting: number;
}

/** How an engine died, in the words of the notebook widget. */
export interface IEngineDeath {
  engine_id: number;
  at: number;
  cause: string;
  /** "died: killed by SIGKILL, peak 312 MB, replaced by engine 7" */
  summary: string;
  /** The whole report: task, peak memory, OOM evidence, last output. */
  report: string;
  oom: boolean;
  replaced_by: number | null;
}

export interface IActivity {
  tasks: ITaskCounts;
  engines: IEngine[];
  costs?: ICosts;
  deaths?: IEngineDeath[];
  records: number;
  stopping: boolean;
}

export type ClusterState = 'running' | 'unresponsive' | 'stale' | 'starting';

export interface ICluster {
  profile: string;
  cluster_id: string;
  state: ClusterState;
  engines_registered: number;
  engines_requested: number;
  engines_starting: number;
  address: string | null;
  controller_pid: number | null;
  started: number | null;
  /** Seconds since the controller started, when running. */
  uptime: number | null;
  /** Live activity, when the controller answered. */
  activity: IActivity | null;
  /** What the server is doing to this cluster right now ("starting", ...), if anything. */
  action: string | null;
  last_launch_failure: { seq: number; returncode: number; log_tail: string } | null;
  /** Engine sets started by launchers (mpiexec, ssh, batch jobs), with their status. */
  engine_sets: IEngineSet[];
}

export interface IEngineSet {
  id: string;
  launcher: string;
  n: number | null;
  registered: number;
  /** The launcher's own words: "PENDING (Resources)", "RUNNING", "FAILED: ...". */
  status: string;
}

export interface IClusterList {
  version: string;
  clusters: ICluster[];
  profiles: string[];
}

/** A request the server refused or could not carry out. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** How the panel and the server name one cluster. */
export interface IClusterKey {
  profile: string;
  cluster_id: string;
}

export function clusterKey(c: IClusterKey): string {
  return c.cluster_id ? `${c.profile}/${c.cluster_id}` : c.profile;
}

/**
 * An engine count as typed: a number when it reads as one, else the text itself, which the
 * server refuses with a message saying what it expected (one place checks input: the server).
 */
export function parseCount(text: string): number | string {
  const n = Number(text);
  return text.trim() !== '' && Number.isFinite(n) ? n : text;
}

async function call<T>(
  path: string[],
  init: RequestInit = {},
  clusterId = ''
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'ipar', ...path.map(encodeURIComponent));
  if (clusterId) {
    url += URLExt.objectToQueryString({ cluster_id: clusterId });
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (err) {
    throw new ApiError(
      `The Jupyter server did not answer (${(err as Error).message}); is it still running?`,
      0
    );
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 404 && data === null) {
      throw new ApiError(
        'The ipar_widgets server extension is not enabled in this Jupyter server ' +
          '(check with: jupyter server extension list).',
        404
      );
    }
    const message =
      (data && typeof data.message === 'string' && data.message) ||
      `${response.status} ${response.statusText}`;
    throw new ApiError(message, response.status);
  }
  return data as T;
}

function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}

export function listClusters(): Promise<IClusterList> {
  return call<IClusterList>(['clusters']);
}

export function startCluster(
  profile: string,
  n: number | string,
  clusterId = ''
): Promise<ICluster> {
  const body: Record<string, unknown> = { profile, n };
  if (clusterId) {
    body.cluster_id = clusterId;
  }
  return call<ICluster>(['clusters'], post(body));
}

export function stopCluster(key: IClusterKey): Promise<{ notes: string[] }> {
  return call(['clusters', key.profile], { method: 'DELETE' }, key.cluster_id);
}

export function addEngines(key: IClusterKey, n: number | string): Promise<{ launched: number[] }> {
  return call(['clusters', key.profile, 'engines'], post({ n }), key.cluster_id);
}

export function stopEngine(key: IClusterKey, engineId: number): Promise<unknown> {
  return call(
    ['clusters', key.profile, 'engines', String(engineId)],
    { method: 'DELETE' },
    key.cluster_id
  );
}
