"""One user's options as one value: every spelling the recipes, pricing, naming and the registry read."""

from __future__ import annotations

import pytest

from openmvsep.algorithms.choice import Choice
from openmvsep.service.catalog import Catalog
from openmvsep.service.naming import options_tag


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load({})


def test_a_resolved_choice_reads_in_every_spelling(catalog: Catalog):
    choice = catalog.resolve(40, {"add_opt1": "4", "add_opt2": "8"})
    assert choice.sep_type == 40
    assert choice == {"model_type": "4", "overlap": "8", "extract_type": "0"}  # what a job row stores
    assert choice.as_dict() == dict(choice) and type(choice.as_dict()) is dict
    assert choice.by_field() == {"add_opt1": "4", "add_opt2": "8", "add_opt3": "0"}  # what price rules name
    assert choice.option("model_type") == "40:4"  # what the weights registry names
    labels = choice.labels()
    assert labels["overlap"] == catalog.get(40).field("add_opt2").options["8"] and labels["model_type"]
    assert options_tag(choice) == "mt_4_o_8_et_0"  # what file names carry


def test_a_stored_choice_comes_back_with_its_labels(catalog: Catalog):
    stored = catalog.resolve(20, {"add_opt1": "2"}).as_dict()
    again = catalog.choice(20, stored)
    assert again == stored and again.labels() == catalog.resolve(20, {"add_opt1": "2"}).labels()
    assert again.by_field() == {"add_opt1": "2"}


def test_a_bare_choice_for_callers_that_name_options_directly():
    choice = Choice.of(22, {"model_type": "1", "extract_type": "0"})
    assert choice["model_type"] == "1" and choice.get("missing") is None and len(choice) == 2
    assert choice.option() == "22:1" and choice.labels() == {"model_type": "", "extract_type": ""}
    with pytest.raises(KeyError):
        choice["missing"]
