"""Recipes: what running one catalog algorithm (sep_type + chosen options) means for the engine.

A recipe takes decoded inputs and returns named outputs in the model's native order: stems (audio arrays, which
the runner encodes in the job's output format) or finished documents (MIDI, text), stored as they are. The
service asks which sep_types and option keys this server can run (`runnable_map`); the runner calls `run`. Neural
recipes find their model through the weights registry (catalog option `SEP_TYPE:KEY` -> checkpoint), so an option
becomes runnable as soon as its weights are present.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from openmvsep.algorithms.choice import Choice
from openmvsep.engine.documents import Document
from openmvsep.engine.runtime import ModelUnavailable, Runtime

if TYPE_CHECKING:  # torch is imported only where models run, not by the API process
    from openmvsep.engine.separator import LoadedModel

Stems = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray | Document]  # stems, and documents where a recipe's output is not audio
# (inputs by role as (channels, frames) float32, their common sample rate, the choice, runtime) -> (outputs, rate)
RunFn = Callable[[dict[str, np.ndarray], int, Choice, Runtime], tuple[Outputs, int]]

DSP_CENTRE_KEY = "dsp"
MODEL_RATE = 44100  # every public checkpoint in the registry works at 44.1 kHz


@dataclass(frozen=True)
class Recipe:
    sep_type: int
    run: RunFn
    # field name -> option keys this recipe handles; None: every option of every field.
    # A callable computes them from the runtime (which weights are present).
    runnable: Mapping[str, Collection[str]] | Callable[[Runtime], Mapping[str, Collection[str]] | None] | None = None
    inputs: tuple[str, ...] = ("audiofile",)
    # whether a long input may be cut into chunks processed independently and crossfaded back together
    chunkable: bool = True
    # rate the inputs are decoded at; None keeps the (first) input's own rate
    sample_rate: int | None = None
    # the choice -> output keys in order, known before running (used to name files)
    stems: Callable[[Choice], list[str]] = field(default=lambda _choice: [])


def _phantom_centre(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, _rt: Runtime):
    from openmvsep.engine.phantom_centre import extract_centre

    return extract_centre(inputs["audiofile"], rate), rate


def _matchering(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, _rt: Runtime):
    from openmvsep.engine.mastering import match_master

    return match_master(inputs["target_audiofile"], rate, inputs["reference_audiofile"], rate)


def _load(runtime: Runtime, model: str) -> LoadedModel:
    """`model` is a registry entry name, or a label a registry entry serves: a catalog option ('40:4'), or a bare
    sep_type ('63:') for one whose options do not choose the model."""
    if model in runtime.registry.entries:
        return runtime.load(runtime.registry.get(model))
    return runtime.model_for(model)


def _separate(runtime: Runtime, loaded: LoadedModel, mix: np.ndarray, num_overlap: int | None = None) -> Stems:
    """The model's own stems."""
    from openmvsep.engine.separator import separate

    return separate(
        loaded,
        mix,
        batch_size=runtime.batch_size,
        precision=runtime.precision,
        num_overlap=num_overlap,
        residual=False,
        progress=runtime.progress,
    )


def _stem(
    runtime: Runtime, model: str, mix: np.ndarray, keep: str | None = None, num_overlap: int | None = None
) -> np.ndarray:
    """One stem of a model: `keep`, or else the model's training target (its first stem when it has none)."""
    loaded = _load(runtime, model)
    stems = _separate(runtime, loaded, mix, num_overlap)
    return _pick(loaded, stems, mix, keep or loaded.target or loaded.stems[0])


def _pick(loaded: LoadedModel, stems: Stems, mix: np.ndarray, name: str) -> np.ndarray:
    """The stem `name` of a model's output, whatever its case (published configs say 'Vocals' or 'vocals'). A model
    that outputs only its training target (an instrumental model, when the recipe wants the vocals) gives the other
    of its two instruments as the input minus that target, as MVSep does for such models."""
    by_case = {stem.lower(): stem for stem in stems}
    if name.lower() in by_case:
        return stems[by_case[name.lower()]]
    instruments = [str(i).lower() for i in loaded.config.training.instruments]
    if loaded.target and list(stems) == [loaded.target] and len(instruments) == 2 and name.lower() in instruments:
        return mix - stems[loaded.target]
    raise ValueError(f"the model gives {sorted(stems)}, not {name!r}")


def _by_name(stems: Stems) -> Stems:
    """A model's stems, also under their lower-case names: configs spell them as their authors did ("Kick",
    "Vocals"); MVSep's stem keys are lower case."""
    return {**{name.lower(): data for name, data in stems.items()}, **stems}


