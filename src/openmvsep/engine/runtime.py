"""What recipes run models with: the weights registry, the loaded-model cache, and how to run them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from openmvsep.engine.cache import ModelCache
from openmvsep.engine.config import ConfigError, load_config
from openmvsep.engine.weights import DEMUCS_BAG, WeightEntry, WeightsError, WeightsRegistry
from openmvsep.errors import UserError

if TYPE_CHECKING:  # torch is imported only where models run, not by the API process
    from openmvsep.engine.separator import LoadedModel


class ModelUnavailable(UserError):
    """A model a job needs cannot be loaded; the message is for the user and the admin."""


@dataclass
class Runtime:
    registry: WeightsRegistry
    cache: ModelCache = field(default_factory=lambda: ModelCache(2))
    device: str = "auto"
    precision: str = "fp32"  # engine.precision.CHOICES; the service passes its setting (default auto)
    batch_size: int = 0  # 0: automatic (separator.separate)
    auto_download: bool = False
    compile: bool = False  # torch.compile models as they load
    transkun_hop_seconds: float = 0.0  # Transkun's step between windows; 0: its configuration's own
    # Told (done, total) as each model pass runs (demix's callback); the worker sets it around the piece it runs.
    progress: Callable[[int, int], None] | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, recheck_seconds: float = 2.0, **kwargs) -> Runtime:
        return cls(WeightsRegistry.for_data_dir(data_dir, recheck_seconds=recheck_seconds), **kwargs)

    def can_load(self, entry: WeightEntry | None) -> bool:
        """Its weights are here, or will be fetched on first use."""
        return entry is not None and (
            self.registry.is_present(entry) or (self.auto_download and self.registry.downloadable(entry))
        )

    def can_serve(self, option: str) -> bool:
        self.registry.refresh()  # throttled: a few stats every recheck_seconds at most
        return self.can_load(self.registry.serving(option))

    def model_for(self, option: str) -> LoadedModel:
        self.registry.refresh()  # an entry pinned or added since this process started
        entry = self.registry.serving(option)
        if entry is None:
            raise ModelUnavailable(f"no model in the weights registry serves {option}")
        return self.load(entry)

    def weights_path(self, entry: WeightEntry) -> Path:
        """The entry's local file, fetched first when auto_download is on and checked against its pin, for the
        families that read their own files (Whisper)."""
        try:
            if not self.registry.is_present(entry) and self.auto_download:
                self.registry.download(entry)
            if entry.sha256:
                self.registry.verify(entry)
            return self.registry.require(entry)
        except (WeightsError, OSError) as e:
            raise ModelUnavailable(f"the model {entry.name} cannot be loaded: {e}") from e

    def load(self, entry: WeightEntry) -> LoadedModel:
        return self.cache.get(self._cache_key(entry), lambda: self._load(entry))

    @staticmethod
    def _cache_key(entry: WeightEntry) -> tuple:
        """Entries naming the same file with the same config are one model (the Mega 53-stem serves 126 and, as a
        labelled substitute, the single-instrument sep_types): it is loaded and kept once. A bag, whose members
        are its files, stays keyed by its name."""
        if entry.model_type == DEMUCS_BAG:
            return (DEMUCS_BAG, entry.name)
        return (entry.model_type, str(entry.config), entry.filename, entry.sha256)

    def _load(self, entry: WeightEntry) -> LoadedModel:
        from openmvsep.engine.checkpoints import CheckpointError
        from openmvsep.engine.separator import load_demucs, load_demucs_bag, load_model

        try:
            if entry.model_type == DEMUCS_BAG:
                members = {}
                for signature, member in self.registry.members(entry).items():
                    if not self.registry.is_present(member) and self.auto_download:
                        self.registry.download(member)
                    members[signature] = (self.registry.require(member), member.sha256)
                return load_demucs_bag(entry.config, members, device=self.device)
            path = self.registry.path(entry)
            if not path.is_file() and self.auto_download:
                self.registry.download(entry)
            path = self.registry.require(entry)
            if entry.model_type == "demucs":  # a whole demucs package: the file carries its own architecture
                return load_demucs(path, sha256=entry.sha256, device=self.device)
            cache_dir = self.registry.weights_dir / "safetensors-cache"
            return load_model(
                entry.model_type,
                load_config(entry.config),
                path,
                sha256=entry.sha256,
                device=self.device,
                cache_dir=cache_dir,
                compile=self.compile,
            )
        except (WeightsError, CheckpointError, ConfigError, OSError) as e:
            raise ModelUnavailable(f"the model {entry.name} cannot be loaded: {e}") from e
