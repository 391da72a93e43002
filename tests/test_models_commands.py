"""`openmvsep models coverage`, `models list` and `models download --sep-type`, and weights that a running server
sees without a restart."""

from __future__ import annotations

import hashlib
import http.server
import importlib.resources
import json
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openmvsep.cli import app

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "engine"
USAGE = {
    element["render_id"]: int(element.get("usage") or 0)
    for name in ("algorithms-2026.json", "extra_algorithms.json")
    for element in json.loads((importlib.resources.files("openmvsep") / "catalog_data" / name).read_text("utf-8"))
}


def register(data_dir: Path, entries: list[dict], files: dict[str, bytes]) -> None:
    (data_dir / "weights").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (data_dir / "weights" / name).write_bytes(content)
    (data_dir / "models.yaml").write_text(yaml.safe_dump(entries))


def cli(data_dir: Path, *args: str, columns: int = 200):
    result = CliRunner().invoke(app, list(args), env={"OPENMVSEP_DATA_DIR": str(data_dir), "COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result


def coverage(data_dir: Path) -> dict:
    out = cli(data_dir, "models", "coverage", "--json").stdout
    return json.loads(out[out.index("{") :])


def groups(report: dict) -> dict[int, str]:
    return {row["sep_type"]: row["group"] for row in report["sep_types"]}


def test_coverage_on_a_fresh_install(tmp_path):
    report = coverage(tmp_path / "data")
    by = groups(report)
    assert {by[55], by[68], by[113], by[114]} == {"exact"}  # no download: DSP, Matchering and two wheels' models
    assert report["totals"]["exact"]["sep_types"] >= 4
    assert by[40] == by[25] == "download"  # the shipped registry can fetch their public models
    assert by[35] == "none"  # MVSep's own MelBand model: no public checkpoint
    assert len(by) == len(USAGE) and sum(t["sep_types"] for t in report["totals"].values()) == len(USAGE)
    assert report["usage_total"] == sum(USAGE.values())
    assert sum(t["usage_share"] for t in report["totals"].values()) == pytest.approx(1.0)


def test_coverage_tells_exact_models_from_labelled_substitutes(tmp_path):
    data = tmp_path / "data"
    bs = str(FIXTURES / "bs_roformer" / "config.yaml")
    register(
        data,
        [
            {"name": "vocals", "serves": ["40:4"], "model_type": "bs_roformer", "config": bs, "filename": "v.bin"},
            {
                "name": "public_crowd_stand_in",
                "serves": ["34:0", "34:1"],
                "model_type": "bs_roformer",
                "config": bs,
                "filename": "c.bin",
                "substitute": True,
            },
        ],
        {"v.bin": b"x", "c.bin": b"x"},
    )
    report = coverage(data)
    by = groups(report)
    assert (by[40], by[34], by[55], by[68], by[25]) == ("exact", "substitute", "exact", "exact", "download")
    row = next(r for r in report["sep_types"] if r["sep_type"] == 34)
    assert row["runnable_keys"] == ["0", "1"]
    exact = report["totals"]["exact"]
    assert exact["usage"] == sum(USAGE[s] for s, g in by.items() if g == "exact")
    assert exact["usage_share"] == pytest.approx(exact["usage"] / sum(USAGE.values()))
    assert report["totals"]["substitute"] == {
        "sep_types": 1,
        "usage": USAGE[34],
        "usage_share": pytest.approx(USAGE[34] / sum(USAGE.values())),
    }
    text = cli(data, "models", "coverage", columns=200).stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "substitute" in text and "share of usage" in text


def test_models_list_fits_80_columns_and_has_json(tmp_path):
    data = tmp_path / "data"
    register(
        data,
        [
            {
                "name": "a_rather_long_registry_entry_name_for_a_model_with_many_options",
                "serves": [f"40:{k}" for k in ("3", "4", "5", "29", "85", "142")],
                "model_type": "bs_roformer",
                "filename": "long.bin",
                "licence": "MIT",
            }
        ],
        {"long.bin": b"x"},
    )
    text = cli(data, "models", "list", columns=200).stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    rows = json.loads(cli(data, "models", "list", "--json").stdout)
    mine = next(r for r in rows if r["name"].startswith("a_rather_long"))
    assert mine["present"] is True and mine["licence"] == "MIT" and len(mine["serves"]) == 6


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    asked: list[str] = []

    def do_GET(self):
        type(self).asked.append(self.path)
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def files_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files, _Files.asked = {}, []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files
    httpd.shutdown()


def test_download_by_sep_type_fetches_its_best_public_model(tmp_path, files_server):
    url, handler = files_server
    body = b"tiny weights"
    handler.files = {"/best.bin": body, "/other.bin": b"other"}
    data = tmp_path / "data"
    entry = {"model_type": "bs_roformer", "serves": ["47:0"]}
    register(
        data,
        [
            {**entry, "name": "plain", "urls": [f"{url}/other.bin"], "sdr": 20.0},
            {
                **entry,
                "name": "best",
                "serves": ["47:1"],
                "urls": [f"{url}/best.bin"],
                "rank": 1,
                "sha256": hashlib.sha256(body).hexdigest(),
            },
        ],
        {},
    )
    out = cli(data, "models", "download", "--sep-type", "47")
    assert (data / "weights" / "best.bin").read_bytes() == body, out.output
    assert handler.asked == ["/best.bin"]  # the higher rank wins over the higher SDR; nothing else is fetched
    result = CliRunner().invoke(app, ["models", "download", "--sep-type", "35"], env={"OPENMVSEP_DATA_DIR": str(data)})
    assert result.exit_code == 1 and "no public model in the weights registry serves sep_type 35" in result.output


def test_a_running_server_sees_new_weights_without_a_restart(make_harness, tmp_path):
    h = make_harness(weights_recheck_seconds=0)
    data = tmp_path / "h0" / "data"

    def forty() -> dict:
        return next(a for a in h.client.get("/api/app/algorithms").json() if a["render_id"] == 40)

    assert forty()["is_available"] is False
    # what `openmvsep models download` leaves behind: an entry (pinned by --pin) and its file renamed into place
    register(
        data,
        [{"name": "v", "serves": ["40:4"], "model_type": "bs_roformer", "filename": "v.bin", "sha256": "ab" * 32}],
        {"v.bin": b"x"},
    )
    element = forty()
    assert element["is_available"] is True
    assert element["algorithm_fields"][0]["available_keys"] == ["4"]
    assert h.worker.runtime.can_serve("40:4")  # the worker's registry read the new entry too
    (data / "weights" / "v.bin").unlink()
    assert forty()["is_available"] is False