def _all_loadable(runtime: Runtime, names: Iterable[str]) -> bool:
    return all(runtime.can_load(runtime.registry.entries.get(n)) for n in names)


OVERLAPS = {"2": 2, "8": 8}  # MVSep's overlap option keys: 50 % and 87.5 %
# Public vocal models that can extract vocals for another model, best Multisong vocals SDR first
# (ENGINES.md §a: Kim's Mel-RoFormer 10.98, viperx BS-RoFormer 10.87, MDX23C 10.17).
VOCAL_EXTRACTORS = ("48:0", "40:4", "25:4")


@dataclass(frozen=True)
class ExtractFirst:
    """An option that first splits the mix into vocals and the rest with a vocal model ('Extract vocals first');
    the recipe's model then runs on one of the two. MVSep also returns both sides and the mix rebuilt with the
    processed side (e.g. the de-reverbed vocals plus the instrumental)."""

    field_name: str  # the catalog field (add_optN) holding the choice
    server_key: str  # the same field's key in a job's options
    key: str  # the option key that asks for the extraction
    plain: tuple[str, ...]  # the field's other keys (run on the mix as it is)
    extractors: tuple[str, ...] = VOCAL_EXTRACTORS  # catalog options that extract the vocals, preferred first
    on_rest: bool = False  # run on what is left (the instrumental) rather than on the vocals
    names: tuple[str, str, str] = ("vocals", "instrum", "restored")  # the vocals, the rest, the rebuilt mix

    def wanted(self, choice: Choice) -> bool:
        return choice.get(self.server_key) == self.key

    def extractor(self, runtime: Runtime) -> str | None:
        return next((option for option in self.extractors if runtime.can_serve(option)), None)

    def runnable_keys(self, runtime: Runtime) -> list[str]:
        """The field's keys this server can run: the plain ones always, the extracting one with a vocal model."""
        return [*self.plain, *([self.key] if self.extractor(runtime) is not None else [])]

    def split(self, runtime: Runtime, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray, Stems]:
        """(what the recipe's model runs on, the other side, both sides under MVSep's names)."""
        extractor = self.extractor(runtime)
        if extractor is None:
            raise ModelUnavailable("no vocal model is installed to extract the vocals first")
        vocals = _stem(runtime, extractor, mix, "vocals")
        rest = mix - vocals
        source, other = (rest, vocals) if self.on_rest else (vocals, rest)
        return source, other, {self.names[0]: vocals, self.names[1]: rest}


def two_stem_recipe(
    sep_type: int,
    names: tuple[str, str],
    *,
    keep: str | None = None,
    overlap: bool = False,
    extract_first: ExtractFirst | None = None,
    model: str | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
    names_by_key: Mapping[str, tuple[str, str]] | None = None,
) -> Recipe:
    """MVSep's "target and the rest": one stem of the chosen model (`keep`, default the model's target) and the
    input minus that stem, named `names`.

    `model`: the registry label of the one model of a sep_type whose options do not choose it (default: the
    add_opt1 option, 'SEP_TYPE:KEY'). `only`: other fields limited to these keys (options this recipe does not
    implement, such as "include results of independent models", are not offered). `names_by_key`: add_opt1 keys
    whose two stems MVSep names otherwise."""

    def named(choice: Choice) -> tuple[str, str]:
        return (names_by_key or {}).get(choice.get("model_type", ""), names)

    def extracting(choice: Choice) -> bool:
        return extract_first is not None and extract_first.wanted(choice)

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        source, untouched, sides = (
            extract_first.split(runtime, mix)
            if extract_first is not None and extracting(choice)  # extracting() checks it too; mypy needs it here
            else (mix, None, {})
        )
        target = _stem(
            runtime,
            model or choice.option("model_type"),
            source,
            keep,
            OVERLAPS.get(choice.get("overlap", "")) if overlap else None,
        )
        first, second = named(choice)
        out = {first: target, second: source - target, **sides}
        if extract_first and untouched is not None:
            out[extract_first.names[2]] = target + untouched
        return out, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]] | None:
        if model is not None and not runtime.can_serve(model):
            return None
        spec: dict[str, Collection[str]] = {} if model is not None else dict(_model_keys(sep_type)(runtime))
        spec.update(only or {})
        if extract_first:
            spec[extract_first.field_name] = extract_first.runnable_keys(runtime)
        return spec

    return Recipe(
        sep_type,
        run,
        runnable=runnable,
        sample_rate=MODEL_RATE,
        stems=lambda choice: [
            *named(choice),
            *(extract_first.names if extract_first is not None and extracting(choice) else ()),
        ],
    )


