"""Pipeline files: what is accepted, and the one-line reason for what is not."""
from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.pipeline import load_pipeline, load_pipeline_file

SEED = """\
name: slack-pipeline-0
env: {PROJECT: demo}
defaults: {image: local, resources: {cpu: 1, mem: 1g}}
notify: [{on: [success, failure], webhook: "${SLACK_WEBHOOK}"}]
tasks:
  - name: model-training-task
    command: |
      sleep 3
      echo "0.$RANDOM" > /pipeline/outputs/result.txt
    resources: {cpu: 1, mem: 2g, cuda.shares: 0.5}
  - name: slack-alarm-task
    depends_on: [model-training-task]
    env: {SLACK_TOKEN: "xoxb-${TOKEN_PART}"}
    command: python notify.py ${NOT_EXPANDED_HERE}
"""

ENV = {"SLACK_WEBHOOK": "http://127.0.0.1:9/hook", "TOKEN_PART": "abc"}


def reason(text: str, env: dict[str, str] = ENV) -> str:
    with pytest.raises(InvalidRequest) as err:
        load_pipeline(text, env, source="p.yaml")
    return err.value.message


def test_the_issue_example_loads_with_vars_expanded_except_in_commands() -> None:
    spec = load_pipeline(SEED, ENV)
    assert spec.name == "slack-pipeline-0"
    assert spec.notify[0].webhook == "http://127.0.0.1:9/hook"
    alarm = spec.task("slack-alarm-task")
    assert alarm.env == {"SLACK_TOKEN": "xoxb-abc"}
    assert alarm.command == "python notify.py ${NOT_EXPANDED_HERE}"  # the task's shell expands it
    assert spec.order() == ["model-training-task", "slack-alarm-task"]
    assert str(spec.task("model-training-task").resources["cuda.shares"]) == "0.5"


def test_undefined_variable_is_refused_naming_it() -> None:
    assert "${SLACK_WEBHOOK} is not set" in reason(SEED, {"TOKEN_PART": "x"})


@pytest.mark.parametrize("tasks, expected", [
    ("[]", "the pipeline has no tasks"),
    ("[{name: a, command: x}, {name: a, command: y}]", "two tasks are named 'a'"),
    ("[{name: a, command: x, depends_on: [b]}]", "task 'a' depends on unknown task 'b'"),
    ("[{name: a}]", "task 'a' needs exactly one of command or notebook"),
    ("[{name: a, command: x, notebook: n.ipynb}]", "needs exactly one of command or notebook"),
    ("[{name: a, command: x, resources: {tpu: 1}}]", "tpu"),
    ("[{name: a, command: x, depends_on: [c]}, {name: b, command: x, depends_on: [a]},"
     " {name: c, command: x, depends_on: [b]}]", "dependency cycle: "),
    ("[{name: a, command: x, env: {BACKENDAI_X: '1'}}]", "reserved"),
    ("[{name: a, command: x, mounts: ['data:/pipeline/x']}]", "under /pipeline"),
    ("[{name: 'a b', command: x}]", "invalid task name"),
])
def test_bad_pipelines_are_refused_with_the_reason(tasks: str, expected: str) -> None:
    msg = reason(f"name: p\ntasks: {tasks}\n")
    assert expected in msg
    assert msg.startswith("p.yaml: ")


