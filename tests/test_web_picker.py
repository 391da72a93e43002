"""The algorithm picker beyond what runs here, without a browser: options the catalog keeps for registered users
(`registered_only_keys`) are shown disabled, "register to use", to a visitor who is not logged in, and create
refuses them without an account, through the page and the API alike; an admin sees the command that installs a
not-runnable algorithm's best public model beside it, on the Separate page and the Algorithms page."""

from __future__ import annotations

import copy
import json
import re

import pytest

from openmvsep.service import accounts
from openmvsep.service import catalog as catalog_module
from openmvsep.service.catalog import Algorithm, Catalog
from openmvsep.store.models import Job
from openmvsep.web import picker
from webpage import PASSWORD, csrf_of, register

from conftest import Harness, make_settings, stereo_mix, wav_bytes

MODELS = 40  # a sep_type with many model_type keys, for the picker-only cases


def with_registered_only(sep_type: int, field_name: str, keys: object) -> tuple[Algorithm, ...]:
    """The shipped catalog with `registered_only_keys` of one field set to `keys` (as MVSep's JSON-in-a-string
    columns are stored), since no field of the 2026 dump has any."""
    out = []
    for algorithm in catalog_module.all_algorithms():
        if algorithm.render_id == sep_type:
            raw = copy.deepcopy(algorithm.raw)
            for f in raw["algorithm_fields"]:
                if f["name"] == field_name:
                    f["registered_only_keys"] = json.dumps(keys)
            algorithm = Algorithm.from_element(raw)
        out.append(algorithm)
    return tuple(out)


@pytest.mark.parametrize(
    "stored,keys",
    [
        (None, set()),
        ('["2", "5"]', {"2", "5"}),
        (["2", 5], {"2", "5"}),
        ('{"3": true}', {"3"}),
        ("7", {"7"}),
        ("not json", set()),
        ({"nested": {"x": 1}}, {"nested"}),
    ],
)
def test_registered_only_keys_are_read_in_every_shape_json_allows(stored, keys):
    assert catalog_module._registered_only_keys(stored) == keys


def test_the_shipped_catalog_keeps_no_key_for_registered_users():
    """Nothing changes for today's data: no field of the dump or the extras names a registered-only key."""
    assert not [f for a in catalog_module.all_algorithms() for f in a.fields if f.registered_only]


