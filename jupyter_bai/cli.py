"""``jupyter bai ...``: Backend.AI's CLI verbs over the local engine (also the tree behind ``%bai``).

One click command tree serves the terminal and the notebook magic; a :class:`BaiContext`
says which one is asking, so output is an aligned table / JSON in a terminal and rich HTML or a
returned Python object in a notebook.  Every user error ends as one ``error: ...`` line, exit 1;
``session exec`` and ``session create --type batch --wait`` exit with the command's exit code.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import click

from jupyter_bai import render
from jupyter_bai._version import __version__
from jupyter_bai.spec.errors import BaiError
from jupyter_bai.spec.models import to_jsonable

#: Exit status for Ctrl-C, as shells report it.
EXIT_INTERRUPTED = 130

START_STEPS: tuple[str, ...] = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING")


@dataclass
class BaiContext:
    """Per-invocation state shared by all commands: output mode, client, result, exit code."""

    json: bool = False
    notebook: bool = False
    client_factory: Callable[[], Any] | None = None
    engine: str | None = None
    result: Any = None
    exit_code: int = 0
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        """The engine client, made on first use so ``--help`` works with no engine running."""
        if self._client is None:
            if self.client_factory is not None:
                self._client = self.client_factory()
            else:
                from jupyter_bai.client.engines import make_client

                self._client = make_client(self.engine)
        return self._client

    def close(self) -> None:
        """Close the client if this context made it."""
        if self._client is not None and self.client_factory is None:
            self._client.close()
        self._client = None

    def emit(self, data: Any, rendered: Callable[[Any], render.Rendered]) -> None:
        """Show a result: JSON or a table in a terminal; HTML (or the object) in a notebook."""
        self.result = data
        if self.notebook:
            if not self.json:
                from IPython.display import display

                display(rendered(data))
        elif self.json:
            click.echo(dumps(data))
        else:
            click.echo(str(rendered(data)))

    def progress_bar(self, **kw: Any) -> Any:
        """A tqdm bar: widgets in a notebook, stderr in a terminal; off for --json or no tty."""
        stream: IO[str] = sys.stderr
        if self.notebook:
            from tqdm.auto import tqdm as auto_tqdm

            if any(c.__module__ == "tqdm.notebook" for c in auto_tqdm.__mro__):
                return auto_tqdm(disable=self.json, **kw)  # a widget in a kernel
            # plain IPython: a text bar, only where someone watches
        from tqdm import tqdm

        return tqdm(file=stream, disable=self.json or not stream.isatty(), **kw)


def dumps(data: Any) -> str:
    """``--json`` output: the API's JSON (models as the wire carries them)."""
    return json.dumps(to_jsonable(data), indent=2, default=str)


