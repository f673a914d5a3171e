"""Run a pipeline notebook task inside its session: inject the parameters after the cell
tagged ``parameters`` (as papermill does), execute with nbclient on a local kernel, and save
the executed notebook over the input in ``/pipeline/outputs`` (also when a cell fails).

    python -m jupyter_bai.notebook_task NOTEBOOK PARAMETERS_JSON
"""
from __future__ import annotations

import json
import sys
from typing import Any


def inject(nb: Any, parameters: dict[str, Any]) -> None:
    import nbformat

    if not parameters:
        return
    source = "# Parameters injected by the pipeline\n" + "".join(
        f"{name} = {value!r}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    at = next((i + 1 for i, c in enumerate(nb.cells)
               if "parameters" in (c.get("metadata", {}).get("tags") or [])), 0)
    nb.cells.insert(at, cell)


def main(argv: list[str]) -> int:
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:  # an image without them: say what the task needs
        print(f"notebook task: this image's {sys.executable} cannot import {exc.name}; "
              "notebook tasks need nbclient and ipykernel in the image", file=sys.stderr)
        return 2

    path, parameters = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    nb = nbformat.read(path, as_version=4)
    inject(nb, parameters)
    client = NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": "/home/work"}})
    code = 0
    try:
        client.execute()
    except CellExecutionError as exc:
        print(str(exc), file=sys.stderr)
        code = 1
    finally:
        nbformat.write(nb, path)
    for cell in nb.cells:  # the task's log shows what the notebook printed
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                sys.stdout.write(out.get("text", ""))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
