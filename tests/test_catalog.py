"""The algorithm catalog: served shape (CONTRACT §2.6), lenient option resolution (§1.3), prices (§4.2)."""

from __future__ import annotations

import copy
import importlib.resources
import json

import pytest

from openmvsep.algorithms.choice import Choice
from openmvsep.service.catalog import (
    DSP_CENTRE_KEY,
    MAX_TEXT_CHARS,
    SCOPES,
    Algorithm,
    Catalog,
    OptionError,
    php_pretty_json,
)

from conftest import SHARED

SHARED_DUMP = SHARED / "mvsep" / "algorithms-2026.json"
ADDITIVE_KEYS = ("is_available", "available_keys", "mvsep_default_key")
EXTRA_SEP_TYPES = {
    62: "no_upload",
    68: "matchering_upload",
    104: "no_upload",
    115: "no_upload",
    118: "no_upload",
    119: "no_upload",
}


def _data_file(name: str) -> list[dict]:
    return json.loads((importlib.resources.files("openmvsep") / "catalog_data" / name).read_text("utf-8"))


DUMP = _data_file("algorithms-2026.json")
EXTRAS = _data_file("extra_algorithms.json")
RAW_BY_SEP_TYPE = {e["render_id"]: e for e in DUMP + EXTRAS}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load({55: {"add_opt1": [DSP_CENTRE_KEY]}, 68: None})


def _strip_additive(element: dict) -> dict:
    """The element as MVSep stores it: without the additive keys, and with MVSep's own default_key."""
    element = {k: v for k, v in element.items() if k not in ADDITIVE_KEYS}
    element["algorithm_fields"] = [
        {**{k: v for k, v in f.items() if k not in ADDITIVE_KEYS}, "default_key": f["mvsep_default_key"]}
        for f in element["algorithm_fields"]
    ]
    return element


# ------------------------------------------------------------------------------------------------ data files


@pytest.mark.skipif(not SHARED_DUMP.exists(), reason="shared fixtures not present")
def test_packaged_dump_is_a_byte_for_byte_copy() -> None:
    packaged = (importlib.resources.files("openmvsep") / "catalog_data" / "algorithms-2026.json").read_bytes()
    assert packaged == SHARED_DUMP.read_bytes()


def test_extra_elements_have_the_shape_of_the_2026_elements() -> None:
    element_keys = list(DUMP[0])
    field_keys = list(DUMP[0]["algorithm_fields"][0])
    groups = {e["algorithm_group_id"]: e["algorithm_group"] for e in DUMP}
    assert {e["render_id"]: e["audio_widget"] for e in EXTRAS} == EXTRA_SEP_TYPES
    for element in EXTRAS:
        assert list(element) == element_keys
        assert element["algorithm_group"] == groups[element["algorithm_group_id"]]
        assert element["audio_upload_disabled"] == (1 if element["audio_widget"] == "no_upload" else 0)
        assert element["rating"] == {"average": 0, "total": 0}
        for f in element["algorithm_fields"]:
            assert list(f) == field_keys
            assert f["algorithm_id"] == element["id"]
            assert isinstance(json.loads(f["options"]), dict)
            if f["input_type"] == "select":
                assert f["default_key"] in json.loads(f["options"])
            else:
                assert f["options"] == "{}"
    assert RAW_BY_SEP_TYPE[68]["algorithm_fields"] == []
    assert json.loads(RAW_BY_SEP_TYPE[68]["outputs"]) == {"result": "Result"}


def test_extra_ids_do_not_clash_with_the_dump() -> None:
    for key in ("id", "render_id"):
        ids = [e[key] for e in DUMP + EXTRAS]
        assert len(ids) == len(set(ids)), key
    field_ids = [f["id"] for e in DUMP + EXTRAS for f in e["algorithm_fields"]]
    assert len(field_ids) == len(set(field_ids))


