"""MVSep's algorithms as engine steps: the one place that knows both the catalog's sep_types and option keys and
what the engine runs for them (models, "extract vocals first", target and rest, ensembles, DSP)."""
