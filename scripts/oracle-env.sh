#!/usr/bin/env bash
# The reference ("oracle") environment the engine's equality fixtures are generated in: the `msst` package
# (ZFTurbo's Music-Source-Separation-Training, 0.1.0) and `demucs` 4.1.0, in a venv of their own (.oracle/).
# Not used by the service or its tests; only by scripts/make_engine_fixtures.py.
#
# msst declares torch<2.12; the model code it carries runs unchanged on this machine's torch 2.13 CPU
# wheel, so it is installed without its torch pin rather than pulling a CUDA build of an older torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .oracle
.oracle/bin/pip install -q torch==2.13.0
.oracle/bin/pip install -q --no-deps msst==0.1.0 demucs==4.1.0
.oracle/bin/pip install -q PyYAML librosa matplotlib ml-collections "numpy>=1.23" omegaconf soundfile tqdm \
  beartype einops packaging rotary-embedding-torch PoPE-pytorch julius lameenc safetensors sphn huggingface-hub
.oracle/bin/python -c "import msst, demucs; print('oracle ready: msst', msst.__version__ if hasattr(msst, '__version__') else '0.1.0')"
