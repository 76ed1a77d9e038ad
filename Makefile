# synthface-ray developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: 2.13.0 is the CPU wheel our dev machines carry; a bare `torch` pulls
# several GB of CUDA packages. On a GPU box: make setup TORCH="torch==2.13.0 --index-url ..."
TORCH  ?= torch==2.13.0

.PHONY: setup demo tune benchmark papers test lint bench bench-scale bench-gpu clean

$(BIN)/synthface: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/synthface  ## create .venv with the package (editable) and dev tools

demo: setup  ## the main job on the embedded dataset
	$(BIN)/synthface demo

tune: setup  ## the demo's Ray Tune sweep (after `make demo`): ScoreMix lambda x AdaptDiff w_max, ASHA
	$(BIN)/synthface tune --config tuning/demo_lambda_wmax.yaml

benchmark: demo  ## the utility benchmark on the demo's outputs and unseen people (docs/BENCHMARKS.md), ~37 min on 2 cores
	$(BIN)/synthface benchmark --config jobs/benchmark_toyfaces.yaml

papers: setup  ## the method papers' claims judged on the embedded data (docs/PAPERS.md); hours on 2 cores, resumable
	$(BIN)/synthface papers --config jobs/papers/suite.yaml

test: setup  ## lint + the whole test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup  ## benchmarks/*.py; record results in docs/BENCHMARKS.md
	$(BIN)/python benchmarks/toyfaces.py
	$(BIN)/python benchmarks/train_generator.py
	$(BIN)/python benchmarks/train_fr.py
	$(BIN)/python benchmarks/sampler.py
	$(BIN)/python benchmarks/mining.py
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/generate.py

bench-scale: setup  ## cost growth from 10k to 1M rows (about an hour on 2 cores); docs/BENCHMARKS.md
	$(BIN)/python benchmarks/scale.py generate --sizes 10000,100000,1000000
	$(BIN)/python benchmarks/scale.py evaluate --sizes 10000,100000,1000000
	$(BIN)/python benchmarks/scale.py mining --sizes 10000,30000,100000
	$(BIN)/python benchmarks/scale.py report --plot docs/scale_growth.png

bench-gpu: setup  ## what one GPU delivers (under 8 minutes on an H200; `benchmarks/gpu.py --dry` on a CPU)
	PYTHONUNBUFFERED=1 $(BIN)/python benchmarks/gpu.py --out runs/gpu.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
