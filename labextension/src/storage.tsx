/** Your storage connections (S3, WebDAV): add, test, delete, mount/unmount, and browse their files. */
import { copyIcon, downloadIcon, folderIcon, fileIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ActionStatus, ConfirmDelete, FormEnd, useAction } from './actions';
import { errorMessage, Storage, StorageAPI } from './api';
import { copyText } from './clipboard';
import { ErrorNotice, Loading } from './notice';
import {
  breadcrumbs,
  connectionProblem,
  formatBytes,
  MOUNT_WORDS,
  parentPath,
  rootName,
  sortEntries,
  storageInterval,
  storagePath,
  storagePathUse
} from './panelState';
import { PolledList } from './polledList';
import { useFetched, usePolled, without } from './usePolled';

/** Save bytes the panel fetched as a file on the user's computer (the browser's own download). */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.style.display = 'none';
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download keeps reading it a while
}

/** The path of `file` uploaded into `folder` ("" is the connection's top folder). */
export function uploadPath(folder: string, filename: string): string {
  return folder ? `${folder.replace(/\/+$/, '')}/${filename}` : filename;
}

/** An icon button copying how the platform names `path` (e.g. "ana/fish-in"), for services' and jobs' forms. */
function CopyPath(props: {
  connection: Storage.IConnection;
  path: string;
  label: string;
  onCopied: (words: string) => void;
}): JSX.Element {
  const text = storagePath(props.connection, props.path);
  return (
    <button
      type="button"
      className="jp-ReefLab-download"
      aria-label={`Copy the path of ${props.label}`}
      title={`Copy "${text}", ${storagePathUse(props.connection)}`}
      onClick={() =>
        copyText(text).then(
          () => props.onCopied(`Copied ${text}`),
          () => props.onCopied(`Could not copy: the path is ${text}`)
        )
      }
    >
      <copyIcon.react tag="span" />
    </button>
  );
}

/** A name for a new folder in the folder being browsed; the server says what is wrong with it. */
function NewFolder(props: {
  into: string;
  busy: boolean;
  onMake: (name: string) => void;
  onCancel: () => void;
}): JSX.Element {
  const [name, setName] = React.useState('');
  return (
    <form
      className="jp-ReefLab-rowActions"
      aria-label={`New folder in ${props.into}`}
      onSubmit={event => {
        event.preventDefault();
        props.onMake(name.trim());
      }}
    >
      <input
        className="jp-mod-styled jp-ReefLab-folderName"
        aria-label="Folder name"
        placeholder="Folder name, e.g. fish-in"
        value={name}
        autoFocus
        onChange={e => setName(e.currentTarget.value)}
        onKeyDown={e => e.key === 'Escape' && props.onCancel()}
      />
      <button type="submit" className="jp-ReefLab-button jp-mod-accept" disabled={props.busy || !name.trim()}>
        Create
      </button>
      <button type="button" className="jp-ReefLab-button" onClick={props.onCancel}>
        Cancel
      </button>
    </form>
  );
}

