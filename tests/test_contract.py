"""Both managers keep the manager contract keyword by keyword, and a remote pipeline fakes no signature."""

from __future__ import annotations

import inspect

import pytest

from nbinpaint import contract
from nbinpaint.errors import NbinpaintError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.remote import RemoteManager, RemotePipeline

METHODS = [
    name for name, member in vars(contract.Manager).items() if inspect.isfunction(member) and not name.startswith("_")
]


def parameters(function) -> list[tuple[str, inspect._ParameterKind, object]]:
    """Names, kinds and defaults: what a caller relies on (annotations are the implementation's own)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_contract_names_every_method_callers_use():
    assert set(METHODS) == {
        "get",
        "accepted_parameters",
        "pipeline_class",
        "run",
        "run_chain",
        "status",
        "release",
        "release_all",
        "segmenter",
    }


@pytest.mark.parametrize("manager", [PipelineManager, RemoteManager])
@pytest.mark.parametrize("method", METHODS)
def test_each_manager_keeps_the_contract_keyword_by_keyword(manager, method):
    assert parameters(getattr(manager, method)) == parameters(getattr(contract.Manager, method))


def test_both_managers_are_managers():
    assert isinstance(PipelineManager(device="cpu"), contract.Manager)
    assert isinstance(RemoteManager("http://127.0.0.1:9", "token"), contract.Manager)


def test_a_remote_pipeline_describes_and_fakes_no_signature():
    pipeline = RemotePipeline("some/model", "inpaint", "StableDiffusionInpaintPipeline", frozenset({"prompt"}))
    assert type(pipeline) is RemotePipeline
    assert not hasattr(pipeline.__call__, "__signature__")
    assert "__call__" not in vars(pipeline)
    assert pipeline.class_name == "StableDiffusionInpaintPipeline" and pipeline.parameters == {"prompt"}
    with pytest.raises(NbinpaintError, match="runs on the workshop server"):
        pipeline(prompt="a cat")