def test_a_visitor_not_logged_in_sees_registered_only_keys_disabled_and_moved_off_them():
    field = next(
        f for a in catalog_module.all_algorithms() if a.render_id == MODELS for f in a.fields if f.name == "add_opt1"
    )
    default = field.fallback_key
    algorithms = with_registered_only(MODELS, "add_opt1", [default])
    catalog = Catalog({MODELS: None}, algorithms)  # everything of it runs here
    algorithm = catalog.get(MODELS)

    anonymous = {f.name: f for f in picker.fields(catalog, algorithm, {}, registered=False)}["add_opt1"]
    marked = {o.key: o.why_not for o in anonymous.options}
    assert marked[default] == picker.REGISTER_TO_USE
    assert all(why is None for key, why in marked.items() if key != default)
    assert anonymous.value != default and anonymous.value == next(k for k in field.options if k != default)

    member = {f.name: f for f in picker.fields(catalog, algorithm, {}, registered=True)}["add_opt1"]
    assert all(o.why_not is None for o in member.options) and member.value == catalog.default_key(MODELS, field)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site whose sep_type 55 keeps its DSP option (the one that runs without weights) for registered users,
    and which takes jobs from visitors without an account."""
    algorithms = with_registered_only(55, "add_opt1", ["dsp"])
    monkeypatch.setattr(catalog_module, "_load_algorithms", lambda: algorithms)
    h = Harness(make_settings(tmp_path, anonymous_jobs=True), pages=True)
    yield h
    h.close()


def jobs(h: Harness) -> int:
    with h.ctx.db.reader() as s:
        return s.query(Job).count()


def test_the_fields_say_register_to_use_to_a_visitor_and_nothing_to_a_member(site):
    anonymous = site.client.get("/web/separate/fields", params={"sep_type": 55}).text
    assert re.search(
        r'<option value="dsp"[^>]* disabled>Phantom Centre \(DSP, no download\) \(register to use\)<', anonymous
    )
    assert "(register to use)" in site.client.get("/?sep_type=55").text
    register(site)
    member = site.client.get("/web/separate/fields", params={"sep_type": 55}).text
    assert re.search(r'<option value="dsp" selected>Phantom Centre \(DSP, no download\)</option>', member)
    assert "register to use" not in member


def test_create_refuses_a_registered_only_key_without_an_account_and_makes_nothing(site):
    audio = wav_bytes(stereo_mix(1.0))
    form = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1"}
    csrf = csrf_of(site.client.get("/").text)
    page = site.client.post(
        "/web/separate",
        data=form,
        files={"audiofile": ("song.wav", audio, "audio/wav")},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    api = site.create(None, audio, **form)
    message = "Model type: 'Phantom Centre (DSP, no download)' is for registered users only."
    assert page.status_code == api["status"] == 400
    assert page.json()["data"]["message"].startswith(message) and api["data"]["message"].startswith(message)
    assert "Register (or log in) to use it" in api["data"]["message"]
    assert jobs(site) == 0

    token = site.user("member@example.com")
    made = site.create(token, audio, **form)
    assert made["success"] is True and jobs(site) == 1


# ------------------------------------------------------------------------------------------------ admins


@pytest.fixture
def admin_site(tmp_path):
    h = Harness(make_settings(tmp_path), pages=True)
    with h.ctx.db.session() as s:
        accounts.create_user(s, email="root@example.com", password=PASSWORD)
    h.ctx.accounts.set_admin("root@example.com", True)
    yield h
    h.close()


def log_in(h: Harness, email: str) -> None:
    data = {"csrf_token": csrf_of(h.client.get("/login").text), "email": email, "password": PASSWORD}
    assert h.client.post("/login", data=data, follow_redirects=False).status_code == 303


def not_runnable(h: Harness) -> tuple[int, int | None]:
    """A not-runnable sep_type with a public model in the registry, and one without (None if every one has)."""
    missing = [a.sep_type for g in picker.groups(h.ctx.catalog) for a in g.algorithms if not a.runnable]
    commands = {s: h.ctx.weights_admin.install_command(s) for s in missing}
    installable = next(s for s, c in commands.items() if c)
    return installable, next((s for s, c in commands.items() if c is None), None)


def test_an_admin_sees_the_install_command_beside_an_algorithm_that_does_not_run(admin_site):
    installable, unserved = not_runnable(admin_site)
    command = f"openmvsep models download --sep-type {installable}"
    register(admin_site, "ann@example.com")  # not an admin: the reason, never the command
    assert "openmvsep models download" not in admin_site.client.get("/algorithms").text
    fields = admin_site.client.get("/web/separate/fields", params={"sep_type": installable}).text
    assert 'role="alert"' in fields and "openmvsep models download" not in fields
    admin_site.client.cookies.clear()

    log_in(admin_site, "root@example.com")
    page = admin_site.client.get("/algorithms").text
    item = re.search(rf'<li data-sep-type="{installable}" data-runnable="0">.*?</li>', page, re.S).group(0)
    assert f"<code>{command}</code>" in item
    assert not re.search(r'data-runnable="1">(?:(?!</li>).)*openmvsep models download', page, re.S)
    if unserved is not None:
        item = re.search(rf'<li data-sep-type="{unserved}" data-runnable="0">.*?</li>', page, re.S).group(0)
        assert "No public model for it is in the weights registry" in item and "<code>" not in item
    fields = admin_site.client.get("/web/separate/fields", params={"sep_type": installable}).text
    assert f"<code>{command}</code>" in fields
    assert "openmvsep models download" not in admin_site.client.get("/web/separate/fields?sep_type=55").text
    assert 'id="install-note"' in admin_site.client.get("/").text