/** One page after another of a connection's folder; folders open in place. */
export function FileBrowser(props: { api: StorageAPI; connection: Storage.IConnection }): JSX.Element {
  const { api } = props;
  const connection = props.connection.name;
  const top = rootName(props.connection);
  const [path, setPath] = React.useState('');
  const [items, setItems] = React.useState<Storage.IEntry[] | null>(null);
  const [next, setNext] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [loading, setLoading] = React.useState(false);
  const [attempt, setAttempt] = React.useState(0);
  const transfer = useAction();
  const [done, setDone] = React.useState<string | null>(null);
  const input = React.useRef<HTMLInputElement>(null);
  const [naming, setNaming] = React.useState(false);
  const folderName = path ? path.split('/').pop()! : top;
  // the platform's paths as serverless services take them ("ana/fish-in"), others' as browsed
  const where = (p: string) => (props.connection.platform ? storagePath(props.connection, p) : p || top);
  const copied = (words: string) => {
    transfer.clear();
    setDone(words);
  };

  const upload = (files: FileList | null) => {
    const chosen = [...(files ?? [])];
    if (!chosen.length || !api.uploadFile) {
      return;
    }
    const into = path;
    setDone(null);
    transfer.run(`Uploading ${chosen.map(f => f.name).join(', ')}…`, async () => {
      for (const file of chosen) {
        await api.uploadFile!(connection, uploadPath(into, file.name), file);
      }
      setDone(`Uploaded ${chosen.map(f => f.name).join(', ')} to ${where(into)}.`);
      setAttempt(a => a + 1);
    });
  };
  const makeFolder = (name: string) => {
    const made = uploadPath(path, name);
    setDone(null);
    transfer.run(`Making the folder ${name}…`, async () => {
      await api.makeFolder!(connection, made);
      setNaming(false);
      setDone(`Made the folder ${where(made)}.`);
      setAttempt(a => a + 1);
    });
  };
  const download = (entry: Storage.IEntry) => {
    setDone(null);
    transfer.run(`Downloading ${entry.name}…`, () =>
      api.downloadFile!(connection, entry.path).then(blob => saveBlob(blob, entry.name))
    );
  };

  React.useEffect(() => {
    const controller = new AbortController();
    setItems(null);
    setNext(null);
    setError(null);
    setLoading(true);
    api.listFiles(connection, path, null, controller.signal).then(
      listing => {
        if (!controller.signal.aborted) {
          setItems(listing.items);
          setNext(listing.next_page);
          setLoading(false);
        }
      },
      e => {
        if (!controller.signal.aborted) {
          setError(errorMessage(e));
          setLoading(false);
        }
      }
    );
    return () => controller.abort();
  }, [api, connection, path, attempt]);

  const more = () => {
    setLoading(true);
    api.listFiles(connection, path, next).then(
      listing => {
        setItems(current => [...(current ?? []), ...listing.items]);
        setNext(listing.next_page);
        setLoading(false);
      },
      e => {
        setError(errorMessage(e));
        setLoading(false);
      }
    );
  };

  return (
    <div className="jp-ReefLab-browser" role="region" aria-label={`Files of ${connection}`}>
      <nav className="jp-ReefLab-crumbs" aria-label="Folder">
        <button type="button" className="jp-ReefLab-linkButton" onClick={() => setPath('')}>
          {top}
        </button>
        {breadcrumbs(path).map(crumb => (
          <React.Fragment key={crumb.path}>
            <span className="jp-ReefLab-muted"> / </span>
            <button type="button" className="jp-ReefLab-linkButton" onClick={() => setPath(crumb.path)}>
              {crumb.name}
            </button>
          </React.Fragment>
        ))}
        <CopyPath connection={props.connection} path={path} label="this folder" onCopied={copied} />
      </nav>
      {error && <ErrorNotice message={error} onRetry={() => setAttempt(a => a + 1)} />}
      {items && (
        <ul className="jp-ReefLab-files" aria-label="Entries">
          {path && (
            <li>
              <button type="button" className="jp-ReefLab-fileButton" onClick={() => setPath(parentPath(path))}>
                <folderIcon.react tag="span" className="jp-ReefLab-fileIcon" />
                ..
              </button>
            </li>
          )}
          {sortEntries(items).map(entry => (
            <li key={entry.path} data-type={entry.type}>
              {entry.type === 'directory' ? (
                <span className="jp-ReefLab-file jp-ReefLab-folder">
                  <button type="button" className="jp-ReefLab-fileButton" onClick={() => setPath(entry.path)}>
                    <folderIcon.react tag="span" className="jp-ReefLab-fileIcon" />
                    <span className="jp-ReefLab-fileName" title={entry.name}>
                      {entry.name}
                    </span>
                  </button>
                  <CopyPath connection={props.connection} path={entry.path} label={entry.name} onCopied={copied} />
                </span>
              ) : (
                <span className="jp-ReefLab-file" title={entry.modified ?? undefined}>
                  <fileIcon.react tag="span" className="jp-ReefLab-fileIcon" />
                  <span className="jp-ReefLab-fileName" title={entry.name}>
                    {entry.name}
                  </span>
                  <span className="jp-ReefLab-muted">{formatBytes(entry.size)}</span>
                  <CopyPath connection={props.connection} path={entry.path} label={entry.name} onCopied={copied} />
                  {api.downloadFile && (
                    <button
                      type="button"
                      className="jp-ReefLab-download"
                      aria-label={`Download ${entry.name}`}
                      title={`Download ${entry.name} to your computer`}
                      disabled={transfer.busy !== null}
                      onClick={() => download(entry)}
                    >
                      <downloadIcon.react tag="span" />
                    </button>
                  )}
                </span>
              )}
            </li>
          ))}
          {items.length === 0 && <li className="jp-ReefLab-muted">This folder is empty.</li>}
        </ul>
      )}
      {loading && <Loading>Listing {path || 'the top folder'}…</Loading>}
      {next && !loading && (
        <button type="button" className="jp-ReefLab-button" onClick={more}>
          Show more
        </button>
      )}
      {(api.uploadFile || api.makeFolder) && (
        <div className="jp-ReefLab-rowActions">
          {api.uploadFile && (
            <>
              <input
                ref={input}
                type="file"
                multiple
                className="jp-ReefLab-fileInput"
                aria-label={`Files to upload to ${folderName}`}
                onChange={e => {
                  upload(e.currentTarget.files);
                  e.currentTarget.value = ''; // the same file again uploads again
                }}
              />
              <button
                type="button"
                className="jp-ReefLab-button"
                disabled={transfer.busy !== null}
                title={`Upload files from your computer to ${path || top}`}
                onClick={() => input.current?.click()}
              >
                Upload here
              </button>
            </>
          )}
          {api.makeFolder && (
            <button
              type="button"
              className="jp-ReefLab-button"
              aria-expanded={naming}
              disabled={transfer.busy !== null}
              title={`Make a folder in ${path || top}`}
              onClick={() => setNaming(!naming)}
            >
              New folder
            </button>
          )}
        </div>
      )}
      {naming && api.makeFolder && (
        <NewFolder
          into={folderName}
          busy={transfer.busy !== null}
          onMake={makeFolder}
          onCancel={() => setNaming(false)}
        />
      )}
      <ActionStatus action={transfer} />
      {done && !transfer.busy && (
        <div className="jp-ReefLab-info" role="status">
          {done}
        </div>
      )}
    </div>
  );
}

