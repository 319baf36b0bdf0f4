/**
 * "Done while you were away": a JupyterLab notification when a job shown with
 * `ar.display()` ends.
 *
 * The kernel side (ipar_widgets/widgets/notify.py) sends the notice as a custom message on
 * the job's widget comm, content `{ipar_widgets: 'job-ended', notice}`.  This plugin watches
 * the iopub messages of every notebook it tracks for it (the session context follows kernel
 * changes and restarts) and shows a toast; where this plugin is absent the widget model
 * ignores the message, so nothing else needs to know about it.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

/** The marker of our custom message (notify.py EVENT). */
export const JOB_ENDED = 'job-ended';

const PLUGIN_ID = 'ipar_widgets:notify';

/** What the kernel sends (notify.py `Notice.to_json`). */
interface INotice {
  message: string;
  type: 'success' | 'error' | 'warning' | 'info';
  job: string;
  outcome: string;
}

function isNotice(data: unknown): data is INotice {
  const d = data as Partial<INotice> | null;
  return (
    typeof d === 'object' &&
    d !== null &&
    typeof d.message === 'string' &&
    typeof d.type === 'string' &&
    typeof d.job === 'string'
  );
}

/** Seconds a toast stays up: long enough to be seen on return, short of sticking forever. */
const AUTO_CLOSE_MS = 30_000;

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A notification when a job shown with ar.display() ends.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    settingRegistry: ISettingRegistry | null
  ) => {
    let desktop = false;
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const read = (): void => {
            desktop = settings.composite.desktopNotifications === true;
          };
          read();
          settings.changed.connect(read);
        })
        .catch(reason => console.warn(`${PLUGIN_ID}: settings not loaded`, reason));
    }

    const show = (panel: NotebookPanel, notice: INotice): void => {
      const where = panel.context.path.split('/').pop() ?? panel.context.path;
      const message = `${notice.message} — ${where}`;
      const actions: Notification.IAction[] = [
        {
          label: 'Show notebook',
          caption: `Go to ${panel.context.path}`,
          callback: () => app.shell.activateById(panel.id)
        }
      ];
      const desktopApi = window.Notification;
      if (desktop && desktopApi && desktopApi.permission === 'default') {
        // browsers ask for the permission only after a click (a user gesture)
        actions.push({
          label: 'Allow desktop notifications',
          callback: () => void desktopApi.requestPermission()
        });
      }
      Notification.emit(message, notice.type, { autoClose: AUTO_CLOSE_MS, actions });
      if (
        desktop &&
        desktopApi &&
        desktopApi.permission === 'granted' &&
        (document.hidden || !document.hasFocus())
      ) {
        const note = new desktopApi(`Parallel job ${notice.outcome}`, {
          body: message,
          tag: `ipar-${panel.id}-${notice.job}`
        });
        note.onclick = () => {
          window.focus();
          app.shell.activateById(panel.id);
          note.close();
        };
      }
    };

    const shown = new Set<string>();
    /** Watch one notebook's kernel messages, whichever kernel it has over time. */
    const track = (panel: NotebookPanel): void => {
      panel.sessionContext.iopubMessage.connect((_, msg) => {
        if (msg.header.msg_type !== 'comm_msg') {
          return;
        }
        const data = (msg as KernelMessage.ICommMsgMsg).content.data as {
          method?: string;
          content?: { ipar_widgets?: string; notice?: unknown };
        };
        if (data.method !== 'custom' || data.content?.ipar_widgets !== JOB_ENDED) {
          return;
        }
        if (shown.has(msg.header.msg_id)) {
          return; // a second view of the same notebook shares its session
        }
        shown.add(msg.header.msg_id);
        if (isNotice(data.content.notice)) {
          show(panel, data.content.notice);
        } else {
          console.warn('ipar_widgets: a job-ended message without a notice', data);
        }
      });
    };
    notebooks.forEach(track);
    notebooks.widgetAdded.connect((_, panel) => track(panel));
  }
};

export default plugin;