def test_extra_fields_follow_the_api_page() -> None:
    def fields(sep_type: int) -> list[tuple[str, str, str]]:
        return [(f["name"], f["server_key"], f["input_type"]) for f in RAW_BY_SEP_TYPE[sep_type]["algorithm_fields"]]

    assert fields(62) == [("add_opt1", "prompt", "textarea"), ("add_opt2", "length", "select")]
    assert fields(104) == [("add_opt1", "model_type", "select"), ("add_opt2", "text", "textarea")]
    assert fields(115) == [("add_opt1", "text", "textarea"), ("add_opt2", "speaker", "select")]
    assert fields(118) == [
        ("add_opt1", "text", "textarea"),
        ("add_opt2", "speaker", "select"),
        ("add_opt3", "language", "select"),
        ("add_opt4", "instruct", "textarea"),
    ]
    assert fields(119) == [
        ("add_opt1", "text", "textarea"),
        ("add_opt2", "instruct", "textarea"),
        ("add_opt3", "language", "select"),
    ]
    bark_speakers = list(json.loads(RAW_BY_SEP_TYPE[115]["algorithm_fields"][1]["options"]))
    assert len(bark_speakers) == 130 and bark_speakers[0] == "en_0" and bark_speakers[-1] == "zh_9"


def test_php_pretty_json_reproduces_every_options_string_of_the_dump() -> None:
    for element in DUMP + EXTRAS:
        for f in element["algorithm_fields"]:
            assert php_pretty_json(json.loads(f["options"])) == f["options"]


# ------------------------------------------------------------------------------------------------ listing


def test_listing_is_a_bare_list_whose_first_element_has_fields(catalog: Catalog) -> None:
    listing = json.loads(catalog.list_json(None))
    assert isinstance(listing, list)
    assert listing[0]["render_id"] == 26
    assert listing[0]["algorithm_fields"]


def test_served_elements_equal_the_raw_data_apart_from_the_additive_keys(catalog: Catalog) -> None:
    served = catalog.list(SCOPES)
    assert [e["render_id"] for e in served] == [e["render_id"] for e in DUMP + EXTRAS]
    for element in served:
        assert isinstance(element["is_available"], bool)
        assert all(isinstance(f["available_keys"], list) for f in element["algorithm_fields"])
        expected = copy.deepcopy(RAW_BY_SEP_TYPE[element["render_id"]])
        if element["render_id"] == 55:  # the one intended difference: the DSP option
            field = expected["algorithm_fields"][0]
            field["options"] = php_pretty_json(
                {**json.loads(field["options"]), DSP_CENTRE_KEY: "Phantom Centre (DSP, no download)"}
            )
        assert _strip_additive(element) == expected


def test_options_stay_json_encoded_strings_on_the_wire(catalog: Catalog) -> None:
    for element in json.loads(catalog.list_json(SCOPES)):
        for f in element["algorithm_fields"]:
            assert isinstance(f["options"], str)
            assert isinstance(json.loads(f["options"]), dict)


def test_listing_json_is_the_listing_serialised(catalog: Catalog) -> None:
    assert json.loads(catalog.list_json("no_upload")) == catalog.list("no_upload")


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (None, "dump"),
        ("", "dump"),
        ([], "dump"),
        ("single_upload", "dump"),
        ("bogus", "dump"),
        ("no_upload", [62, 104, 115, 118, 119]),
        ("matchering_upload", [68]),
        ("no_upload, matchering_upload", [62, 68, 104, 115, 118, 119]),
        (["no_upload", "bogus"], [62, 104, 115, 118, 119]),
        ("single_upload,matchering_upload", "dump+68"),
    ],
)
def test_scopes_filter_the_listing(catalog: Catalog, scopes, expected) -> None:
    dump_ids = [e["render_id"] for e in DUMP]
    wanted = {"dump": dump_ids, "dump+68": dump_ids + [68]}[expected] if isinstance(expected, str) else expected
    assert [e["render_id"] for e in catalog.list(scopes)] == wanted