pass_bai = click.make_pass_decorator(BaiContext, ensure=True)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(BaiContext).json = True


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` accepted after any verb as well as before the noun."""
    return click.option(
        "--json", "json_output", is_flag=True, expose_value=False, callback=_set_json,
        help="Print the API's JSON instead of a table.",
    )(f)


class _StatusBar:
    """Progress of a session towards RUNNING (or its end, for batch) while ``--wait`` polls."""

    def __init__(self, bai: BaiContext, steps: Sequence[str]) -> None:
        self.steps = list(steps)
        self.bai = bai
        self.bar: Any = None

    def __call__(self, sess: dict[str, Any]) -> None:
        status = str(sess.get("status"))
        desc = f"{sess.get('name')}: {status}"
        if self.bar is None:
            self.bar = self.bai.progress_bar(
                total=len(self.steps), unit="step", leave=True, desc=desc,
                bar_format="{desc} {bar} {n}/{total} [{elapsed}]",
            )
        self.bar.set_description_str(desc, refresh=False)
        if status in self.steps:
            self.bar.n = self.steps.index(status) + 1
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _TransferBar:
    """Byte progress for uploads and downloads; created once the total is known."""

    def __init__(self, bai: BaiContext, desc: str) -> None:
        self.bai = bai
        self.desc = desc
        self.bar: Any = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.bar is None:
            self.bar = self.bai.progress_bar(
                total=total, desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024,
            )
        if total != self.bar.total:
            self.bar.total = total
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the tree


@click.group(
    name="bai",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@json_option
@click.option("--engine", "engine", metavar="NAME", expose_value=False, is_eager=True,
              callback=lambda ctx, _p, v: setattr(ctx.ensure_object(BaiContext), "engine", v) if v else None,
              help="Talk to this engine (see `engine ls`) instead of the active one.")
@click.version_option(__version__, prog_name="jupyter-bai")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """jupyter-bai: compute sessions, virtual folders and resources (Backend.AI's verbs).

    \b
    Exit status:
      0    success
      1    a user error (one 'error: ...' line on stderr), or a session waited for
           with --wait that ended in ERROR or CANCELLED
      N    'session exec' and 'session create --type batch --wait': the command's exit code
      130  interrupted (Ctrl-C)
    """
    ctx.ensure_object(BaiContext)


# ---- session


@cli.group()
def session() -> None:
    """Compute sessions: create, list, inspect, run code in, destroy."""


@session.command("create")
@click.argument("image")
@click.option("-t", "--name", "name", help="Session name (default: generated).")
@click.option("--type", "type_", type=click.Choice(["interactive", "batch"]), default="interactive",
              show_default=True, help="Interactive sessions live until destroyed; batch ones end with their command.")
@click.option("-c", "--startup-command", "command", help="Command to run (the batch job).")
@click.option("-r", "--resources", "resources", multiple=True, metavar="KEY=VAL",
              help="Resource slot, e.g. -r cpu=2 -r mem=4g -r cuda.shares=0.5 (repeatable).")
@click.option("-v", "--mount", "mounts", multiple=True, metavar="MOUNT",
              help="VFolder mount: NAME, NAME:ro, NAME:/path, NAME:/path:ro or "
                   "type=bind,source=NAME,target=/path,perm=ro (repeatable).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Environment variable (repeatable).")
@click.option("--idle-timeout", type=float, metavar="SEC", help="End the session after this long idle.")
@click.option("--max-lifetime", type=float, metavar="SEC", help="End the session after this long.")
@click.option("--wait", is_flag=True,
              help="Wait until it runs; batch: stream its output until it ends and exit with its exit code.")
@json_option
@pass_bai
def session_create(
    bai: BaiContext,
    image: str,
    name: str | None,
    type_: str,
    command: str | None,
    resources: tuple[str, ...],
    mounts: tuple[str, ...],
    env: tuple[str, ...],
    idle_timeout: float | None,
    max_lifetime: float | None,
    wait: bool,
) -> None:
    """Create a compute session from IMAGE ('local' runs on this machine).

    With --wait: an interactive session is waited for until RUNNING; a batch session's output
    is streamed while it runs (as `docker run` does) and the exit status is its command's.
    Exit status: 0 when the session runs (batch: its command exit code), 1 when it ended in
    ERROR or CANCELLED (or a user error), 130 on Ctrl-C (the session keeps running).
    """
    bar = _StatusBar(bai, START_STEPS) if wait else None
    try:
        sess = bai.client.create_session(
            image, name=name, type=type_, command=command, resources=list(resources),
            mounts=list(mounts), env=list(env), idle_timeout=idle_timeout,
            max_lifetime=max_lifetime, progress=bar,
        )
        if bar is not None:
            sess = bai.client.wait_session(sess["id"], {"RUNNING"}, timeout=None, progress=bar, initial=sess)
    finally:
        if bar is not None:
            bar.close()
    if wait and type_ == "batch":
        if not bai.json:
            stream_output(bai, sess["id"])
        sess = bai.client.wait_session(sess["id"], TERMINAL, timeout=None, initial=sess)
        bai.exit_code = exit_status(sess, batch=True)
        if not bai.json and not bai.notebook:
            print(f"session {sess['name']}: {sess['status']}{_ended(sess)}", file=sys.stderr)
            bai.result = sess
            return
    elif wait:
        bai.exit_code = exit_status(sess, batch=False)
    bai.emit(sess, render.session_detail)
    if bai.exit_code and not bai.json and sess["status"] != "TERMINATED":
        print(f"error: session {sess['name']} ended {sess['status']}{_ended(sess)}", file=sys.stderr)


TERMINAL = frozenset({"TERMINATED", "ERROR", "CANCELLED"})


def exit_status(sess: Any, *, batch: bool) -> int:
    """The CLI's exit status for a waited-for session (documented in README and --help)."""
    status, code = sess["status"], sess.get("exit_code")
    if batch and code is not None:
        return int(code)
    if batch:
        return 0 if status == "TERMINATED" and sess.get("result") != "failure" else 1
    return 0 if status == "RUNNING" else 1


def _ended(sess: Any) -> str:
    parts = []
    if sess.get("exit_code") is not None:
        parts.append(f"exit code {sess['exit_code']}")
    if sess.get("status_info") and sess["status"] in ("ERROR", "CANCELLED"):
        parts.append(str(sess["status_info"]))
    return f" ({'; '.join(parts)})" if parts else ""


def stream_output(bai: BaiContext, name: str) -> None:
    """A session's output, live, to stdout (a terminal, or the notebook cell) until it ends."""
    for chunk in bai.client.follow_logs(name):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@cli.group()
def service() -> None:
    """Model services: replicated inference routes behind one endpoint."""


@service.command("create")
@click.argument("image")
@click.argument("model_folder")
@click.argument("replicas", type=click.IntRange(min=0), default=1)
@click.option("-t", "--name", "name", required=True, help="Service name (its endpoint path).")
@click.option("--public", is_flag=True, help="Serve without a token.")
@click.option("--runtime-variant", default="custom", show_default=True,
              help="custom (model-definition.yaml), cmd, vllm, nim or notebook.")
@click.option("-r", "--resources", "resources", multiple=True, metavar="KEY=VAL",
              help="Resources per route, e.g. -r cpu=1 -r mem=2g (repeatable).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Environment variable (repeatable).")
@click.option("-v", "--mount", "mounts", multiple=True, metavar="MOUNT",
              help="Another vfolder to mount in every route (repeatable).")
@click.option("--wait", is_flag=True, help="Return once every route is HEALTHY or one failed.")
@json_option
@pass_bai
def service_create(bai: BaiContext, image: str, model_folder: str, replicas: int, name: str,
                   public: bool, runtime_variant: str, resources: tuple[str, ...],
                   env: tuple[str, ...], mounts: tuple[str, ...], wait: bool) -> None:
    """Serve the model in MODEL_FOLDER (mounted at /models) with REPLICAS routes of IMAGE.

    Exit status with --wait: 0 when every route is HEALTHY, 1 when one failed to start.
    """
    info = bai.client.create_service(
        image, model_folder, replicas, name=name, public=public, runtime_variant=runtime_variant,
        resources=list(resources), env=list(env), mounts=list(mounts), wait=wait)
    if wait and info["status"] != "HEALTHY":
        bai.exit_code = 1
    bai.emit(info, render.service_detail)
    if bai.exit_code and not bai.json:
        print(f"error: service {info['name']} is {info['status']}: {info.get('status_info') or ''}"
              .rstrip(": "), file=sys.stderr)


@service.command("ls")
@json_option
@pass_bai
def service_ls(bai: BaiContext) -> None:
    """List model services; --json prints an array."""
    bai.emit(bai.client.list_services(), render.services_table)


@service.command("info")
@click.argument("name")
@json_option
@pass_bai
def service_info(bai: BaiContext, name: str) -> None:
    """Show a service: status, endpoint, routes and their health."""
    bai.emit(bai.client.get_service(name), render.service_detail)


@service.command("scale")
@click.argument("name")
@click.argument("replicas", type=click.IntRange(min=0))
@json_option
@pass_bai
def service_scale(bai: BaiContext, name: str, replicas: int) -> None:
    """Change the number of routes (scale-down drains them first)."""
    bai.emit(bai.client.scale_service(name, replicas), render.service_detail)


@service.command("token")
@click.argument("name")
@click.option("--ttl", default="1d", show_default=True, help="Lifetime: seconds, 30m, 12h, 1d, 2w.")
@json_option
@pass_bai
def service_token(bai: BaiContext, name: str, ttl: str) -> None:
    """Issue a bearer token for a non-public service (shown once)."""
    tok = bai.client.issue_service_token(name, ttl)
    bai.emit(tok, lambda t: render.message(f"{t['token']}  (expires {render._when(t['expires_at'])})", t))


@service.command("logs")
@click.argument("name")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Last N lines of each route.")
@json_option
@pass_bai
def service_logs(bai: BaiContext, name: str, tail: int | None) -> None:
    """Every route's log, each under a header naming the route."""
    text = bai.client.service_logs(name, tail=tail)
    if bai.json:
        bai.emit({"logs": text}, lambda d: render.message(d["logs"], d))
    else:
        bai.result = text
        sys.stdout.write(text)


@service.group("autoscale")
def service_autoscale() -> None:
    """Autoscaling rules of a service (evaluated by the engine; decisions in `service info`)."""


@service_autoscale.command("add")
@click.argument("name")
@click.option("--metric", type=click.Choice(["inflight", "rps", "gpu_util"]), required=True)
@click.option("--comparator", type=click.Choice(["gt", "lt"]), required=True)
@click.option("--threshold", type=float, required=True)
@click.option("--step", type=int, required=True, help="Routes to add (negative: remove).")
@click.option("--cooldown", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--min", "min_replicas", type=click.IntRange(0, 64), default=0, show_default=True)
@click.option("--max", "max_replicas", type=click.IntRange(0, 64), default=64, show_default=True)
@json_option
@pass_bai
def service_autoscale_add(bai: BaiContext, name: str, metric: str, comparator: str,
                          threshold: float, step: int, cooldown: float, min_replicas: int,
                          max_replicas: int) -> None:
    """Add a rule: when METRIC is COMPARATOR THRESHOLD, change replicas by STEP."""
    bai.emit(bai.client.add_autoscale_rule(
        name, metric=metric, comparator=comparator, threshold=threshold, step=step,
        cooldown=cooldown, min_replicas=min_replicas, max_replicas=max_replicas),
        render.service_detail)


@service_autoscale.command("rm")
@click.argument("name")
@click.argument("rule")
@json_option
@pass_bai
def service_autoscale_rm(bai: BaiContext, name: str, rule: str) -> None:
    """Remove the autoscaling rule RULE (its id, from `service info`)."""
    bai.emit(bai.client.remove_autoscale_rule(name, rule), render.service_detail)


@service.command("rm")
@click.argument("name")
@json_option
@pass_bai
def service_rm(bai: BaiContext, name: str) -> None:
    """Remove a service: tokens are revoked, routes drain and stop."""
    bai.emit(bai.client.delete_service(name), lambda s: render.message(
        f"service '{s['name']}' is being removed", s))


@session.command("ls")
@click.option("--status", help="Only sessions in this status (e.g. RUNNING).")
@json_option
@pass_bai
def session_ls(bai: BaiContext, status: str | None) -> None:
    """List sessions (live and finished); --json prints an array."""
    bai.emit(bai.client.list_sessions(status=status.upper() if status else None), render.sessions_table)


@session.command("info")
@click.argument("name")
@json_option
@pass_bai
def session_info(bai: BaiContext, name: str) -> None:
    """Show one session (name or id) with its status history."""
    bai.emit(bai.client.get_session(name), render.session_detail)


@session.command("logs")
@click.argument("name")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the session ends.")
@json_option
@pass_bai
def session_logs(bai: BaiContext, name: str, tail: int | None, follow: bool) -> None:
    """Print a session's output log."""
    if follow:
        stream_output(bai, name)
        return
    logs = bai.client.session_logs(name, tail=tail)
    bai.result = {"logs": logs}
    if bai.json:
        if not bai.notebook:
            click.echo(dumps(bai.result))
        return
    sys.stdout.write(logs if logs.endswith("\n") or not logs else logs + "\n")
    sys.stdout.flush()


@session.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@json_option
@pass_bai
def session_exec(bai: BaiContext, name: str, command: tuple[str, ...]) -> None:
    """Run a command inside a session: session exec NAME -- CMD ARGS...

    One argument with spaces runs through the shell; the exit status is the command's.
    """
    argv: list[str] = [c for c in command]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise click.UsageError("missing the command to run (session exec NAME -- CMD...)")
    cmd: str | list[str] = argv[0] if len(argv) == 1 and " " in argv[0] else argv
    if bai.json:
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        code = bai.client.exec(name, cmd, on_output=lambda s, t: out.setdefault(s, []).append(t))
        bai.result = {"exit_code": code, "stdout": "".join(out["stdout"]), "stderr": "".join(out["stderr"])}
        if not bai.notebook:
            click.echo(dumps(bai.result))
    else:
        code = bai.client.exec(name, cmd)
        bai.result = {"exit_code": code}
        if bai.notebook and code != 0:
            print(f"exit status {code}", file=sys.stderr)
    bai.exit_code = code


def print_remote_error(done: dict[str, Any]) -> None:
    """The remote traceback, red, on stderr: no local frames (they would only confuse)."""
    lines = done.get("traceback") or []
    text = "\n".join(str(line).rstrip("\n") for line in lines) if lines else ""
    if not text:
        text = f"{done.get('ename', 'Error')}: {done.get('evalue', '')}"
    sys.stderr.write(f"\x1b[31m{text}\x1b[0m\n")
    sys.stderr.flush()


@session.command("run")
@click.argument("name")
@click.argument("file", default="-", required=False, metavar="[FILE|-]")
@json_option
@pass_bai
def session_run(bai: BaiContext, name: str, file: str) -> None:
    """Run Python code from FILE (or stdin) in the session's persistent interpreter.

    Variables persist between runs; Ctrl-C interrupts the remote code.
    """
    if file == "-":
        if bai.notebook:
            raise click.UsageError("name a file to run, or use a %%bai run SESSION cell")
        code = sys.stdin.read()
    else:
        with open(file, encoding="utf-8") as f:
            code = f.read()
    if bai.json:
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        done = bai.client.run_code(name, code, on_output=lambda s, t: out.setdefault(s, []).append(t))
        bai.result = {**done, "stdout": "".join(out["stdout"]), "stderr": "".join(out["stderr"])}
        if not bai.notebook:
            click.echo(dumps(bai.result))
    else:
        done = bai.client.run_code(name, code, on_result=lambda text: click.echo(text))
        bai.result = done
        if done.get("status") == "error":
            print_remote_error(done)
    if done.get("status") == "error":
        bai.exit_code = 1


@session.command("destroy")
@click.argument("name")
@click.option("--forced", is_flag=True, help="Kill at once, without a grace period.")
@json_option
@pass_bai
def session_destroy(bai: BaiContext, name: str, forced: bool) -> None:
    """Terminate a session."""
    sess = bai.client.destroy_session(name, forced=forced)
    bai.emit(sess, lambda s: render.message(f"session {s.get('name')}: {s.get('status')}", s))


# ---- pipeline


@cli.group()
def pipeline() -> None:
    """FastTrack pipelines: DAGs of batch tasks with artifacts, retries and notifications."""


def _job_exit(job: Any) -> int:
    return 0 if job["status"] == "SUCCEEDED" else 1


@pipeline.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@pass_bai
def pipeline_validate(bai: BaiContext, file: str) -> None:
    """Check a pipeline file (YAML or Python, ${VAR}s from this environment); exit 1 with
    the reason."""
    from jupyter_bai.pipelines import load_file

    spec = load_file(file, os.environ)
    order = spec.order()
    bai.emit({"valid": True, "name": spec.name, "order": order}, lambda d: render.message(
        f"{file}: pipeline {spec.name}, {len(order)} tasks, valid (order: {', '.join(order)})", d))


@pipeline.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait", is_flag=True, help="Show progress and return when the job ends; "
              "exit 1 unless it SUCCEEDED.")
@click.option("--timeout", type=float, metavar="SEC", help="With --wait: give up after SEC.")
@json_option
@pass_bai
def pipeline_run(bai: BaiContext, file: str, wait: bool, timeout: float | None) -> None:
    """Start a pipeline job from FILE.

    With `engine: NAME` in FILE, or a Backend.AI engine as the default (`engine use`), each
    task runs as a batch session on that cluster, while this machine's engine keeps the job's
    record, retries and notifications (see the README for what differs from local tasks).
    """
    shown: dict[str, Any] = {}

    def progress(job: Any) -> None:
        if bai.json or bai.notebook:
            return
        for t in job["tasks"]:
            state = (t["status"], t["attempts"])
            if shown.get(t["name"]) != state:
                shown[t["name"]] = state
                click.echo(f"{t['name']}: {t['status']} (attempt {t['attempts']})", err=True)

    if bai.notebook and not bai.json:
        _watch_widget(bai, bai.client.run_pipeline(file)["id"], wait, timeout)
        return
    job = bai.client.run_pipeline(file, wait=wait, timeout=timeout, progress=progress)
    if wait:
        bai.exit_code = _job_exit(job)
    bai.emit(job, render.pipeline_job_detail)


def _watch_widget(bai: BaiContext, job_id: str, wait: bool = False,
                  timeout: float | None = None) -> None:
    """In a notebook: the live view (DAG + task rows), updating after the cell returns; with
    ``wait`` the cell returns when the job ends (exit status as in a terminal)."""
    from IPython.display import display

    from jupyter_bai.client import Client
    from jupyter_bai.widgets.pipeline import PipelineWatch

    factory = bai.client_factory or Client
    watch = PipelineWatch(factory, job_id).start()
    bai.result = watch
    display(watch.widget)
    if wait:
        job = bai.client.wait_pipeline_job(job_id, timeout=timeout)
        bai.exit_code = _job_exit(job)


@pipeline.command("watch")
@click.argument("job")
@json_option
@pass_bai
def pipeline_watch(bai: BaiContext, job: str) -> None:
    """Follow a job live: a widget in a notebook; in a terminal, its task changes until it ends."""
    if bai.notebook and not bai.json:
        bai.client.get_pipeline_job(job)  # a missing job is one error line, not a dead widget
        _watch_widget(bai, job)
        return
    shown: dict[str, Any] = {}

    def progress(info: Any) -> None:
        if bai.json:
            return
        for t in info["tasks"]:
            if shown.get(t["name"]) != (t["status"], t["attempts"]):
                shown[t["name"]] = (t["status"], t["attempts"])
                click.echo(f"{t['name']}: {t['status']} (attempt {t['attempts']})", err=True)

    info = bai.client.wait_pipeline_job(job, progress=progress)
    bai.exit_code = _job_exit(info)
    bai.emit(info, render.pipeline_job_detail)


@pipeline.command("jobs")
@json_option
@pass_bai
def pipeline_jobs(bai: BaiContext) -> None:
    """List pipeline jobs, newest first."""
    bai.emit(bai.client.list_pipeline_jobs(), render.pipeline_jobs_table)


@pipeline.command("info")
@click.argument("job")
@json_option
@pass_bai
def pipeline_info(bai: BaiContext, job: str) -> None:
    """Show a job: each task's status, attempts, exit code and duration."""
    bai.emit(bai.client.get_pipeline_job(job), render.pipeline_job_detail)


@pipeline.command("logs")
@click.argument("job")
@click.argument("task")
@json_option
@pass_bai
def pipeline_logs(bai: BaiContext, job: str, task: str) -> None:
    """Print a task's output (its last attempt's)."""
    text = bai.client.pipeline_task_logs(job, task)
    if bai.json:
        bai.emit({"logs": text}, lambda d: render.message(text, d))
    elif bai.notebook:
        bai.result = text
        click.echo(text, nl=False)
    else:
        click.echo(text, nl=False)


@pipeline.command("cancel")
@click.argument("job")
@json_option
@pass_bai
def pipeline_cancel(bai: BaiContext, job: str) -> None:
    """Stop a job: running tasks get SIGTERM, a grace period, then SIGKILL."""
    bai.emit(bai.client.cancel_pipeline_job(job), render.pipeline_job_detail)


@pipeline.command("rerun")
@click.argument("job")
@click.option("--wait", is_flag=True, help="Return when the job ends; exit 1 unless it SUCCEEDED.")
@json_option
@pass_bai
def pipeline_rerun(bai: BaiContext, job: str, wait: bool) -> None:
    """Run a failed or cancelled job again from its failed tasks, reusing successful outputs."""
    info = bai.client.rerun_pipeline_job(job)
    if bai.notebook and not bai.json:
        _watch_widget(bai, job, wait)
        return
    if wait:
        info = bai.client.wait_pipeline_job(job)
        bai.exit_code = _job_exit(info)
    bai.emit(info, render.pipeline_job_detail)


# ---- image


@cli.group()
def image() -> None:
    """Images sessions can use: 'local' and those on the Docker engine."""


@image.command("ls")
@json_option
@pass_bai
def image_ls(bai: BaiContext) -> None:
    """List images (never pulls; a missing image is refused at session create)."""
    bai.emit(bai.client.list_images(), render.images_table)


# ---- vfolder


@cli.group()
def vfolder() -> None:
    """Virtual folders: storage that sessions mount."""


@vfolder.command("create")
@click.argument("name")
@click.option("-m", "--usage-mode", type=click.Choice(["general", "data", "model"]), default="general", show_default=True)
@click.option("-p", "--permission", type=click.Choice(["rw", "ro"]), default="rw", show_default=True)
@click.option("--quota", metavar="SIZE", help="Size limit, e.g. 10g.")
@json_option
@pass_bai
def vfolder_create(bai: BaiContext, name: str, usage_mode: str, permission: str, quota: str | None) -> None:
    """Create a virtual folder."""
    bai.emit(bai.client.create_vfolder(name, usage_mode, permission, quota), render.vfolder_detail)


@vfolder.command("ls")
@json_option
@pass_bai
def vfolder_ls(bai: BaiContext) -> None:
    """List virtual folders; --json prints an array."""
    bai.emit(bai.client.list_vfolders(), render.vfolders_table)


@vfolder.command("info")
@click.argument("name")
@json_option
@pass_bai
def vfolder_info(bai: BaiContext, name: str) -> None:
    """Show one virtual folder."""
    bai.emit(bai.client.get_vfolder(name), render.vfolder_detail)


@vfolder.command("files")
@click.argument("name")
@click.argument("path", default="", required=False)
@json_option
@pass_bai
def vfolder_files(bai: BaiContext, name: str, path: str) -> None:
    """List files in a folder (or in PATH inside it)."""
    bai.emit(bai.client.list_files(name, path), render.file_table)


@vfolder.command("upload")
@click.argument("name")
@click.argument("files", nargs=-1, required=True)
@click.option("-d", "--dst", default="", help="Directory inside the folder to upload into.")
@json_option
@pass_bai
def vfolder_upload(bai: BaiContext, name: str, files: tuple[str, ...], dst: str) -> None:
    """Upload local files (directories recursively) into a folder."""
    bar = _TransferBar(bai, f"upload to {name}")
    try:
        entries = bai.client.upload(name, list(files), dst, progress=bar)
    finally:
        bar.close()
    bai.emit(entries, render.file_table)


@vfolder.command("download")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("--dest", default=".", show_default=True, help="Local directory to write into.")
@json_option
@pass_bai
def vfolder_download(bai: BaiContext, name: str, paths: tuple[str, ...], dest: str) -> None:
    """Download files (directories recursively) from a folder."""
    bar = _TransferBar(bai, f"download from {name}")
    try:
        written = bai.client.download(name, list(paths), dest, progress=bar)
    finally:
        bar.close()
    bai.emit([str(p) for p in written], render.paths_list)


@vfolder.command("mkdir")
@click.argument("name")
@click.argument("path")
@click.option("-p", "--parents", is_flag=True, help="Create missing parents; no error if it exists.")
@json_option
@pass_bai
def vfolder_mkdir(bai: BaiContext, name: str, path: str, parents: bool) -> None:
    """Create a directory in a folder."""
    bai.emit(bai.client.mkdir(name, path, parents=parents), lambda e: render.file_table([e]))


@vfolder.command("mv")
@click.argument("name")
@click.argument("src")
@click.argument("dst")
@json_option
@pass_bai
def vfolder_mv(bai: BaiContext, name: str, src: str, dst: str) -> None:
    """Move or rename a file or directory inside a folder."""
    bai.emit(bai.client.move(name, src, dst), lambda e: render.file_table([e]))


@vfolder.command("rm")
@click.argument("name")
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a directory and its contents.")
@json_option
@pass_bai
def vfolder_rm(bai: BaiContext, name: str, path: str, recursive: bool) -> None:
    """Remove a file (or, with -r, a directory) from a folder."""
    bai.client.rm(name, path, recursive=recursive)
    bai.emit({"vfolder": name, "removed": path}, lambda d: render.message(f"removed {path} from {name}", d))


@vfolder.command("delete")
@click.argument("name")
@json_option
@pass_bai
def vfolder_delete(bai: BaiContext, name: str) -> None:
    """Delete a folder and everything in it."""
    bai.client.delete_vfolder(name)
    bai.emit({"deleted": name}, lambda d: render.message(f"vfolder {name} deleted", d))


# ---- node and engine


@cli.command("resources")
@json_option
@pass_bai
def resources_cmd(bai: BaiContext) -> None:
    """Capacity and what is used/free (CPU, memory, GPUs) of the active engine; a cluster
    also lists its resource presets."""
    from jupyter_bai.client.engines import active_name, get_engine

    res = bai.client.resources()
    if bai.client_factory is None:
        name = active_name(bai.engine)
        info = get_engine(name).public(active=True)
        info["url"] = info["url"] or getattr(bai.client.driver, "where", None)
        res = res.model_copy(update={"engine": info})
    bai.emit(res, render.resources_view)


@cli.command("ask")
@click.argument("question", nargs=-1)
@click.option("--learn", "learn_path", metavar="PATH",
              help="Add a folder (Markdown, Python, notebooks) or an OpenAPI file (JSON/YAML) to the index.")
@click.option("--forget", "forget_path", metavar="PATH", help="Remove a learned file or folder.")
@click.option("--sources", "list_sources", is_flag=True, help="List what the assistant has indexed.")
@click.option("-k", "--top-k", type=click.IntRange(1, 50), default=5, show_default=True,
              help="How many sources to return.")
@click.option("--in", "source", metavar="SOURCE",
              help="Only search one API: 'workbench' or a learned file (path or file name).")
@click.option("--llm", "llm", metavar="SERVICE",
              help="Have a model service of this workbench write the answer from the retrieved operations.")
@json_option
@pass_bai
def ask_cmd(bai: BaiContext, question: tuple[str, ...], learn_path: str | None, forget_path: str | None,
            list_sources: bool, top_k: int, source: str | None, llm: str | None) -> None:
    """Ask the API assistant how to do something with this platform's API.

    The answer names the operation (REST method and path, client method, %bai line), shows a
    ready-to-run example and lists its sources with scores; it says so when nothing relevant is
    indexed.
    """
    from jupyter_bai import chat

    text = " ".join(question).strip()
    if not (text or learn_path or forget_path or list_sources):
        raise click.UsageError("ask a question, or use --learn PATH, --forget PATH or --sources")
    if learn_path:
        done = bai.client.assistant_learn(learn_path)
        bai.emit(done, lambda d: render.message(
            f"learned {d['source']}: {d['docs']} documents ({', '.join(f'{v} {k}' for k, v in d['kinds'].items())})", d))
    if forget_path:
        done = bai.client.assistant_forget(forget_path)
        bai.emit(done, lambda d: render.message(f"forgot {d['forgotten']}", d))
    if list_sources:
        bai.emit(bai.client.assistant_sources(), chat.sources_listing)
    if not text:
        return
    if bai.json:
        result = bai.client.ask(text, top_k=top_k, source=source, llm=llm)
        bai.emit({"answer": result["answer"], "sources": result["sources"]}, lambda d: render.message(d["answer"], d))
        return
    if bai.notebook:
        streamed = chat.StreamingAnswer()
        result = bai.client.ask(text, top_k=top_k, on_delta=streamed, source=source, llm=llm)
        chat.show_answer(result, streamed, question=text)
        bai.result = result
        return
    result = bai.client.ask(text, top_k=top_k, source=source, llm=llm,
                            on_delta=lambda piece: click.echo(piece, nl=False))
    click.echo("")
    if result.get("sources"):
        click.echo("\n" + str(chat.sources_view(result["sources"])))
    bai.result = result


@cli.command("serve")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Engine state (default: jupyter_data_dir()/bai).")
@click.option("--port", type=click.IntRange(0, 65535), default=8890, show_default=True)
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option(
    "--token-file", type=click.Path(dir_okay=False),
    help="Read the API token from this file (mode 0600). Default: $JUPYTER_BAI_TOKEN or "
    "$JUPYTER_TOKEN, else a random one written to the connection file.",
)
@click.option("--token", hidden=True, help="Refused: argv is visible to every user (ps).")
@pass_bai
def serve_cmd(
    bai: BaiContext, state_dir: str | None, port: int, ip: str, token_file: str | None,
    token: str | None,
) -> None:
    """Run a headless engine (no JupyterLab) until interrupted."""

    if bai.notebook:
        raise click.UsageError(
            "serve runs a headless engine from a terminal; in JupyterLab the server extension already hosts one"
        )
    if token is not None:
        raise click.UsageError(
            "--token would show the token to every user of this machine (ps, /proc); "
            "set JUPYTER_BAI_TOKEN or use --token-file FILE (mode 0600)"
        )
    from jupyter_bai.api.serve import resolve_token, serve

    serve(state_dir, port, ip, resolve_token(token_file))


# --------------------------------------------------------------------------- running it


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _usage_hint(err: click.UsageError, prog_name: str) -> str:
    path = err.ctx.command_path if err.ctx is not None else prog_name
    return f" (see '{path} --help')"


from jupyter_bai.kernels.cli import kernelspec  # noqa: E402 (uses the helpers above)
from jupyter_bai.engines_cli import engine_group  # noqa: E402

cli.add_command(kernelspec)
cli.add_command(engine_group)


def run(
    argv: Sequence[str] | None = None,
    *,
    bai: BaiContext | None = None,
    prog_name: str = "jupyter bai",
    stderr: IO[str] | None = None,
) -> int:
    """Run the command tree once; print any error as one line; return the exit status."""
    bai = bai if bai is not None else BaiContext()
    err_stream = stderr if stderr is not None else sys.stderr

    def fail(message: str, code: int = 1) -> int:
        print(f"error: {_one_line(message)}", file=err_stream)
        err_stream.flush()
        return code

    try:
        rv = cli.main(
            args=list(argv if argv is not None else sys.argv[1:]),
            prog_name=prog_name, standalone_mode=False, obj=bai,
        )
        if isinstance(rv, int) and rv != 0:  # click's Exit (e.g. from --version)
            return rv
        return bai.exit_code
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help())
        return 0
    except click.UsageError as err:
        return fail(err.format_message() + _usage_hint(err, prog_name))
    except click.ClickException as err:
        return fail(err.format_message())
    except click.Abort:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BaiError as err:
        return fail(str(err))
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except OSError as err:  # local files: unreadable upload, unwritable download dir
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        return fail(f"{err.strerror or err}{where}")
    finally:
        bai.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``jupyter-bai``, so ``jupyter bai`` works)."""
    sys.exit(run(argv))


from jupyter_bai import cli_deploy as _cli_deploy  # noqa: E402,F401  (registers deploy verbs)

if __name__ == "__main__":
    from jupyter_bai.cli import main as _main  # the importable module, where every verb is

    _main()