interface IRowProps {
  connection: Storage.IConnection;
  api: StorageAPI;
  capabilities: Storage.ICapabilities | null;
  onChanged: () => void;
  onDeleted: (name: string) => void;
}

function ConnectionRow(props: IRowProps): JSX.Element {
  const { connection: c, api, capabilities } = props;
  const [browsing, setBrowsing] = React.useState(false);
  const [confirming, setConfirming] = React.useState(false);
  const [tested, setTested] = React.useState<string | null>(null);
  const action = useAction();
  const { busy, error, run } = action;
  const mounted = c.mount.state === 'mounted' || c.mount.state === 'mounting';
  const mountsOff = capabilities && !capabilities.mounts.available;
  const mountWhy = mountsOff
    ? `Mounts are not possible on this server: ${capabilities.mounts.reason ?? 'no FUSE'}`
    : mounted
      ? `Unmount ~/${c.mount.path}`
      : `Show its files in the file browser at ~/${c.mount.path}`;

  const test = () =>
    run('Testing the connection…', () =>
      api.testConnection(c.name).then(answer => setTested(`It works: answered in ${answer.seconds.toFixed(2)} s.`))
    );
  const toggleMount = () =>
    run(mounted ? 'Unmounting…' : 'Mounting…', () =>
      (mounted ? api.unmount(c.name) : api.mount(c.name)).then(props.onChanged)
    );
  const remove = () =>
    run('Deleting…', () =>
      api.deleteConnection(c.name).then(() => {
        setConfirming(false);
        props.onDeleted(c.name);
      })
    );

  return (
    <li className="jp-ReefLab-deployment jp-ReefLab-connection" aria-label={c.name} data-connection={c.name}>
      <div className="jp-ReefLab-deploymentHead">
        <strong className="jp-ReefLab-deploymentTitle">{c.name}</strong>
        <span className="jp-ReefLab-badge">{c.kind === 's3' ? 'S3' : 'WebDAV'}</span>
        {c.platform && (
          <span className="jp-ReefLab-badge" title="Your own bucket on the platform">
            platform
          </span>
        )}
        <span className={`jp-ReefLab-state jp-mod-mount-${c.mount.state}`} title={c.mount.reason ?? undefined}>
          {MOUNT_WORDS[c.mount.state]}
        </span>
      </div>
      {c.platform && c.bucket_path ? (
        <div className="jp-ReefLab-muted" title={c.location}>
          Your bucket <code>{c.bucket_path}</code> on the platform: serverless input and output paths start with{' '}
          <code>{c.bucket_path}/</code>
        </div>
      ) : (
        <div className="jp-ReefLab-muted jp-ReefLab-location" title={c.location}>
          {c.location}
        </div>
      )}
      {c.mount.state === 'mounted' && <div className="jp-ReefLab-muted">In your files at ~/{c.mount.path}</div>}
      {c.mount.state === 'error' && c.mount.reason && (
        <pre className="jp-ReefLab-reason jp-mod-failed" aria-label="Why">
          {c.mount.reason}
        </pre>
      )}
      <div className="jp-ReefLab-rowActions">
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-expanded={browsing}
          onClick={() => setBrowsing(!browsing)}
        >
          Browse
        </button>
        <button type="button" className="jp-ReefLab-button" disabled={busy !== null} onClick={test}>
          Test
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={busy !== null || (!!mountsOff && !mounted)}
          title={mountWhy}
          onClick={toggleMount}
        >
          {mounted ? 'Unmount' : 'Mount'}
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={busy !== null || c.platform}
          title={c.platform ? 'The platform storage cannot be deleted' : 'Forget this connection'}
          onClick={() => setConfirming(true)}
        >
          Delete
        </button>
      </div>
      {confirming && (
        <ConfirmDelete name={c.name} busy={busy !== null} onDelete={remove} onKeep={() => setConfirming(false)}>
          Delete the connection <strong>{c.name}</strong>? Its files stay where they are; only ReefLab forgets how to
          reach them.
        </ConfirmDelete>
      )}
      <ActionStatus action={action} />
      {tested && !busy && !error && (
        <div className="jp-ReefLab-info" role="status">
          {tested}
        </div>
      )}
      {browsing && <FileBrowser api={api} connection={c} />}
    </li>
  );
}