def single_model_recipe(sep_type: int, names: tuple[str, str], *, keep: str | None = None) -> Recipe:
    """An algorithm without options (its one model serves `SEP_TYPE:`): `keep` (default the model's target) and
    the input minus it, named `names`."""
    option = f"{sep_type}:"

    def run(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        target = _stem(runtime, option, mix, keep)
        return {names[0]: target, names[1]: mix - target}, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]] | None:
        return {} if runtime.can_serve(option) else None  # {}: the whole algorithm runs

    return Recipe(sep_type, run, runnable=runnable, sample_rate=MODEL_RATE, stems=lambda _choice: list(names))


# Models that give the drums for "Apply Drums model before", best drums SDR first (MSST's Multisong figures:
# htdemucs_ft's drums member 11.13, htdemucs 10.88, htdemucs_6s 10.22). Registry names or catalog options.
DRUM_EXTRACTORS = ("htdemucs_ft_drums", "20:1", "20:2")


def drumsep_recipe(sep_type: int, stems: Mapping[str, Sequence[str]]) -> Recipe:
    """DrumSep: the chosen model splits drums into their parts (`stems`: option key -> MVSep's names of them, in
    the model's order). With extract_type "0" a drums model first takes the drums out of the mix ("drums", MVSep's
    "Drums (full)"); "1" runs on the input as it is. "residual" is what the parts leave of the drums."""

    def extractor(runtime: Runtime) -> str | None:
        def here(model: str) -> bool:
            return runtime.can_serve(model) if ":" in model else runtime.can_load(runtime.registry.entries.get(model))

        return next((model for model in DRUM_EXTRACTORS if here(model)), None)

    def extracting(choice: Choice) -> bool:
        return choice.get("extract_type", "0") == "0"

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        source, out = inputs["audiofile"], {}
        if extracting(choice):
            drums_model = extractor(runtime)
            if drums_model is None:
                raise ModelUnavailable("no drums model is installed to take the drums out first")
            source = out["drums"] = _stem(runtime, drums_model, source, "drums")
        parts = _by_name(_separate(runtime, _load(runtime, choice.option("model_type")), source))
        wanted = stems[choice.get("model_type", "")]
        missing = [s for s in wanted if s not in parts]
        if missing:
            raise ValueError(f"the model gives {sorted(parts)}, not {missing}")
        out.update({s: parts[s] for s in wanted})
        out["residual"] = source - np.sum([parts[s] for s in wanted], axis=0, dtype=np.float32)
        return out, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        served = _model_keys(sep_type)(runtime)["add_opt1"]
        return {
            "add_opt1": [key for key in stems if key in served],
            "add_opt2": ["1", *(["0"] if extractor(runtime) is not None else [])],
        }

    return Recipe(
        sep_type,
        run,
        runnable=runnable,
        sample_rate=MODEL_RATE,
        stems=lambda choice: [
            *(["drums"] if extracting(choice) else []),
            *stems.get(choice.get("model_type", ""), ()),
            "residual",
        ],
    )


def multistem_recipe(
    sep_type: int, stems: Mapping[str, Sequence[str]], specialists: Mapping[str, Mapping[str, str]] | None = None
) -> Recipe:
    """A model whose stems are the outputs, in the model's own order (demucs: drums, bass, other, vocals).

    `stems`: option key -> the stems it gives. `specialists`: option key -> stem -> registry entry, for options whose
    every stem comes from its own model (demucs' htdemucs_ft bag: one-hot weights take each stem from one member).
    """
    specialists = specialists or {}

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        mix, key = inputs["audiofile"], choice.get("model_type", "")
        wanted = stems[key]
        if key in specialists:
            return {s: _stem(runtime, specialists[key][s], mix, s) for s in wanted}, rate
        out = _separate(runtime, _load(runtime, choice.option("model_type")), mix)
        missing = [s for s in wanted if s not in out]
        if missing:
            raise ValueError(f"the model gives {sorted(out)}, not {missing}")
        return {s: out[s] for s in wanted}, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        served = _model_keys(sep_type)(runtime)["add_opt1"]
        bags = [key for key, members in specialists.items() if _all_loadable(runtime, members.values())]
        return {"add_opt1": [key for key in stems if key in served or key in bags]}

    return Recipe(
        sep_type,
        run,
        runnable=runnable,
        sample_rate=MODEL_RATE,
        stems=lambda choice: list(stems.get(choice.get("model_type", ""), ())),
    )


