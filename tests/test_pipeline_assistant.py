"""The API assistant knows the pipeline operations: found from plain questions, with the
`%bai pipeline` verb and the client method as examples."""
from __future__ import annotations

import pytest

from jupyter_bai.assistant.library import Library


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return Library(tmp_path_factory.mktemp("assistant"), dense=False)


def test_pipeline_operations_are_indexed_with_their_verbs(lib: Library) -> None:
    index = lib.index()
    ops = {d.operation_id: d for d in index.docs if d.kind == "operation"}
    for op in ("createPipelineJob", "listPipelineJobs", "getPipelineJob", "cancelPipelineJob",
               "rerunPipelineJob", "getPipelineTaskLogs"):
        assert op in ops, op
    create = ops["createPipelineJob"]
    assert (create.method, create.path) == ("POST", "/bai/api/v1/pipelines/jobs")
    assert create.examples["magic"].startswith("%bai pipeline run")
    assert "run_pipeline" in create.examples["client"]


@pytest.mark.parametrize("question, op", [
    ("run a pipeline of tasks that depend on each other", "createPipelineJob"),
    ("run the failed tasks of a pipeline job again", "rerunPipelineJob"),
    ("stop a running pipeline job", "cancelPipelineJob"),
    ("show the output of one task of a pipeline job", "getPipelineTaskLogs"),
])
def test_pipeline_questions_find_their_operation(lib: Library, question: str, op: str) -> None:
    found = [h.doc.operation_id for h in lib.index().search(question, 5)]
    assert op in found, (question, found)