function Field(props: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  type?: string;
  placeholder?: string;
  autoComplete?: string;
}): JSX.Element {
  return (
    <label className="jp-ReefLab-field">
      <span>{props.label}</span>
      <input
        className="jp-mod-styled"
        type={props.type ?? 'text'}
        value={props.value}
        placeholder={props.placeholder}
        autoComplete={props.autoComplete ?? 'off'}
        onChange={e => props.onChange(e.currentTarget.value)}
      />
    </label>
  );
}

/** A new S3 bucket or WebDAV folder: the server tests it before saving it. */
export function AddConnection(props: {
  api: StorageAPI;
  onCreated: (connection: Storage.IConnection) => void;
  onCancel: () => void;
}): JSX.Element {
  const [kind, setKind] = React.useState<Storage.Kind>('webdav');
  const [values, setValues] = React.useState<Record<string, string>>({ vendor: 'owncloud' });
  const [touched, setTouched] = React.useState(false);
  const action = useAction();
  const v = (key: string) => values[key] ?? '';
  const set = (key: string) => (value: string) => setValues(current => ({ ...current, [key]: value }));
  const request: Storage.IRequest =
    kind === 's3'
      ? {
          kind,
          name: v('name').trim(),
          endpoint: v('endpoint').trim(),
          bucket: v('bucket').trim(),
          prefix: v('prefix').trim(),
          access_key: v('access_key').trim(),
          secret_key: v('secret_key')
        }
      : {
          kind,
          name: v('name').trim(),
          url: v('url').trim(),
          user: v('user').trim(),
          password: v('password'),
          vendor: v('vendor') as Storage.IWebDAVRequest['vendor']
        };
  const problem = connectionProblem(request);
  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    setTouched(true);
    if (problem) {
      return;
    }
    action.run('Checking that ReefLab can reach it…', () => props.api.createConnection(request).then(props.onCreated));
  };

  return (
    <form className="jp-ReefLab-form jp-ReefLab-addConnection" aria-label="Add a storage connection" onSubmit={submit}>
      <label className="jp-ReefLab-field">
        <span>Kind</span>
        <select className="jp-mod-styled" value={kind} onChange={e => setKind(e.currentTarget.value as Storage.Kind)}>
          <option value="webdav">WebDAV (Nextcloud, ownCloud…)</option>
          <option value="s3">S3 (MinIO, AWS, Ceph…)</option>
        </select>
      </label>
      <Field label="Name" value={v('name')} onChange={set('name')} placeholder="e.g. cloud" />
      {kind === 'webdav' ? (
        <>
          <Field
            label="URL"
            value={v('url')}
            onChange={set('url')}
            placeholder="https://cloud.example.org/remote.php/dav/files/ana"
          />
          <Field label="User" value={v('user')} onChange={set('user')} />
          <Field
            label="App password"
            type="password"
            value={v('password')}
            onChange={set('password')}
            autoComplete="new-password"
          />
        </>
      ) : (
        <>
          <Field label="Endpoint" value={v('endpoint')} onChange={set('endpoint')} placeholder="https://s3.example.org" />
          <Field label="Bucket" value={v('bucket')} onChange={set('bucket')} />
          <Field label="Folder in the bucket" value={v('prefix')} onChange={set('prefix')} placeholder="optional" />
          <Field label="Access key" value={v('access_key')} onChange={set('access_key')} />
          <Field
            label="Secret key"
            type="password"
            value={v('secret_key')}
            onChange={set('secret_key')}
            autoComplete="new-password"
          />
        </>
      )}
      <p className="jp-ReefLab-muted">Passwords and keys stay on your server: ReefLab never shows them again.</p>
      <FormEnd problem={touched && problem} action={action} submit="Add" onCancel={props.onCancel} />
    </form>
  );
}

