"""The Quality Checker's metric names, in MVSep's display order. A module of its own so that the API process
can name the metrics without importing their arithmetic (and torch with it)."""

SECONDARY_METRICS = ("si_sdr", "l1_freq", "log_wmse", "aura_stft", "aura_mrstft", "bleedless", "fullness")
ALL_METRICS = ("sdr",) + SECONDARY_METRICS
