/** Folders: list, create, browse files, upload by drag and drop, download. */
import * as React from 'react';
import { addIcon, downloadIcon, fileIcon, fileUploadIcon, folderIcon, refreshIcon } from '@jupyterlab/ui-components';
import { FileEntry, VFolder } from '../api';
import { bytes } from '../format';
import { BaiStore } from '../store';
import { useStoreState } from './common';

export function FolderList(props: { folders: VFolder[]; open(name: string): void }): JSX.Element {
  if (props.folders.length === 0) {
    return <div className="jp-bai-empty">no folders</div>;
  }
  return (
    <ul className="jp-bai-list jp-bai-folders">
      {props.folders.map(f => (
        <li className="jp-bai-row jp-bai-folder" key={f.id} data-folder={f.name}>
          <button className="jp-bai-link-button" onClick={() => props.open(f.name)} title={`browse ${f.name}`}>
            <folderIcon.react tag="span" className="jp-bai-inline-icon" /> {f.name}
          </button>
          <span className="jp-bai-row-detail">
            {f.file_count} files · {bytes(f.usage_bytes)}
            {f.permission !== 'rw' ? ` · ${f.permission}` : ''}
          </span>
        </li>
      ))}
    </ul>
  );
}

/** Save a blob under `name` through the browser's download. */
function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function join(dir: string, name: string): string {
  return dir ? `${dir.replace(/\/$/, '')}/${name}` : name;
}

function FolderBrowser(props: { store: BaiStore; folder: string; close(): void }): JSX.Element {
  const { store, folder } = props;
  const [path, setPath] = React.useState('');
  const [files, setFiles] = React.useState<FileEntry[] | null>(null);
  const [dragging, setDragging] = React.useState(false);
  const [uploading, setUploading] = React.useState(0);
  const input = React.useRef<HTMLInputElement>(null);

  const load = React.useCallback(async () => {
    const list = await store.act(() => store.api.files(folder, path));
    setFiles(list ?? []);
  }, [folder, path]);

  React.useEffect(() => {
    void load();
    // Uploads from elsewhere (Python, the CLI) show up as they happen.
    return store.onEvent(e => {
      if (e.kind === 'vfolder' && e.name === folder) {
        void load();
      }
    });
  }, [load]);

  const upload = async (list: FileList | File[]) => {
    const items = Array.from(list);
    setUploading(n => n + items.length);
    await Promise.all(
      items.map(async file => {
        await store.act(() => store.api.upload(folder, join(path, file.name), file), `uploaded ${file.name} to ${folder}`);
        setUploading(n => n - 1);
      })
    );
    void load();
  };

  const crumbs = path ? path.split('/') : [];
  return (
    <div
      className={`jp-bai-browser${dragging ? ' jp-mod-dropTarget' : ''}`}
      data-folder={folder}
      onDragOver={e => {
        if (e.dataTransfer?.types?.includes('Files')) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={e => {
        e.preventDefault();
        setDragging(false);
        if (e.dataTransfer?.files?.length) {
          void upload(e.dataTransfer.files);
        }
      }}
    >
      <div className="jp-bai-toolbar">
        <button className="jp-bai-link-button" onClick={props.close} title="all folders">
          ← folders
        </button>
        <span className="jp-bai-crumbs">
          <button className="jp-bai-link-button" onClick={() => setPath('')}>
            {folder}
          </button>
          {crumbs.map((c, i) => (
            <React.Fragment key={i}>
              /
              <button className="jp-bai-link-button" onClick={() => setPath(crumbs.slice(0, i + 1).join('/'))}>
                {c}
              </button>
            </React.Fragment>
          ))}
        </span>
        <button className="jp-bai-icon-button" title="upload files" aria-label="upload" onClick={() => input.current?.click()}>
          <fileUploadIcon.react tag="span" />
        </button>
        <button className="jp-bai-icon-button" title="refresh" aria-label="refresh" onClick={() => void load()}>
          <refreshIcon.react tag="span" />
        </button>
        <input ref={input} type="file" multiple hidden onChange={e => e.target.files && void upload(e.target.files)} />
      </div>
      {uploading > 0 && <div className="jp-bai-note">uploading {uploading}…</div>}
      {files === null ? (
        <div className="jp-bai-empty">loading…</div>
      ) : files.length === 0 ? (
        <div className="jp-bai-empty jp-bai-dropzone">empty — drop files here to upload</div>
      ) : (
        <ul className="jp-bai-list jp-bai-files">
          {files.map(f => (
            <li className="jp-bai-row jp-bai-file" key={f.path} data-path={f.path}>
              {f.type === 'dir' ? (
                <button className="jp-bai-link-button" onClick={() => setPath(f.path)}>
                  <folderIcon.react tag="span" className="jp-bai-inline-icon" /> {f.name}/
                </button>
              ) : (
                <span>
                  <fileIcon.react tag="span" className="jp-bai-inline-icon" /> {f.name}
                </span>
              )}
              <span className="jp-bai-row-detail">
                {f.type === 'file' ? bytes(f.size) : ''}
                {f.type === 'file' && (
                  <button
                    className="jp-bai-icon-button"
                    title={`download ${f.name}`}
                    aria-label="download"
                    onClick={async () => {
                      const blob = await store.act(() => store.api.download(folder, f.path));
                      if (blob) {
                        saveBlob(blob, f.name);
                      }
                    }}
                  >
                    <downloadIcon.react tag="span" />
                  </button>
                )}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function FoldersView(props: { store: BaiStore }): JSX.Element {
  const state = useStoreState(props.store);
  const [open, setOpen] = React.useState<string | null>(null);
  const [name, setName] = React.useState('');
  if (open) {
    return <FolderBrowser store={props.store} folder={open} close={() => setOpen(null)} />;
  }
  const create = async (e: React.FormEvent) => {
    e.preventDefault();
    const n = name.trim();
    if (!n) {
      return;
    }
    if (await props.store.act(() => props.store.api.createVFolder(n))) {
      setName('');
    }
  };
  return (
    <div className="jp-bai-section-body">
      <form className="jp-bai-toolbar" onSubmit={create} aria-label="new folder">
        <input className="jp-mod-styled" placeholder="new folder name" value={name} onChange={e => setName(e.target.value)} />
        <button type="submit" className="jp-bai-icon-button" title="create folder" aria-label="create folder">
          <addIcon.react tag="span" />
        </button>
      </form>
      {state.loaded ? <FolderList folders={state.vfolders} open={setOpen} /> : <div className="jp-bai-empty">loading…</div>}
    </div>
  );
}