export interface IStorageViewProps {
  api: StorageAPI;
  /** nothing is polled while false */
  visible?: boolean;
  /** bumped by the section's refresh button */
  refreshKey?: number;
}

export function StorageView(props: IStorageViewProps): JSX.Element {
  const { api } = props;
  const fetch = React.useCallback((signal: AbortSignal) => api.connections(signal), [api]);
  const connections = usePolled(fetch, storageInterval, props.visible ?? true, props.refreshKey);
  const capabilities = useFetched(() => api.storageInfo(), [api]).value;
  const [adding, setAdding] = React.useState(false);
  const [added, setAdded] = React.useState<string | null>(null);

  return (
    <div className="jp-ReefLab-storage">
      <PolledList
        polled={connections}
        label="Your storage connections"
        loading="Loading your storage…"
        empty="No storage yet. Add an S3 bucket or a WebDAV folder (Nextcloud) below."
      >
        {c => (
          <ConnectionRow
            key={c.name}
            connection={c}
            api={api}
            capabilities={capabilities}
            onChanged={connections.refresh}
            onDeleted={name => connections.set(without(x => x.name === name))}
          />
        )}
      </PolledList>
      {added && !adding && (
        <div className="jp-ReefLab-info" role="status">
          {added} was added: it works.
        </div>
      )}
      {adding ? (
        <AddConnection
          api={api}
          onCancel={() => setAdding(false)}
          onCreated={connection => {
            setAdding(false);
            setAdded(connection.name);
            connections.set(current => [...(current ?? []).filter(c => c.name !== connection.name), connection]);
            connections.refresh();
          }}
        />
      ) : (
        <button type="button" className="jp-ReefLab-button" onClick={() => setAdding(true)}>
          Add a connection
        </button>
      )}
    </div>
  );
}