def test_a_cycle_is_named_in_order() -> None:
    msg = reason("tasks: [{name: a, command: x, depends_on: [c]}, {name: b, command: x, "
                 "depends_on: [a]}, {name: c, command: x, depends_on: [b]}, {name: d, command: x}]")
    cycle = msg.split("dependency cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]
    # Each arrow follows a real edge: X -> Y means Y depends on X.
    deps = {"a": "c", "b": "a", "c": "b"}
    assert all(deps[y] == x for x, y in zip(cycle, cycle[1:]))


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: p\ntasks:\n  - name: a\n    command: [unclosed\n")
    with pytest.raises(InvalidRequest) as err:
        load_pipeline_file(path, {})
    assert err.value.message.startswith(f"{path}:")
    assert "YAML syntax error" in err.value.message
    line = int(err.value.message.split(":")[1])
    assert line >= 4


def test_missing_notebook_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("tasks: [{name: r, notebook: report.ipynb}]\n")
    with pytest.raises(InvalidRequest, match="notebook 'report.ipynb' not found"):
        load_pipeline_file(path, {})


def test_dollar_dollar_is_a_literal_dollar() -> None:
    spec = load_pipeline("env: {PRICE: '$${X}'}\ntasks: [{name: a, command: x}]", {})
    assert spec.env == {"PRICE": "${X}"}


def test_python_definition_gives_the_same_spec_as_yaml() -> None:
    from jupyter_bai.pipelines import Pipeline, task

    with Pipeline("slack-pipeline-0", env={"PROJECT": "demo"},
                  notify=[{"on": ["success", "failure"], "webhook": ENV["SLACK_WEBHOOK"]}],
                  defaults={"image": "local", "resources": {"cpu": 1, "mem": "1g"}}) as p:
        train = task("model-training-task",
                     command='sleep 3\necho "0.$RANDOM" > /pipeline/outputs/result.txt\n',
                     resources={"cpu": 1, "mem": "2g", "cuda.shares": 0.5})
        task("slack-alarm-task", depends_on=[train], env={"SLACK_TOKEN": "xoxb-abc"},
             command="python notify.py ${NOT_EXPANDED_HERE}")
    assert p.spec() == load_pipeline(SEED, ENV)
    assert load_pipeline(p.to_yaml(), {}) == p.spec()


def test_python_definition_is_validated_like_a_file() -> None:
    from jupyter_bai.pipelines import Pipeline

    p = Pipeline("p")
    p.task("a", command="x", depends_on=["b"])
    with pytest.raises(InvalidRequest, match="depends on unknown task 'b'"):
        p.spec()


PY_SEED = '''\
import json
from jupyter_bai.pipelines import Pipeline, task

with Pipeline("slack-pipeline-0", env={"PROJECT": "demo"},
              notify=[{"on": ["success", "failure"], "webhook": "${SLACK_WEBHOOK}"}],
              defaults={"image": "local", "resources": {"cpu": 1, "mem": "1g"}}) as pipeline:
    train = task("model-training-task",
                 command='sleep 3\\necho "0.$RANDOM" > /pipeline/outputs/result.txt\\n',
                 resources={"cpu": 1, "mem": "2g", "cuda.shares": 0.5})
    task("slack-alarm-task", depends_on=[train], env={"SLACK_TOKEN": "xoxb-${TOKEN_PART}"},
         command="python notify.py ${NOT_EXPANDED_HERE}")

if __name__ == "__main__":
    raise SystemExit("not run when the file is loaded as a pipeline")
'''


def test_a_python_pipeline_file_gives_the_same_spec_as_the_yaml(tmp_path: Path) -> None:
    from jupyter_bai.pipelines import load_file

    (tmp_path / "pipeline.py").write_text(PY_SEED)
    (tmp_path / "pipeline.yaml").write_text(SEED)
    assert load_file(tmp_path / "pipeline.py", ENV) == load_file(tmp_path / "pipeline.yaml", ENV)


@pytest.mark.parametrize("source, expected", [
    ("x = (", "pipeline.py:1: Python syntax error"),
    ("raise ValueError('no data')", "pipeline.py: ValueError: no data"),
    ("x = 1", "pipeline.py: defines no Pipelines"),
    ("from jupyter_bai.pipelines import Pipeline\na, b = Pipeline('a'), Pipeline('b')",
     "defines 2 Pipelines; name the one to run `pipeline`"),
    ("from jupyter_bai.pipelines import Pipeline\npipeline = Pipeline('a')\n"
     "pipeline.task('t', command='x', depends_on=['nope'])", "depends on unknown task 'nope'"),
])
def test_a_bad_python_pipeline_file_is_one_line(tmp_path: Path, source: str, expected: str
                                                ) -> None:
    from jupyter_bai.pipelines import load_file

    (tmp_path / "pipeline.py").write_text(source)
    with pytest.raises(InvalidRequest) as err:
        load_file(tmp_path / "pipeline.py", ENV)
    assert expected in err.value.message and "\n" not in err.value.message