def test_listing_is_computed_once_per_scope_set(catalog: Catalog) -> None:
    assert catalog.list("no_upload,single_upload") is catalog.list(["single_upload", "no_upload"])
    assert catalog.list_json(None) is catalog.list_json("single_upload")


def test_dsp_option_is_listed_for_phantom_centre(catalog: Catalog) -> None:
    element = next(e for e in catalog.list(None) if e["render_id"] == 55)
    field = element["algorithm_fields"][0]
    options = json.loads(field["options"])
    assert list(options) == ["0", "1", "2", DSP_CENTRE_KEY]
    assert options[DSP_CENTRE_KEY] == "Phantom Centre (DSP, no download)"
    assert field["options"].startswith('{\n    "0": ')  # same indentation style as the dump
    assert field["available_keys"] == [DSP_CENTRE_KEY]
    assert element["is_available"] is True


def test_only_runnable_algorithms_are_available(catalog: Catalog) -> None:
    for element in catalog.list(SCOPES):
        assert element["is_available"] is (element["render_id"] in (55, 68))
        if element["render_id"] != 55:
            assert all(f["available_keys"] == [] for f in element["algorithm_fields"])
    assert catalog.runnable_sep_types() == [55, 68]


def test_fields_not_named_in_runnable_accept_every_key() -> None:
    catalog = Catalog.load({40: {"add_opt1": ["81"]}, 103: None})
    fields = {
        f["name"]: f["available_keys"]
        for f in next(e for e in catalog.list(None) if e["render_id"] == 40)["algorithm_fields"]
    }
    assert fields == {"add_opt1": ["81"], "add_opt2": ["2", "8"], "add_opt3": ["0", "1"]}
    vibevoice = next(e for e in catalog.list(None) if e["render_id"] == 103)
    assert [f["available_keys"] for f in vibevoice["algorithm_fields"]] == [["0", "1"], [], ["0", "1"]]
    assert catalog.runnable_sep_types() == [40, 103]


def test_a_field_with_no_runnable_key_makes_the_algorithm_unavailable() -> None:
    catalog = Catalog.load({40: {"add_opt1": []}})
    assert not catalog.is_available(40)
    assert catalog.runnable_sep_types() == []


@pytest.mark.parametrize(
    "runnable",
    [
        {999: None},
        {20: {"add_opt2": ["0"]}},
        {20: {"add_opt1": ["nope"]}},
        {103: {"add_opt2": ["x"]}},
    ],
)
def test_bad_runnable_specs_fail_at_start_up(runnable) -> None:
    with pytest.raises(ValueError):
        Catalog.load(runnable)


# ------------------------------------------------------------------------------------------------ resolve


def test_resolve_ignores_fields_an_algorithm_does_not_have(catalog: Catalog) -> None:
    zf4_form = {"add_opt1": "0", "add_opt2": "0", "add_opt3": "0"}
    assert catalog.resolve(13, zf4_form) == {}  # Demucs2 has no field
    assert catalog.resolve(68, zf4_form) == {}
    assert catalog.resolve(20, {"add_opt1": "", "add_opt2": "0", "add_opt3": "junk"}) == {"model_type": "1"}


def test_resolve_empty_values_take_the_default(catalog: Catalog) -> None:
    assert catalog.resolve(26, {"add_opt1": "", "add_opt2": ""}) == {"model_type": "7", "detailed": "0"}
    assert catalog.resolve(40, {}) == {"model_type": "81", "overlap": "2", "extract_type": "0"}
    assert catalog.resolve(17, {}) == {"model_type": "0"}  # default_key null -> first option


def test_resolve_default_not_runnable_falls_back_to_the_first_runnable_key(catalog: Catalog) -> None:
    assert catalog.resolve(55, {"add_opt1": ""}) == {"model_type": DSP_CENTRE_KEY}
    restricted = Catalog.load({40: {"add_opt1": ["172", "171"]}})
    assert restricted.resolve(40, {})["model_type"] == "171"  # stored option order, not the spec's order
    # An explicit, valid but not runnable key is kept: unavailable_reason() explains it.
    assert catalog.resolve(55, {"add_opt1": "1"}) == {"model_type": "1"}


