"""The weights registry and checkpoint loading: downloads that resume and verify, pins, clear errors."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from openmvsep.engine.checkpoints import CheckpointError, apply_state_dict, load_state_dict
from openmvsep.engine.weights import WeightsError, WeightsRegistry, pin_entry


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_after: int | None = None  # serve only this many bytes of the first full request, then drop it
    requests: list[str | None] = []

    def do_GET(self):
        body = self.files.get(self.path)
        type(self).requests.append(self.headers.get("Range"))
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if not rng and type(self).cut_after is not None:
            self.wfile.write(body[: type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files, _Files.cut_after, _Files.requests = {}, None, []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files
    httpd.shutdown()


def write_registry(path: Path, url: str, sha: str | None, filename: str = "tiny.ckpt") -> Path:
    path.write_text(
        f"""
- name: tiny
  serves: ["40:999"]
  model_type: bs_roformer
  config: /nowhere/config.yaml
  urls: ["{url}"]
  filename: {filename}
"""
        + (f'  sha256: "{sha}"\n' if sha else "")
    )
    return path


def test_download_resumes_and_verifies(tmp_path, server):
    base, handler = server
    payload = bytes(range(256)) * 4000
    handler.files["/tiny.ckpt"] = payload
    handler.cut_after = 300_000
    sha = hashlib.sha256(payload).hexdigest()
    registry = WeightsRegistry(tmp_path / "w", [write_registry(tmp_path / "m.yaml", f"{base}/tiny.ckpt", sha)])
    entry = registry.get("tiny")
    with pytest.raises(WeightsError):  # the connection drops mid-file
        registry.download(entry)
    part = tmp_path / "w" / "tiny.ckpt.part"
    assert part.is_file() and 0 < part.stat().st_size < len(payload)
    assert not registry.is_present(entry)
    seen = []
    path = registry.download(entry, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == payload and not part.exists()
    assert handler.requests[-1] == "bytes=300000-"  # resumed where the first try stopped
    assert seen[-1] == (len(payload), len(payload))
    assert registry.verify(entry) == sha
    assert registry.serving("40:999") == entry and entry in registry.select("40")


def test_wrong_hash_download_is_removed(tmp_path, server):
    base, handler = server
    handler.files["/tiny.ckpt"] = b"not the pinned file"
    registry = WeightsRegistry(tmp_path / "w", [write_registry(tmp_path / "m.yaml", f"{base}/tiny.ckpt", "0" * 64)])
    with pytest.raises(WeightsError, match="does not match its sha256"):
        registry.download(registry.get("tiny"))
    assert list((tmp_path / "w").iterdir()) == []


def test_missing_weights_name_the_command(tmp_path):
    registry = WeightsRegistry(tmp_path / "w", [write_registry(tmp_path / "m.yaml", "http://127.0.0.1:9/x", None)])
    with pytest.raises(WeightsError, match="openmvsep models download tiny"):
        registry.require(registry.get("tiny"))


def test_an_option_is_served_by_an_entry_whose_file_is_here(tmp_path):
    """Several entries may serve one option (a shipped model and an admin's own under a shipped name): the one whose
    file is present serves it, whatever their order; with none present, the admin's is named for download."""
    import yaml

    entries = [
        {"name": name, "serves": ["40:4"], "model_type": "bs_roformer", "config": "c.yaml", "filename": f"{name}.ckpt"}
        for name in ("first", "second")
    ]
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump(entries))
    registry = WeightsRegistry(tmp_path / "w", [models])
    assert registry.serving("40:4").name == "second"  # the last listed comes first
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "first.ckpt").write_bytes(b"x")
    assert registry.serving("40:4").name == "first"


def test_pin_records_hash_in_admin_file(tmp_path, server):
    base, handler = server
    handler.files["/tiny.ckpt"] = b"payload"
    models = write_registry(tmp_path / "models.yaml", f"{base}/tiny.ckpt", None)
    registry = WeightsRegistry(tmp_path / "w", [models])
    path = registry.download(registry.get("tiny"))
    digest = pin_entry(models, registry.get("tiny"), path)
    assert (
        WeightsRegistry(tmp_path / "w", [models]).get("tiny").sha256 == digest == hashlib.sha256(b"payload").hexdigest()
    )


def test_builtin_registry_entries_have_configs():
    registry = WeightsRegistry(Path("/nonexistent"))
    assert registry.get("bs_roformer_viperx_1297").sha256
    for entry in registry.entries.values():
        # demucs packages and Whisper checkpoints carry their own architecture
        assert entry.model_type in ("demucs", "whisper") or entry.config.is_file(), entry.name


def _tiny_state(tmp_path: Path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, ckpt)
    return model, ckpt, hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_pickled_checkpoint_needs_a_pin_and_is_cached(tmp_path):
    model, ckpt, sha = _tiny_state(tmp_path)
    with pytest.raises(CheckpointError, match="pinned"):
        load_state_dict(ckpt)
    with pytest.raises(CheckpointError, match="does not match"):
        load_state_dict(ckpt, sha256="f" * 64)
    tensors = load_state_dict(ckpt, sha256=sha, cache_dir=tmp_path / "cache")
    assert set(tensors) == {"0.weight", "0.bias"}  # unwrapped from state_dict
    assert (tmp_path / "cache" / f"{sha}.safetensors").is_file()
    ckpt.unlink()
    ckpt.write_bytes(b"")  # even with the original gone bad, the cache serves the pinned hash
    assert set(load_state_dict(ckpt, sha256=sha, cache_dir=tmp_path / "cache")) == {"0.weight", "0.bias"}


def test_corrupt_truncated_and_wrong_architecture(tmp_path):
    model, ckpt, sha = _tiny_state(tmp_path)
    truncated = tmp_path / "t.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state_dict(truncated, sha256=hashlib.sha256(truncated.read_bytes()).hexdigest())
    bad_st = tmp_path / "b.safetensors"
    bad_st.write_bytes(b"\x00" * 50)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict(bad_st)
    other = torch.nn.Sequential(torch.nn.Linear(4, 2))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        apply_state_dict(other, load_state_dict(ckpt, sha256=sha), "m.ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        apply_state_dict(
            torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)),
            load_state_dict(ckpt, sha256=sha),
            "m.ckpt",
        )