def ensemble_recipe(sep_type: int, members: Mapping[str, tuple[str, ...]]) -> Recipe:
    """MVSep's vocal ensembles: the vocals of each member model averaged in the wave domain."""

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        from openmvsep.engine.ensemble import ensemble

        mix = inputs["audiofile"]
        vocals = ensemble([_stem(runtime, name, mix, "vocals") for name in members[choice["model_type"]]], "avg_wave")
        return {"vocals": vocals, "instrumental": mix - vocals}, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        # add_opt1 "1" asks for each member's vocals and max/min_fft too, which MVSep does not name: not offered.
        return {"add_opt1": ["0"], "add_opt2": [key for key, names in members.items() if _all_loadable(runtime, names)]}

    return Recipe(
        sep_type, run, runnable=runnable, sample_rate=MODEL_RATE, stems=lambda _choice: ["vocals", "instrumental"]
    )


def all_stems_recipe(sep_type: int, names: Sequence[str], model_names: Mapping[str, str] | None = None):
    """A sep_type without options whose one model gives every output (63: BS-RoFormer SW, 126: Mega 53-stem): the
    stems under MVSep's `names`, in that order. `model_names`: MVSep name -> the model's stem where they differ.
    The model is the entry serving the label `SEP_TYPE:`, as for every sep_type without options."""
    model_names = model_names or {}
    model = f"{sep_type}:"

    def run(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        loaded = _load(runtime, model)
        out = _separate(runtime, loaded, mix)
        return {name: _pick(loaded, out, mix, model_names.get(name, name)) for name in names}, rate

    return Recipe(
        sep_type,
        run,
        runnable=lambda runtime: {} if runtime.can_serve(model) else None,
        sample_rate=MODEL_RATE,
        stems=lambda _choice: list(names),
    )


def mega_stem_recipe(sep_type: int, stem: str, name: str, model_key: str = "") -> Recipe:
    """One of MVSep's single-instrument separators, run by a labelled public substitute: the stem `stem` of the
    Mega 53-stem model (MVSep's output `name`) and the input minus it ("other").

    Its registry label is `SEP_TYPE:MODEL_KEY` (`model_key`: the model_type key it stands in for; "" where the
    sep_type has no model field). Only that stem's mask head runs (`active_stem_ids`), through a view of the
    cached model: the trunk is shared, the cached model itself is untouched for the other requests. The options
    that take the instrument from another stem first ("Extract from the wind part") and "include results of
    independent models" are not offered: only their plain keys are."""
    label = f"{sep_type}:{model_key}"

    def run(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        target = _separate(runtime, _single_stem(_load(runtime, label), stem), mix)[stem]
        return {name: target, "other": mix - target}, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]] | None:
        if not runtime.can_serve(label):
            return None
        spec: dict[str, Collection[str]] = {"add_opt1": [model_key]} if model_key else {}
        return {**PLAIN_KEYS.get(sep_type, {}), **spec}

    return Recipe(sep_type, run, runnable=runnable, sample_rate=MODEL_RATE, stems=lambda _choice: [name, "other"])


def _single_stem(loaded: LoadedModel, stem: str) -> LoadedModel:
    """A view of a multi-stem model that computes one stem (its mask head alone where the family allows it);
    the model object is shared, the LoadedModel in the cache is not changed."""
    if stem not in loaded.stems:
        raise ValueError(f"the model gives {sorted(loaded.stems)}, not {stem!r}")
    return replace(loaded, stems=[stem], target=stem)


def karaoke_recipe(sep_type: int, extract_first: ExtractFirst) -> Recipe:
    """MVSep Karaoke: the lead vocals (the karaoke model's target, or its first stem) and everything else. With
    "extract vocals first" the karaoke model runs on the vocals a vocal model extracts, which also gives the back
    vocals (those vocals minus the lead), the instrumental alone, and the full vocals."""

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        if not extract_first.wanted(choice):
            lead = _stem(runtime, choice.option("model_type"), mix)
            return {"vocals-lead": lead, "back-instrum": mix - lead}, rate
        vocals, instrumental, _ = extract_first.split(runtime, mix)
        lead = _stem(runtime, choice.option("model_type"), vocals)
        return {
            "vocals-lead": lead,
            "vocals-back": vocals - lead,
            "instrum-only": instrumental,
            "back-instrum": mix - lead,
            "vocals-full": vocals,
        }, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        return {
            **_model_keys(sep_type)(runtime),
            extract_first.field_name: extract_first.runnable_keys(runtime),
        }

    return Recipe(
        sep_type,
        run,
        runnable=runnable,
        sample_rate=MODEL_RATE,
        stems=lambda choice: (
            ["vocals-lead", "vocals-back", "instrum-only", "back-instrum", "vocals-full"]
            if extract_first.wanted(choice)
            else ["vocals-lead", "back-instrum"]
        ),
    )


