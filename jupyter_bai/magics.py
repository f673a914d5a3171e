"""``%load_ext jupyter_bai``: ``%bai NOUN VERB ...`` and ``%%bai run SESSION`` in notebooks.

``%bai`` runs the very same click tree as ``jupyter bai`` (so every verb and option behaves
identically), only with notebook output: HTML tables, widget progress bars, and the Python
object itself for ``--json``.  Errors are one ``error: ...`` line on stderr, never a traceback.
"""
from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from jupyter_bai.cli import BaiContext, print_remote_error, run
from jupyter_bai.spec.errors import BaiError

CELL_USAGE = "%%bai run SESSION"
CHAT_USAGE = "%%bai chat [--reset] [--top-k K] [--llm SERVICE]"
#: Turns of a chat sent back with a follow-up question.
CHAT_MEMORY = 6


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
        self.chat_history: list[dict[str, str]] = []
        self.last_answer: dict[str, Any] | None = None

    def _make_client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory()
        from jupyter_bai.client.engines import make_client

        return make_client()

    @line_cell_magic
    def bai(self, line: str, cell: str | None = None) -> Any:
        """Backend.AI's verbs in a notebook; ``%bai --help`` lists them.

        Line:  %bai session create local -t exp1 -r cpu=1 -r mem=1g -v data:ro
               %bai vfolder upload data ./train.csv
               %bai resources            (add --json to get the Python object back)
               %bai deploy classifier.ipynb -t clf --replicas 2   (a notebook as a model service)
               %bai pipeline run pipeline.yaml --wait
               %bai engine use lab       (a named Backend.AI cluster; `local` to go back)
        Cell:  %%bai run SESSION         (runs the cell in the session's interpreter;
                                          variables persist from cell to cell)
               %%bai chat                (asks the API assistant; follow-ups remember the chat)
        Ask:   %bai ask how do I give my session half a GPU?   (--in API, --llm SERVICE, --learn PATH,
                                                                --forget, --sources)
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _line(self, line: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as err:
            if line.split()[:1] != ["ask"]:
                _error(f"{err} (see '%bai --help')")
                return None
            argv = line.split()  # a question with an apostrophe ("what's ...") needs no quoting
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
        if argv[:1] == ["chat"]:
            return self._chat(argv[1:], cell)
        if len(argv) != 2 or argv[0] != "run":
            _error(f"cell mode takes: {CELL_USAGE} or {CHAT_USAGE} (see '%bai --help')")
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


    def _chat(self, argv: list[str], cell: str) -> Any:
        """``%%bai chat``: one turn of a conversation with the API assistant; ``--reset`` starts over."""
        from jupyter_bai import chat

        top_k, i, llm = 5, 0, None
        while i < len(argv):
            if argv[i] == "--reset":
                self.chat_history.clear()
            elif argv[i] in ("-k", "--top-k") and i + 1 < len(argv) and argv[i + 1].isdigit():
                top_k = int(argv[i + 1])
                i += 1
            elif argv[i] == "--llm" and i + 1 < len(argv):
                llm = argv[i + 1]
                i += 1
            else:
                _error(f"unknown option {argv[i]!r} (usage: {CHAT_USAGE})")
                return None
            i += 1
        question = " ".join(cell.split())
        if not question:
            if argv == ["--reset"] or "--reset" in argv:
                print("chat history cleared")
                return None
            _error(f"write the question in the cell (usage: {CHAT_USAGE})")
            return None
        try:
            client = self._make_client()
        except BaiError as err:
            _error(str(err))
            return None
        try:
            turn = len(self.chat_history) + 1
            from IPython.display import HTML, display

            display(HTML(chat.chat_turn_html(question, {"mode": "…"}, turn)))
            streamed = chat.StreamingAnswer()
            result = client.ask(question, top_k=top_k, history=self.chat_history[-CHAT_MEMORY:],
                                on_delta=streamed, llm=llm)
        except BaiError as err:
            _error(str(err))
            return None
        finally:
            if self.client_factory is None:
                client.close()
        self.chat_history.append({"question": question, "answer": result["answer"]})
        if result.get("note"):
            print(result["note"])
        self.last_answer = chat.show_answer(result, streamed, question=question)
        return None


_ASK_LINE = re.compile(r"^(\s*)%bai\s+ask\b(.*?)(\r?\n)?$")


def protect_questions(lines: list[str]) -> list[str]:
    """Keep IPython from reading ``%bai ask ... GPU?`` as a help request (``GPU?``): questions
    end with a question mark. Runs as an input cleanup transform, before the help syntax."""
    out = []
    for line in lines:
        m = _ASK_LINE.match(line)
        if m and m.group(2).rstrip().endswith("?"):
            arg = ("ask" + m.group(2)).rstrip()
            out.append(f"{m.group(1)}get_ipython().run_line_magic('bai', {arg!r}){m.group(3) or ''}")
        else:
            out.append(line)
    return out


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_bai``: register ``%bai`` / ``%%bai``."""
    ip.register_magics(BaiMagics(ip))
    cleanup = getattr(ip, "input_transformers_cleanup", None)
    if cleanup is not None and protect_questions not in cleanup:
        cleanup.insert(0, protect_questions)