def test_resolve_rejects_unknown_keys_with_a_clear_message(catalog: Catalog) -> None:
    with pytest.raises(OptionError) as caught:
        catalog.resolve(55, {"add_opt1": "99"})
    assert str(caught.value) == "Invalid value '99' for add_opt1 (model_type). Valid keys: 0, 1, 2, dsp"
    with pytest.raises(OptionError):
        catalog.resolve(999, {})


def test_resolve_strips_values(catalog: Catalog) -> None:
    assert catalog.resolve(20, {"add_opt1": " 2 "}) == {"model_type": "2"}


def test_resolve_text_fields(catalog: Catalog) -> None:
    resolved = catalog.resolve(120, {"add_opt1": "  Hello there.\nSecond line  ", "add_opt3": "german"})
    assert resolved == {"text": "Hello there.\nSecond line", "ref_text": "", "language": "german", "extract_type": "0"}
    assert catalog.resolve(118, {"add_opt1": "Hi"}) == {
        "text": "Hi",
        "speaker": "ryan",
        "language": "auto",
        "instruct": "",
    }
    assert catalog.resolve(119, {"add_opt1": "Hi", "add_opt2": "A calm old man"})["instruct"] == "A calm old man"
    catalog.resolve(103, {"add_opt2": "x" * MAX_TEXT_CHARS})
    with pytest.raises(OptionError, match="too long"):
        catalog.resolve(103, {"add_opt2": "x" * (MAX_TEXT_CHARS + 1)})
    with pytest.raises(OptionError, match="required"):
        catalog.resolve(115, {"add_opt1": "   "})


def test_resolve_fields_hidden_by_a_condition_take_their_default(catalog: Catalog) -> None:
    # 40 add_opt3 ("Set of stems") is shown only for model 171.
    assert catalog.resolve(40, {"add_opt1": "81", "add_opt3": "1"})["extract_type"] == "0"
    assert catalog.resolve(40, {"add_opt1": "81", "add_opt3": "junk"})["extract_type"] == "0"
    assert catalog.resolve(40, {"add_opt1": "171", "add_opt3": "1"})["extract_type"] == "1"
    with pytest.raises(OptionError):
        catalog.resolve(40, {"add_opt1": "171", "add_opt3": "junk"})
    # 123 add_opt2 (overlap) is hidden for model 163.
    assert catalog.resolve(123, {"add_opt1": "163", "add_opt2": "8"})["overlap"] == "2"
    assert catalog.resolve(123, {"add_opt1": "158", "add_opt2": "8"})["overlap"] == "8"


# ------------------------------------------------------------------------------------------------ outputs, prices


def test_output_labels_bs_roformer(catalog: Catalog) -> None:
    bs_roformer = catalog.get(40)
    assert bs_roformer is not None
    assert bs_roformer.output_labels(catalog.resolve(40, {})) == {"vocals": "Vocals", "other": "Other"}
    assert bs_roformer.output_labels({"model_type": "171"}) == {"vocals": "Vocals", "instrum": "Instrumental"}
    with_fullness = bs_roformer.output_labels({"model_type": "171", "extract_type": "1"})
    assert list(with_fullness) == [
        "vocals",
        "instrum",
        "vocals-fullness-level-1",
        "instrum-fullness-level-1",
        "vocals-fullness-level-2",
        "vocals-fullness-level-3",
    ]
    # extract_type is hidden for model 81, so its "add" override does not apply.
    assert bs_roformer.output_labels({"model_type": "81", "extract_type": "1"}) == {
        "vocals": "Vocals",
        "other": "Other",
    }


def test_output_labels_phantom_centre(catalog: Catalog) -> None:
    phantom = catalog.get(55)
    assert phantom is not None
    assert phantom.output_labels({"model_type": DSP_CENTRE_KEY}) == {"center": "Center", "wide": "Wide"}
    assert phantom.output_labels({"model_type": "0"}) == {"difference": "Difference", "similarity": "Similarity"}
    assert phantom.output_labels({"model_type": "1"}) == {"center": "Center", "wide": "Wide (sides)"}


