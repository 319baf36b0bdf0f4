/**
 * The panel's state: the last cluster list from the server, the actions this panel has in
 * flight, and the errors to show.  It refreshes itself while `polling` is on.
 */
import { ISignal, Signal } from '@lumino/signaling';

import * as api from './api';

/** The automatic refresh never starts two requests less than this apart (ms). */
export const REFRESH_INTERVAL = 2000;

/** Where an action's error is shown: under the start form, or on a cluster's card. */
export const START_FORM = '';

export class ClustersModel {
  /** The clusters as last listed, or null before the first answer. */
  get listing(): api.IClusterList | null {
    return this._listing;
  }

  /** Why the list could not be refreshed, if the last refresh failed. */
  get listError(): string | null {
    return this._listError;
  }

  /** Emitted whenever anything shown in the panel changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The action this panel runs on a cluster ("stopping", ...), if any. */
  pendingAction(key: string): string | null {
    return this._pending.get(key) ?? null;
  }

  /** The last failed action's message for a cluster (or START_FORM). */
  actionError(key: string): string | null {
    return this._errors.get(key) ?? null;
  }

  dismissError(key: string): void {
    if (this._errors.delete(key)) {
      this._changed.emit();
    }
  }

  /** Set an error from outside an API call (e.g. no notebook to insert code into). */
  setError(key: string, message: string): void {
    this._errors.set(key, message);
    this._changed.emit();
  }

  /** Refresh now (does nothing while a refresh is already running). */
  async refresh(): Promise<void> {
    if (this._refreshing) {
      return this._refreshing;
    }
    this._refreshing = this._fetch();
    try {
      await this._refreshing;
    } finally {
      this._refreshing = null;
    }
  }

  /** Refresh every REFRESH_INTERVAL ms while on (the panel turns it on while visible). */
  set polling(on: boolean) {
    if (on === this._polling) {
      return;
    }
    this._polling = on;
    this._generation += 1;
    this._wake();
    if (on) {
      void this._loop(this._generation);
    }
  }

  get polling(): boolean {
    return this._polling;
  }

  startCluster(profile: string, n: number | string, clusterId: string): Promise<boolean> {
    const key = api.clusterKey({ profile, cluster_id: clusterId });
    return this._act(START_FORM, 'starting ' + key, () =>
      api.startCluster(profile, n, clusterId)
    );
  }

  stopCluster(key: api.IClusterKey): Promise<boolean> {
    return this._act(api.clusterKey(key), 'stopping', () => api.stopCluster(key));
  }

  addEngines(key: api.IClusterKey, n: number | string): Promise<boolean> {
    return this._act(api.clusterKey(key), 'adding engines', () => api.addEngines(key, n));
  }

  stopEngine(key: api.IClusterKey, engineId: number): Promise<boolean> {
    return this._act(api.clusterKey(key), `stopping engine ${engineId}`, () =>
      api.stopEngine(key, engineId)
    );
  }

  dispose(): void {
    this.polling = false;
    Signal.clearData(this);
  }

  private async _act(key: string, what: string, call: () => Promise<unknown>): Promise<boolean> {
    this._pending.set(key, what);
    this._errors.delete(key);
    this._changed.emit();
    let ok = true;
    try {
      await call();
    } catch (err) {
      ok = false;
      this._errors.set(key, err instanceof Error ? err.message : String(err));
    } finally {
      this._pending.delete(key);
    }
    this._changed.emit();
    await this.refresh();
    return ok;
  }

  private async _fetch(): Promise<void> {
    try {
      this._listing = await api.listClusters();
      this._listError = null;
    } catch (err) {
      this._listError = err instanceof Error ? err.message : String(err);
    }
    this._changed.emit();
  }

  /**
   * One polling loop; it ends when polling is turned off (or on again: a new loop).  Loops
   * share `_lastPoll`, so hiding and showing the panel quickly cannot refresh more often.
   */
  private async _loop(generation: number): Promise<void> {
    const current = () => this._polling && generation === this._generation;
    while (current()) {
      const due = this._lastPoll + REFRESH_INTERVAL - Date.now();
      if (due > 0) {
        await this._sleep(due);
        continue;
      }
      this._lastPoll = Date.now();
      if (!document.hidden) {
        await this.refresh();
      }
    }
  }

  /** Wait `ms`, or less if `_wake()` is called (polling turned off or on). */
  private _sleep(ms: number): Promise<void> {
    return new Promise<void>(resolve => {
      const timer = window.setTimeout(resolve, ms);
      // A stale wake (its timer fired) is harmless: both calls are then no-ops.
      this._wake = () => {
        window.clearTimeout(timer);
        resolve();
      };
    });
  }

  private _listing: api.IClusterList | null = null;
  private _listError: string | null = null;
  private _pending = new Map<string, string>();
  private _errors = new Map<string, string>();
  private _changed = new Signal<this, void>(this);
  private _refreshing: Promise<void> | null = null;
  private _polling = false;
  private _generation = 0;
  private _lastPoll = 0;
  private _wake: () => void = () => undefined;
}
