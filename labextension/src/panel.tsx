/** The jupyter-bai sidebar: a SidePanel of React sections, as the Debugger and Running panels are. */
import * as React from 'react';
import { ReactWidget, refreshIcon, SidePanel, ToolbarButton } from '@jupyterlab/ui-components';
import { Message, MessageLoop } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import { ISignal, Signal } from '@lumino/signaling';
import { BaiStore } from './store';
import { useStoreState } from './sections/common';
import { ClusterResourcesView, ResourcesView } from './sections/resources';
import { EngineModel } from './engines';
import { EngineHeader, useClusterView } from './sections/engine';
import { SessionActions, SessionsView } from './sections/sessions';
import { FoldersView } from './sections/folders';
import { PipelineActions, PipelinesView } from './sections/pipelines';
import { ServicesView } from './sections/services';

function section(id: string, label: string, body: JSX.Element): ReactWidget {
  const w = ReactWidget.create(body);
  w.id = `jp-bai-section-${id}`;
  w.addClass('jp-bai-section');
  w.title.label = label;
  return w;
}

function Resources(props: { store: BaiStore; engines: EngineModel }): JSX.Element {
  const state = useStoreState(props.store);
  const cluster = useClusterView(props.engines);
  return cluster ? <ClusterResourcesView view={cluster} /> : <ResourcesView state={state} />;
}

export class BaiSidebar extends SidePanel {
  constructor(
    readonly store: BaiStore,
    actions: SessionActions & PipelineActions,
    readonly engines: EngineModel
  ) {
    super();
    this.id = 'jp-bai-sidebar';
    this.addClass('jp-bai-sidebar');
    this.title.caption = 'jupyter-bai: resources, sessions, folders, pipelines, services';
    const heading = document.createElement('h2');
    heading.className = 'jp-bai-heading';
    heading.textContent = 'Backend.AI';
    this.header.node.appendChild(heading);
    const engineHeader = ReactWidget.create(<EngineHeader model={engines} />);
    engineHeader.id = 'jp-bai-engine-header';
    this.header.addWidget(engineHeader);
    // The header grows once engines are read (and with a cluster's notes): the sections below
    // are laid out by Lumino, which must be told their room changed, or the last ones overflow.
    this._headerSize = new ResizeObserver(() => MessageLoop.postMessage(this.content, Widget.ResizeMessage.UnknownSize));
    this._headerSize.observe(this.header.node);
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Refresh',
        onClick: () => void Promise.all([store.act(() => store.refresh()), engines.refresh()])
      })
    );
    this.addWidget(section('resources', 'Resources', <Resources store={store} engines={engines} />));
    this.addWidget(section('sessions', 'Sessions', <SessionsView store={store} actions={actions} engines={engines} />));
    this.addWidget(section('folders', 'Folders', <FoldersView store={store} />));
    this.addWidget(section('pipelines', 'Pipelines', <PipelinesView store={store} actions={actions} />));
    this.addWidget(section('services', 'Services', <ServicesView store={store} />));
  }

  private _visibilityChanged = new Signal<this, boolean>(this);
  private _headerSize: ResizeObserver;

  dispose(): void {
    this._headerSize.disconnect();
    super.dispose();
  }

  /** Shown or hidden (the plugin pauses metrics and polling while nobody looks). */
  get visibilityChanged(): ISignal<this, boolean> {
    return this._visibilityChanged;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._visibilityChanged.emit(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._visibilityChanged.emit(false);
  }
}