def male_female_recipe(sep_type: int, extract_first: ExtractFirst) -> Recipe:
    """MVSep Male/Female: the model's two stems. With "extract vocals first" it runs on the vocals a vocal model
    extracts, and MVSep adds the vocals, the instrumental, and the instrumental with each voice."""

    def run(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
        mix = inputs["audiofile"]
        extracting = extract_first.wanted(choice)
        vocals, instrumental, _ = extract_first.split(runtime, mix) if extracting else (mix, None, {})
        loaded = _load(runtime, choice.option("model_type"))
        out = _separate(runtime, loaded, vocals)
        male, female = _pick(loaded, out, vocals, "male"), _pick(loaded, out, vocals, "female")
        if instrumental is None:
            return {"male": male, "female": female}, rate
        return {
            "male": male,
            "female": female,
            "vocals": vocals,
            "instrumental": instrumental,
            "instrumental-plus-male": instrumental + male,
            "instrumental-plus-female": instrumental + female,
        }, rate

    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        return {
            **_model_keys(sep_type)(runtime),
            extract_first.field_name: extract_first.runnable_keys(runtime),
        }

    return Recipe(
        sep_type,
        run,
        runnable=runnable,
        sample_rate=MODEL_RATE,
        stems=lambda choice: (
            ["male", "female", "vocals", "instrumental", "instrumental-plus-male", "instrumental-plus-female"]
            if extract_first.wanted(choice)
            else ["male", "female"]
        ),
    )


def _phantom_centre_or_model(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
    """55: openmvsep's own DSP key, or a public model (option 0: wesleyr36's MDX23C gives the similarity)."""
    if choice.get("model_type") == DSP_CENTRE_KEY:
        return _phantom_centre(inputs, rate, choice, runtime)
    import soxr

    mix = inputs["audiofile"]
    # The DSP runs at the input's rate (the recipe keeps it); the model at its own, and back.
    at_model = mix if rate == MODEL_RATE else soxr.resample(mix.T, rate, MODEL_RATE, quality="HQ").T
    similarity = _stem(runtime, choice.option("model_type"), np.ascontiguousarray(at_model), "similarity")
    if rate != MODEL_RATE:
        back = soxr.resample(similarity.T, MODEL_RATE, rate, quality="HQ").T
        similarity = np.zeros_like(mix)
        similarity[:, : min(back.shape[1], mix.shape[1])] = back[:, : mix.shape[1]]
    return {"similarity": similarity, "difference": mix - similarity}, rate


def _model_keys(sep_type: int) -> Callable[[Runtime], Mapping[str, Collection[str]]]:
    def runnable(runtime: Runtime) -> Mapping[str, Collection[str]]:
        keys = [
            s.split(":", 1)[1]
            for e in runtime.registry.entries.values()
            for s in e.serves
            if s.split(":", 1)[0] == str(sep_type)
        ]
        return {"add_opt1": [key for key in keys if runtime.can_serve(f"{sep_type}:{key}")]}

    return runnable


def _basic_pitch(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, runtime: Runtime):
    """Notes of any pitched instrument or voice, as MIDI (the model ships in the basic-pitch wheel)."""
    from openmvsep.engine.transcription import basic_pitch
    from openmvsep.engine.transcription.notes import midi_file

    path = basic_pitch.model_path()
    if path is None:
        raise ModelUnavailable(f"Basic Pitch is not installed: {BASIC_PITCH_FIX}")
    model = runtime.cache.get(("basic_pitch", str(path)), lambda: basic_pitch.BasicPitch(path))
    notes = model.transcribe(inputs["audiofile"].mean(axis=0))
    return {"midi": Document("mid", midi_file(notes, name="Basic Pitch"), label="MIDI")}, rate


def _transkun(inputs: dict[str, np.ndarray], rate: int, _choice: Choice, runtime: Runtime):
    """Piano notes, velocities included, as MIDI (the checkpoint ships in the transkun wheel)."""
    from openmvsep.engine.transcription import transkun
    from openmvsep.engine.transcription.notes import midi_file

    files = transkun.model_files()
    if files is None:
        raise ModelUnavailable(f"Transkun is not installed: {transkun.FIX}")
    hop = runtime.transkun_hop_seconds
    model = runtime.cache.get(
        ("transkun", str(files[0]), hop),
        lambda: transkun.Transkun(*files, device=runtime.device, hop_seconds=hop),
    )
    notes = model.transcribe(inputs["audiofile"])
    return {"midi": Document("mid", midi_file(notes, name="Transkun"), label="MIDI")}, rate


BASIC_PITCH_FIX = "pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime (`make install` does both)"
BASIC_PITCH_RATE = 22050  # the model's input rate
TRANSKUN_RATE = 44100  # the shipped configuration's rate
DIRECT = "0"  # 113's extract_type: transcribe the mixture as it is ("1", extracting the piano first, needs a model)


def _when(present: Callable[[], object], spec: Mapping[str, Collection[str]]):
    """A runnable spec that holds while `present()` finds the model files a wheel ships (None: not installed)."""
    return lambda _runtime: spec if present() is not None else None


def _basic_pitch_model() -> object:
    from openmvsep.engine.transcription import basic_pitch

    return basic_pitch.model_path()


def _transkun_model() -> object:
    from openmvsep.engine.transcription import transkun

    return transkun.model_files()


WHISPER = "39:0"  # the registry option of Whisper checkpoints (39's add_opt1 "0": the file as it is)
WHISPER_DIRECT, WHISPER_VOCALS_FIRST = "0", "1"
WHISPER_TIMESTAMPS = "1"  # add_opt2 "1": Whisper's own timestamps ("0", linto-ai's word-level ones, is not here)
TRANSCRIPT_FILES = ("text", "subtitles", "segments")


def _whisper(inputs: dict[str, np.ndarray], rate: int, choice: Choice, runtime: Runtime):
    """A transcript as text, SubRip subtitles and JSON segments; "extract vocals first" runs a vocal model
    before, as MVSep does, so that the music does not reach the recogniser."""
    from openmvsep.engine.transcription import speech

    entry = runtime.registry.serving(WHISPER)
    if entry is None:
        raise ModelUnavailable(f"no model in the weights registry serves {WHISPER}")
    audio = inputs["audiofile"]
    if choice.get("model_type") == WHISPER_VOCALS_FIRST:
        extractor = next((o for o in VOCAL_EXTRACTORS if runtime.can_serve(o)), None)
        if extractor is None:
            raise ModelUnavailable("no vocal model is installed to extract the vocals first")
        audio = _stem(runtime, extractor, audio, "vocals")
    model = runtime.cache.get(
        ("whisper", entry.name), lambda: speech.load_whisper(runtime.weights_path(entry), runtime.device)
    )
    transcript = speech.transcribe(model, speech.to_input_rate(audio.mean(axis=0), rate))
    return {
        "text": Document("txt", speech.as_text(transcript), label="Text"),
        "subtitles": Document("srt", speech.as_srt(transcript), label="Subtitles"),
        "segments": Document("json", speech.as_json(transcript), label="Segments"),
    }, rate


def _whisper_runnable(runtime: Runtime) -> Mapping[str, Collection[str]] | None:
    if not runtime.can_serve(WHISPER):
        return None
    vocals_first = [WHISPER_VOCALS_FIRST] if any(runtime.can_serve(o) for o in VOCAL_EXTRACTORS) else []
    return {"add_opt1": [WHISPER_DIRECT, *vocals_first], "add_opt2": [WHISPER_TIMESTAMPS]}


VOCALS = ("vocals", "instrumental")
DEMUCS_4 = ("drums", "bass", "other", "vocals")
HTDEMUCS_FT = {stem: f"htdemucs_ft_{stem}" for stem in DEMUCS_4}  # registry entries of the bag's four members
# DrumSep option key -> its model's stems under MVSep's names, in the model's order
DRUMSEP = {"0": ("kick", "snare", "cymbals", "toms"), "1": ("kick", "snare", "toms", "hh", "ride", "crash")}

# Demucs2's stems in MVSep's order (13's output_stems); the model's own order is demucs' (DEMUCS_4).
DEMUCS2_STEMS = ("vocals", "drums", "bass", "other")
# BS-RoFormer SW's stems in MVSep's order (63's output_stems); the model's own order differs.
SW_STEMS = ("vocals", "bass", "drums", "guitar", "piano", "other")
# Mega 53-stem: MVSep's 126 outputs, in its order. The model calls the vocals 'vocal'; its 'bowed_strings' has no
# MVSep name and is not returned.
MEGA_STEMS = (
    "vocals", "lead-vocal", "back-vocal", "drums", "kick", "snare", "toms", "hh", "percussion", "tambourine",
    "timpani", "congas", "triangle", "bells", "glockenspiel", "marimba", "bass", "double-bass", "guitar",
    "acoustic-guitar", "electric-guitar", "banjo", "mandolin", "ukulele", "dobro", "sitar", "piano", "digital-piano",
    "harpsichord", "keys", "organ", "accordion", "synth", "strings", "violin", "viola", "cello", "harp", "brass",
    "trumpet", "trombone", "french-horn", "tuba", "woodwind", "flute", "clarinet", "oboe", "bassoon", "saxophone",
    "harmonica", "wind", "wind-chimes",
)  # fmt: skip
# MVSep's Bass and Drums: "extract from the instrumental part" and "include results of independent models" are not
# implemented for the public model; only the plain keys are offered.
PLAIN_EXTRACTION = {"add_opt2": ("0",), "add_opt3": ("0",)}
VOCALS_FIRST = ExtractFirst("add_opt2", "extract_type", key="1", plain=("0",))


# MVSep's single-instrument separators that the Mega 53-stem model stands in for (labelled substitutes: MVSep's own
# models are private). sep_type -> (the Mega stem, MVSep's name of that output). The output names are the catalog's
# `output_stems`; 52 "Bowed Strings" is the Mega's 'bowed_strings' head (its 'strings' is MVSep's 126 output of that
# name). 102 "Plucked Strings" has no Mega stem and is not served.
MEGA_SUBSTITUTES: dict[int, tuple[str, str]] = {
    52: ("bowed_strings", "strings"),
    **{
        sep_type: (stem, stem)
        for sep_type, stem in {
            54: "wind",
            58: "organ",
            61: "saxophone",
            65: "violin",
            66: "acoustic-guitar",
            67: "flute",
            69: "viola",
            70: "cello",
            71: "trumpet",
            72: "harp",
            73: "double-bass",
            74: "mandolin",
            75: "trombone",
            76: "tambourine",
            77: "oboe",
            78: "clarinet",
            79: "digital-piano",
            81: "electric-guitar",
            82: "french-horn",
            83: "banjo",
            84: "marimba",
            85: "glockenspiel",
            86: "timpani",
            87: "harmonica",
            88: "synth",
            89: "triangle",
            90: "sitar",
            91: "harpsichord",
            92: "tuba",
            93: "bassoon",
            94: "congas",
            95: "bells",
            96: "ukulele",
            97: "dobro",
            98: "wind-chimes",
            99: "accordion",
            105: "percussion",
            106: "keys",
            107: "brass",
            108: "woodwind",
        }.items()  # fmt: skip
    },
}
# Of those with a model field, the key the substitute stands in for: MVSep's default (its best model).
MEGA_MODEL_KEYS = {52: "1", 54: "3", 58: "3", 61: "3", 67: "1"}
# Their other fields, limited to the plain keys: "extract directly from the mixture" (taking the instrument from
# another stem first is not implemented) and 54's "standard set" (no results of independent models).
PLAIN_KEYS: dict[int, dict[str, Collection[str]]] = {
    **{s: {"add_opt2": ("0",)} for s in (52, 66, 67, 69, 70, 71, 73, 75, 77, 78, 79, 81, 82, 87)},
    54: {"add_opt2": ("0",), "add_opt3": ("0",)},
    **{s: {"add_opt1": ("0",)} for s in (88, 107, 108)},
}


def mega_substitute_note(sep_type: int) -> str | None:
    """What a job of this sep_type ran, for its `get` answer: None unless the Mega model stands in for MVSep's."""
    if sep_type not in MEGA_SUBSTITUTES:
        return None
    stem = MEGA_SUBSTITUTES[sep_type][0]
    return (
        f"Ran on this server with a public substitute for MVSep's model: the '{stem}' stem of the MVSep Mega 53-stem "
        "BS-RoFormer v1 (MSST release v1.0.21). MVSep's own model for this algorithm is not public."
    )


def _phantom_centre_keys(runtime: Runtime) -> Mapping[str, Collection[str]]:
    return {"add_opt1": [DSP_CENTRE_KEY, *_model_keys(55)(runtime)["add_opt1"]]}


RECIPES: dict[int, Recipe] = {
    **{
        sep_type: mega_stem_recipe(sep_type, stem, name, MEGA_MODEL_KEYS.get(sep_type, ""))
        for sep_type, (stem, name) in MEGA_SUBSTITUTES.items()
    },
    55: Recipe(
        55,
        _phantom_centre_or_model,
        runnable=_phantom_centre_keys,
        stems=lambda choice: (
            ["center", "wide"] if choice.get("model_type") == DSP_CENTRE_KEY else ["similarity", "difference"]
        ),
    ),
    68: Recipe(
        68,
        _matchering,
        inputs=("target_audiofile", "reference_audiofile"),
        chunkable=False,
        sample_rate=44100,
        stems=lambda _choice: ["result"],
    ),
    40: two_stem_recipe(40, VOCALS, keep="vocals", overlap=True),
    48: two_stem_recipe(48, VOCALS, keep="vocals", overlap=True),
    25: two_stem_recipe(25, VOCALS, keep="vocals"),
    46: two_stem_recipe(46, VOCALS, keep="vocals"),  # a 4-stem SCNet gives its vocals; the rest is the mix minus them
    34: two_stem_recipe(34, ("crowd", "other")),
    47: two_stem_recipe(47, ("dry", "other")),
    22: two_stem_recipe(
        22,
        ("noreverb", "reverb"),
        extract_first=ExtractFirst("add_opt2", "extract_type", key="0", plain=("1",)),
        names_by_key={"8": ("noreverb", "other")},  # MVSep's MDX23C de-reverb calls the reverb "other"
    ),
    27: single_model_recipe(27, VOCALS, keep="vocals"),
    17: two_stem_recipe(17, VOCALS, keep="vocals"),
    10: multistem_recipe(10, {"0": DEMUCS_4, "1": DEMUCS_4}),  # demucs' mdx bags: registry entries of demucs_bag
    37: drumsep_recipe(
        37, {"0": ("kick", "snare", "cymbals", "toms"), "1": ("kick", "snare", "toms", "hh", "ride", "crash")}
    ),
    63: all_stems_recipe(63, SW_STEMS),
    13: all_stems_recipe(13, DEMUCS2_STEMS),  # demucs 2.x's v2 models (registry entries of model_type demucs_v2)
    126: all_stems_recipe(126, MEGA_STEMS, {"vocals": "vocal"}),
    29: two_stem_recipe(29, ("piano", "other"), keep="piano"),
    31: two_stem_recipe(31, ("guitar", "other"), keep="guitar"),
    41: two_stem_recipe(41, ("bass", "other"), keep="bass", only=PLAIN_EXTRACTION),
    44: two_stem_recipe(44, ("drums", "other"), keep="drums", only=PLAIN_EXTRACTION),
    49: karaoke_recipe(49, VOCALS_FIRST),
    57: male_female_recipe(57, VOCALS_FIRST),
    50: two_stem_recipe(
        50,
        ("aspiration", "other"),
        model="50:",
        extract_first=ExtractFirst("add_opt1", "model_type", key="1", plain=("0",)),
    ),
    20: multistem_recipe(
        20, {"0": DEMUCS_4, "1": DEMUCS_4, "2": (*DEMUCS_4, "guitar", "piano")}, specialists={"0": HTDEMUCS_FT}
    ),
    # Transcribers: whole inputs (a note does not stop at a chunk boundary) to one MIDI file.
    114: Recipe(
        114,
        _basic_pitch,
        runnable=_when(_basic_pitch_model, {}),
        chunkable=False,
        sample_rate=BASIC_PITCH_RATE,
        stems=lambda _choice: ["midi"],
    ),
    113: Recipe(
        113,
        _transkun,
        runnable=_when(_transkun_model, {"add_opt1": [DIRECT]}),
        chunkable=False,
        sample_rate=TRANSKUN_RATE,
        stems=lambda _choice: ["midi"],
    ),
    39: Recipe(
        39,
        _whisper,
        runnable=_whisper_runnable,
        chunkable=False,  # Whisper windows the input itself, and a sentence does not stop at a chunk boundary
        sample_rate=MODEL_RATE,  # the vocal models' rate; the recogniser's 16 kHz is made after them
        stems=lambda _choice: list(TRANSCRIPT_FILES),
    ),
    26: ensemble_recipe(
        26,
        {
            "3": ("mdx23c_vocals_msst", "bs_roformer_viperx_1297"),
            "5": ("mel_band_roformer_kj", "bs_roformer_viperx_1297"),
        },
    ),
}


def runnable_map(runtime: Runtime | None = None) -> dict[int, Mapping[str, Collection[str]] | None]:
    """sep_type -> runnable option keys per field, the form the catalog takes (only what can run now)."""
    out: dict[int, Mapping[str, Collection[str]] | None] = {}
    for sep_type, recipe in RECIPES.items():
        spec = recipe.runnable
        if callable(spec):
            if runtime is None:
                continue
            spec = spec(runtime)
            # None: its model is not here; a field with no runnable key: nothing of it runs. {} (a sep_type without
            # options whose model is here) runs.
            if spec is None or not all(spec.values()):
                continue
        out[sep_type] = spec
    return out
