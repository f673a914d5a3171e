"""ipywidgets views fed by the engine's event stream."""
