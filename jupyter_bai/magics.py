"""``%load_ext jupyter_bai``: ``%bai NOUN VERB ...`` and ``%%bai run SESSION`` in notebooks.

``%bai`` runs the very same click tree as ``jupyter bai`` (so every verb and option behaves
identically), only with notebook output: HTML tables, widget progress bars, and the Python
object itself for ``--json``.  Errors are one ``error: ...`` line on stderr, never a traceback.
"""
from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from jupyter_bai.cli import BaiContext, print_remote_error, run
from jupyter_bai.spec.errors import BaiError

CELL_USAGE = "%%bai run SESSION"


def _error(message: str) -> None:
    """Show a user error the way the CLI does: one line on stderr."""
    print(f"error: {message}", file=sys.stderr)
    sys.stderr.flush()


class RemoteResult:
    """The repr of a remote cell's last expression, shown as the cell's ``Out[]`` value."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@magics_class
class BaiMagics(Magics):
    """The ``%bai`` line magic and ``%%bai`` cell magic."""

    def __init__(self, shell: Any = None, client_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(shell)
        self.client_factory = client_factory

    def _make_client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory()
        from jupyter_bai.client import Client

        return Client()

    @line_cell_magic
    def bai(self, line: str, cell: str | None = None) -> Any:
        """Backend.AI's verbs in a notebook; ``%bai --help`` lists them.

        Line:  %bai session create local -t exp1 -r cpu=1 -r mem=1g -v data:ro
               %bai vfolder upload data ./train.csv
               %bai resources            (add --json to get the Python object back)
        Cell:  %%bai run SESSION         (runs the cell in the session's interpreter;
                                          variables persist from cell to cell)
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _line(self, line: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as err:
            _error(f"{err} (see '%bai --help')")
            return None
        bai = BaiContext(notebook=True, client_factory=self.client_factory)
        code = run(argv, bai=bai, prog_name="%bai")
        if code == 0 and bai.json:
            return bai.result
        return None

    def _cell(self, line: str, cell: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as err:
            _error(f"{err} (usage: {CELL_USAGE})")
            return None
        if len(argv) != 2 or argv[0] != "run":
            _error(f"cell mode takes: {CELL_USAGE} (see '%bai --help')")
            return None
        name = argv[1]
        try:
            client = self._make_client()
        except BaiError as err:
            _error(str(err))
            return None
        try:
            done = client.run_code(name, cell)
        except BaiError as err:
            _error(str(err))
            return None
        except KeyboardInterrupt:
            _error("interrupted")
            return None
        finally:
            if self.client_factory is None:
                client.close()
        if done.get("status") == "error":
            print_remote_error(done)
            return None
        result = done.get("result")
        return RemoteResult(result) if result is not None else None


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_bai``: register ``%bai`` / ``%%bai``."""
    ip.register_magics(BaiMagics(ip))