def test_output_labels_demucs_variants(catalog: Catalog) -> None:
    demucs = catalog.get(20)
    assert demucs is not None
    four = {"bass": "Bass", "drums": "Drums", "instrumental": "Instrumental", "other": "Other", "vocals": "Vocals"}
    assert demucs.output_labels({"model_type": "1"}) == four
    assert demucs.output_labels({}) == four  # missing option -> its default ("1")
    assert demucs.output_labels({"model_type": "2"}) == {**four, "guitar": "Guitar", "piano": "Piano"}


def test_output_labels_fall_back_to_output_stems() -> None:
    element = copy.deepcopy(RAW_BY_SEP_TYPE[66])
    element["outputs"] = None
    element["output_variants"] = None
    assert Algorithm.from_element(element).output_labels({}) == {"acoustic-guitar": "Acoustic guitar", "other": "Other"}
    assert Catalog.load({68: None}).get(68).output_labels({}) == {"result": "Result"}  # type: ignore[union-attr]


def test_price_multiplier_follows_the_price_rules(catalog: Catalog) -> None:
    bs_roformer, melband, polarformer = catalog.get(40), catalog.get(48), catalog.get(123)
    assert bs_roformer and melband and polarformer
    assert bs_roformer.price_multiplier({}) == 1.0
    assert bs_roformer.price_multiplier({"add_opt2": "2"}) == 1.0
    assert bs_roformer.price_multiplier({"add_opt2": "8"}) == 2.0  # overlap 87.5 % doubles the price
    assert bs_roformer.price_multiplier({"add_opt1": "171", "add_opt2": "8"}) == 2.0
    assert melband.price_multiplier({"add_opt2": "8"}) == 1.5
    assert polarformer.price_multiplier({"add_opt1": "158", "add_opt2": "8"}) == 1.5
    assert polarformer.price_multiplier({"add_opt1": "163", "add_opt2": "8"}) == 1.0  # overlap hidden there


def test_premium_only_algorithms() -> None:
    catalog = Catalog.load({})
    assert [s for s in (26, 28, 30, 40) if catalog.get(s).premium_only] == [26, 28, 30]  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ availability


def test_unavailable_reason(catalog: Catalog) -> None:
    assert catalog.unavailable_reason(Choice.of(55, {"model_type": DSP_CENTRE_KEY})) is None
    assert catalog.unavailable_reason(Choice.of(68, {})) is None

    message = catalog.unavailable_reason(Choice.of(55, {"model_type": "1"}))
    assert message == (
        "Phantom Centre extraction with model_type=1 cannot run on this server: its model weights "
        "are not installed. Runnable here: model_type=dsp (Phantom Centre (DSP, no download))."
    )

    assert catalog.unavailable_reason(catalog.resolve(40, {})) == (
        "BS Roformer (vocals, instrumental) (sep_type 40) has no engine on this server yet."
    )
    assert catalog.unavailable_reason(Choice.of(999, {})) == "Separation type 999 does not exist."


def test_unavailable_reason_names_every_refused_option() -> None:
    catalog = Catalog.load({40: {"add_opt1": ["81"], "add_opt2": ["2"], "add_opt3": ["0"]}})
    assert catalog.unavailable_reason(Choice.of(40, {"model_type": "81", "overlap": "2", "extract_type": "0"})) is None
    message = catalog.unavailable_reason(Choice.of(40, {"model_type": "5", "overlap": "8", "extract_type": "1"}))
    assert message is not None
    # extract_type is hidden for model 5, so only the two visible refusals are named.
    assert message.startswith("BS Roformer (vocals, instrumental) with model_type=5, overlap=8 cannot run")
    assert "Runnable here: model_type=81 (ver 2025.07" in message
    assert "overlap=2 (50%)" in message
