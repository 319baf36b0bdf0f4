/**
 * The "Parallel Clusters" sidebar: a start form, then one card per cluster with its facts,
 * live activity and actions.  The view is a pure function of the model's state; React keeps
 * the DOM (and keyboard focus) stable across the refreshes.
 */
import { closeIcon, ReactWidget, refreshIcon, stopIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import * as api from './api';
import {
  formatBytes,
  formatCpu,
  formatDuration,
  formatShortDuration,
  plural,
  shortTaskId
} from './format';
import { clustersIcon } from './icon';
import { ClustersModel, START_FORM } from './model';

export const PANEL_ID = 'ipar-clusters';

/** What the panel asks of the application. */
export interface IPanelActions {
  /** Insert the client code for a cluster into the active notebook; throws if it cannot. */
  insertClientCode(key: api.IClusterKey): void;
}

export class ClustersPanel extends ReactWidget {
  constructor(
    readonly model: ClustersModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('ipar-ClustersPanel');
    this.title.icon = clustersIcon;
    this.title.caption = 'Parallel Clusters';
    model.changed.connect(() => this.update(), this);
    this._onVisibility = () => this._poll();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    document.removeEventListener('visibilitychange', this._onVisibility);
    this.model.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    document.addEventListener('visibilitychange', this._onVisibility);
    this._poll();
  }

  protected onBeforeDetach(msg: Message): void {
    document.removeEventListener('visibilitychange', this._onVisibility);
    this.model.polling = false;
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._poll();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._poll();
  }

  /** Refresh only while someone can see the panel. */
  private _poll(): void {
    this.model.polling = this.isVisible && !document.hidden;
  }

  protected render(): JSX.Element {
    return (
      <ClustersView
        model={this.model}
        onInsert={key => {
          try {
            this._actions.insertClientCode(key);
          } catch (err) {
            this.model.setError(api.clusterKey(key), (err as Error).message);
          }
        }}
      />
    );
  }

  private _onVisibility: () => void;
}

interface IViewProps {
  model: ClustersModel;
  onInsert: (key: api.IClusterKey) => void;
}

function ClustersView({ model, onInsert }: IViewProps): JSX.Element {
  const listing = model.listing;
  const clusters = listing?.clusters ?? [];
  let status: string;
  if (listing === null) {
    status = model.listError ? 'Could not list the clusters' : 'Looking for clusters…';
  } else {
    const running = clusters.filter(c => c.state === 'running').length;
    status = plural(clusters.length, 'cluster');
    if (clusters.length > 0 && running !== clusters.length) {
      status += `, ${running} running`;
    }
  }
  return (
    <div className="ipar-panel">
      <header className="ipar-header">
        <h2 className="ipar-title">Parallel Clusters</h2>
        <button
          type="button"
          className="ipar-button ipar-icon-button ipar-refresh"
          title="Refresh now"
          aria-label="Refresh the list of clusters"
          onClick={() => void model.refresh()}
        >
          <refreshIcon.react tag="span" className="ipar-icon" />
        </button>
      </header>
      <StartForm model={model} profiles={listing?.profiles ?? []} />
      {model.listError && <ErrorNote message={model.listError} />}
      <p className="ipar-status" aria-live="polite">
        {status}
      </p>
      {listing !== null && clusters.length === 0 ? (
        <div className="ipar-empty">
          <p className="ipar-empty-title">No clusters yet: start one</p>
          <p className="ipar-empty-hint">
            Choose a profile and a number of engines above, then press Start.
          </p>
        </div>
      ) : (
        <ul className="ipar-clusters" aria-label="Clusters">
          {clusters.map(c => (
            <ClusterCard
              key={api.clusterKey(c)}
              cluster={c}
              model={model}
              onInsert={onInsert}
            />
          ))}
        </ul>
      )}
    </div>
  );
}

function StartForm({
  model,
  profiles
}: {
  model: ClustersModel;
  profiles: string[];
}): JSX.Element {
  const [profile, setProfile] = React.useState('default');
  const [engines, setEngines] = React.useState('2');
  const [clusterId, setClusterId] = React.useState('');
  const pending = model.pendingAction(START_FORM);
  const error = model.actionError(START_FORM);
  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    void model.startCluster(profile.trim(), api.parseCount(engines), clusterId.trim());
  };
  return (
    <form className="ipar-start-form" onSubmit={submit} noValidate aria-label="Start a cluster">
      <div className="ipar-form-row">
        <label className="ipar-field ipar-field-profile">
          <span>Profile</span>
          <input
            name="profile"
            className="jp-mod-styled"
            value={profile}
            list="ipar-profiles"
            autoComplete="off"
            spellCheck={false}
            onChange={e => setProfile(e.target.value)}
          />
          <datalist id="ipar-profiles">
            {profiles.map(p => (
              <option key={p} value={p} />
            ))}
          </datalist>
        </label>
        <label className="ipar-field ipar-field-n">
          <span>Engines</span>
          <input
            name="n"
            className="jp-mod-styled"
            type="number"
            min={0}
            step={1}
            value={engines}
            onChange={e => setEngines(e.target.value)}
          />
        </label>
        <button
          type="submit"
          className="ipar-button ipar-button-accept ipar-start"
          disabled={pending !== null}
        >
          {pending ? 'Starting…' : 'Start'}
        </button>
      </div>
      <details className="ipar-more">
        <summary>More options</summary>
        <label className="ipar-field">
          <span>Cluster id (optional, for several clusters in one profile)</span>
          <input
            name="cluster_id"
            className="jp-mod-styled"
            value={clusterId}
            autoComplete="off"
            spellCheck={false}
            onChange={e => setClusterId(e.target.value)}
          />
        </label>
      </details>
      {pending && (
        <p className="ipar-pending" role="status">
          {pending[0].toUpperCase() + pending.slice(1)}: waiting for the engines to register…
        </p>
      )}
      {error && <ErrorNote message={error} onDismiss={() => model.dismissError(START_FORM)} />}
    </form>
  );
}

