// jsdom lacks a few DOM classes that Lumino touches at import time (JupyterLab's own test setup adds them too).
if (typeof window !== 'undefined') {
  const g = globalThis as any;
  g.DragEvent ??= class DragEvent extends MouseEvent {};
  g.ResizeObserver ??= class ResizeObserver {
    observe(): void {}
    unobserve(): void {}
    disconnect(): void {}
  };
  g.matchMedia ??= () => ({ matches: false, addEventListener() {}, removeEventListener() {} });
}
