/**
 * State that React reads with `useSyncExternalStore`: `subscribe`, `getState`, and setters that
 * notify the listeners. The sidebar's store, the engine header, a deploy and the chat cell each
 * keep their state in one, so none writes its own listener bookkeeping.
 */
export class ExternalState<S> {
  private readonly _listeners = new Set<() => void>();

  constructor(protected _state: S) {}

  subscribe = (listener: () => void): (() => void) => {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  };

  getState = (): S => this._state;

  /** Replace the state and notify, unless it is the same object. */
  protected replaceState(next: S): void {
    if (next === this._state) {
      return;
    }
    this._state = next;
    for (const l of [...this._listeners]) {
      l();
    }
  }

  /** Merge ``patch`` into an object state and notify. */
  protected patchState(patch: Partial<S>): void {
    this.replaceState({ ...this._state, ...patch });
  }

  /** Forget every listener (on dispose). */
  protected dropListeners(): void {
    this._listeners.clear();
  }
}