function ClusterCard({
  cluster,
  model,
  onInsert
}: {
  cluster: api.ICluster;
  model: ClustersModel;
  onInsert: (key: api.IClusterKey) => void;
}): JSX.Element {
  const key = api.clusterKey(cluster);
  const [addCount, setAddCount] = React.useState('1');
  const action = model.pendingAction(key) ?? cluster.action;
  const error = model.actionError(key);
  const running = cluster.state === 'running';
  const busy = action !== null;
  const headingId = `ipar-cluster-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  return (
    <li
      className="ipar-cluster"
      data-profile={cluster.profile}
      data-cluster-id={cluster.cluster_id}
      data-state={cluster.state}
      aria-labelledby={headingId}
    >
      <div className="ipar-cluster-head">
        <span className="ipar-dot" data-state={cluster.state} aria-hidden="true" />
        <h3 className="ipar-cluster-name" id={headingId}>
          {cluster.profile}
          {cluster.cluster_id && <span className="ipar-cluster-id"> · {cluster.cluster_id}</span>}
        </h3>
        <span className="ipar-state" data-state={cluster.state}>
          {action ? `${action}…` : cluster.state}
        </span>
      </div>
      <dl className="ipar-facts">
        <dt>Engines</dt>
        <dd className="ipar-engines-count" title="registered / requested">
          {running ? `${cluster.engines_registered} / ${cluster.engines_requested}` : '–'}
          {running && cluster.engines_starting > 0 && (
            <span className="ipar-muted"> ({cluster.engines_starting} starting)</span>
          )}
        </dd>
        <dt>Uptime</dt>
        <dd className="ipar-uptime">{formatDuration(cluster.uptime)}</dd>
        <dt>Controller</dt>
        <dd className="ipar-address" title={cluster.address ?? undefined}>
          {cluster.address ?? '–'}
        </dd>
        {cluster.controller_pid !== null && (
          <>
            <dt>PID</dt>
            <dd className="ipar-pid">{cluster.controller_pid}</dd>
          </>
        )}
      </dl>
      {(cluster.engine_sets ?? []).length > 0 && (
        <ul className="ipar-engine-sets" aria-label="Engine sets">
          {(cluster.engine_sets ?? []).map(set => (
            <li key={set.id} className="ipar-engine-set" data-set-id={set.id}>
              <span className="ipar-engine-set-launcher">{set.launcher}</span>{' '}
              <span className="ipar-engine-set-status">{set.status}</span>{' '}
              <span className="ipar-muted">
                {set.registered}/{set.n ?? '?'} registered
              </span>
            </li>
          ))}
        </ul>
      )}
      {cluster.state === 'stale' && (
        <p className="ipar-note">
          Its controller is no longer running. Stop removes the files it left.
        </p>
      )}
      {cluster.state === 'unresponsive' && (
        <p className="ipar-note">
          Its controller runs but does not answer. Stop ends its processes.
        </p>
      )}
      {cluster.activity && <Activity activity={cluster.activity} />}
      {cluster.activity && (
        <EngineTable
          engines={cluster.activity.engines}
          costs={cluster.activity.costs ?? null}
          disabled={busy}
          onStop={id => void model.stopEngine(cluster, id)}
        />
      )}
      {cluster.activity && (cluster.activity.deaths ?? []).length > 0 && (
        <EngineDeaths deaths={cluster.activity.deaths ?? []} />
      )}
      {cluster.last_launch_failure && running && (
        <details className="ipar-launch-failure">
          <summary>
            An engine failed to start (exit code {cluster.last_launch_failure.returncode})
          </summary>
          <pre>{cluster.last_launch_failure.log_tail}</pre>
        </details>
      )}
      {error && <ErrorNote message={error} onDismiss={() => model.dismissError(key)} />}
      <div className="ipar-actions">
        {running && (
          <button
            type="button"
            className="ipar-button ipar-insert-code"
            title="Put the code that connects to this cluster into the active notebook"
            onClick={() => onInsert(cluster)}
          >
            Insert client code
          </button>
        )}
        {running && (
          <form
            className="ipar-add-form"
            noValidate
            onSubmit={e => {
              e.preventDefault();
              void model.addEngines(cluster, api.parseCount(addCount));
            }}
          >
            <input
              name="add"
              className="jp-mod-styled"
              type="number"
              min={1}
              step={1}
              value={addCount}
              aria-label={`Number of engines to add to ${key}`}
              onChange={e => setAddCount(e.target.value)}
            />
            <button type="submit" className="ipar-button ipar-add-engines" disabled={busy}>
              Add engines
            </button>
          </form>
        )}
        <button
          type="button"
          className="ipar-button ipar-button-warn ipar-stop-cluster"
          disabled={busy}
          title="Stop the controller and every engine of this cluster"
          onClick={() => void model.stopCluster(cluster)}
        >
          {cluster.state === 'stale' ? 'Clean up' : 'Stop cluster'}
        </button>
      </div>
    </li>
  );
}

const COUNTS: [keyof api.ITaskCounts, string][] = [
  ['pending', 'pending'],
  ['running', 'running'],
  ['done', 'done'],
  ['failed', 'failed']
];

function Activity({ activity }: { activity: api.IActivity }): JSX.Element {
  const t = activity.tasks;
  return (
    <div className="ipar-activity" aria-label="Tasks">
      {COUNTS.map(([field, label]) => (
        <span key={field} className="ipar-count" data-kind={field}>
          <span className="ipar-count-value">{t[field] ?? 0}</span>
          <span className="ipar-count-label">{label}</span>
        </span>
      ))}
      {t.aborted > 0 && (
        <span className="ipar-count" data-kind="aborted">
          <span className="ipar-count-value">{t.aborted}</span>
          <span className="ipar-count-label">aborted</span>
        </span>
      )}
    </div>
  );
}

/** The engines that died lately: the cause in a line, the whole report on opening it. */
function EngineDeaths({ deaths }: { deaths: api.IEngineDeath[] }): JSX.Element {
  return (
    <ul className="ipar-deaths" aria-label="Engines that died">
      {deaths.map(d => (
        <li
          key={`${d.engine_id}-${d.at}`}
          className="ipar-death"
          data-engine-id={d.engine_id}
          data-oom={d.oom ? 'true' : 'false'}
        >
          <details>
            <summary>
              Engine {d.engine_id} {d.summary}
            </summary>
            <pre className="ipar-death-report">{d.report}</pre>
          </details>
        </li>
      ))}
    </ul>
  );
}

/** CPU over memory, in one narrow cell (the sidebar is narrow); the peak in the tooltip. */
function Usage({
  usage,
  peaks = 'peak'
}: {
  usage: {
    cpu?: number | null;
    rss?: number | null;
    peak_rss?: number | null;
    gpu_memory?: number | null;
  };
  peaks?: string;
}): JSX.Element {
  return (
    <td
      className="ipar-usage"
      title={usage.peak_rss ? `${peaks} ${formatBytes(usage.peak_rss)}` : undefined}
    >
      <span className="ipar-cpu">{formatCpu(usage.cpu)}</span>
      <span className="ipar-memory">
        {formatBytes(usage.rss)}
        {usage.gpu_memory ? `, GPU ${formatBytes(usage.gpu_memory)}` : ''}
      </span>
    </td>
  );
}

function EngineTable({
  engines,
  costs,
  disabled,
  onStop
}: {
  engines: api.IEngine[];
  costs: api.ICosts | null;
  disabled: boolean;
  onStop: (id: number) => void;
}): JSX.Element {
  if (engines.length === 0) {
    return <p className="ipar-note">No engine has registered.</p>;
  }
  // CPU and memory columns once any engine reported its usage
  const reported = engines.some(e => e.cpu !== null && e.cpu !== undefined);
  return (
    <table className={reported ? 'ipar-engines ipar-with-usage' : 'ipar-engines'}>
      <caption className="ipar-visually-hidden">Engines</caption>
      <thead>
        <tr>
          <th scope="col">Engine</th>
          <th scope="col">State</th>
          <th scope="col">Task</th>
          {reported && (
            <th
              scope="col"
              className="ipar-usage-col"
              title="CPU (percent of one core) and resident memory"
            >
              CPU/mem
            </th>
          )}
          <th scope="col" className="ipar-engine-actions-col">
            <span className="ipar-visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {engines.map(e => (
          <tr key={e.id} className="ipar-engine" data-engine-id={e.id} data-state={e.state}>
            <td title={e.pid !== null ? `pid ${e.pid}` : undefined}>{e.id}</td>
            <td>
              <span className="ipar-badge" data-state={e.state}>
                {e.state}
              </span>
              {e.state === 'busy' && (
                <span className="ipar-busy-for" title="busy for">
                  {' '}
                  {formatShortDuration(e.busy_for)}
                </span>
              )}
            </td>
            <td
              className="ipar-task"
              title={e.task ? `task ${e.task}${e.queue > 0 ? `, ${e.queue} more queued` : ''}` : undefined}
            >
              {shortTaskId(e.task)}
              {e.queue > 0 && <span className="ipar-muted"> +{e.queue}</span>}
            </td>
            {reported && <Usage usage={e} />}
            <td className="ipar-engine-actions">
              <button
                type="button"
                className="ipar-button ipar-icon-button ipar-stop-engine"
                disabled={disabled}
                title={`Stop engine ${e.id}`}
                aria-label={`Stop engine ${e.id}`}
                onClick={() => onStop(e.id)}
              >
                <stopIcon.react tag="span" className="ipar-icon" />
              </button>
            </td>
          </tr>
        ))}
      </tbody>
      {reported && costs && (
        <tfoot>
          <tr className="ipar-costs-total">
            <th scope="row" colSpan={3} title={`${plural(costs.reporting, 'engine')} reporting`}>
              Cluster total
            </th>
            <Usage usage={costs} peaks="engines' peaks" />
            <td />
          </tr>
        </tfoot>
      )}
    </table>
  );
}

function ErrorNote({
  message,
  onDismiss
}: {
  message: string;
  onDismiss?: () => void;
}): JSX.Element {
  return (
    <div className="ipar-error" role="alert">
      <span className="ipar-error-text">{message}</span>
      {onDismiss && (
        <button
          type="button"
          className="ipar-button ipar-icon-button ipar-dismiss"
          aria-label="Dismiss this message"
          title="Dismiss"
          onClick={onDismiss}
        >
          <closeIcon.react tag="span" className="ipar-icon" />
        </button>
      )}
    </div>
  );
}
