# Every target creates the virtual environment on first use; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SEEDS ?= 0,1,2
# Offline by default: this machine (and CI) reaches no model or data hub.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export PYTHONHASHSEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help venv lock run test test-slow test-all lint format bench figure-ko-fig2 table-kitinet-fc table-kitinet-skip mini-vision table-ko-1 table-ko-45 figure-ko-fig4 table-kitinet-3 table-kitinet-7-resnet table-ko-2 clean

help:  ## list every target
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the pinned environment (requirements.lock)

lock: ## re-resolve the environment from pyproject.toml and rewrite requirements.lock
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	touch $(STAMP)

run: $(STAMP)  ## run the default experiment (KO Fig. 2 setting, soft collision) offline
	$(PY) run.py

lint: $(STAMP)  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint  ## lint, then the default test suite (no slow tests)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)  ## only the slow tests
	$(PY) -m pytest -q -m slow

test-all: lint  ## every test, slow ones included
	$(PY) -m pytest -q -m 'slow or not slow'

bench: $(STAMP)  ## speed and memory benchmarks -> results/bench/
	$(PY) scripts/bench.py --out results/bench

figure-ko-fig2: $(STAMP)  ## KO Fig. 2: activations x {none, soft, hard}, 3 seeds, heat-map grid -> results/ko_fig2/
	$(PY) run.py --multirun experiment=ko_fig2 seed=$(SEEDS) hydra.sweep.dir=multirun/ko_fig2
	$(PY) scripts/render.py ko-fig2 --runs multirun/ko_fig2 --out results/ko_fig2

table-kitinet-fc: $(STAMP)  ## KITINet §5.7 FC net: test-loss change vs the paper, 3 seeds -> results/kitinet_fc/
	$(PY) run.py --multirun experiment=kitinet_fc seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_fc
	$(PY) scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc

table-kitinet-skip: $(STAMP)  ## KITINet §5.7 6-layer skip net: KITINet in the last 0/1/2 blocks, 3 seeds -> results/kitinet_skip/
	$(PY) run.py --multirun experiment=kitinet_skip seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_skip
	$(PY) scripts/render.py sweep --runs multirun/kitinet_skip --out results/kitinet_skip

mini-vision: $(STAMP)  ## CPU-scale replication on real data: Fashion-MNIST, small ResNet-18, SGD / +S.C. / +H.C. / KITI, 3 seeds -> results/mini_vision/
	bash scripts/fetch_fashion_mnist.sh
	$(PY) run.py --multirun experiment=mini_vision seed=$(SEEDS) hydra.sweep.dir=multirun/mini_vision
	$(PY) scripts/render.py sweep --runs multirun/mini_vision --out results/mini_vision

# --- KO Table 1 / KITINet Table 3 (GPU-scale: 200 / 160 epochs of CIFAR ResNets; not for this machine).
# One experiment file per table row, each sweeping dataset=cifar10,cifar100; one sweep dir per row
# (Hydra numbers jobs from 0 in each). RENDER_ONLY=1 skips the runs and re-renders what exists
# ("missing" cells). HYDRA_ARGS passes extra overrides, e.g. HYDRA_ARGS="hydra/launcher=submitit_slurm hydra.launcher.partition=<p>".
RENDER_ONLY ?= 0
HYDRA_ARGS ?=
KO_TABLE1_ROWS := $(foreach m,18 34 50,$(foreach v,sgd sc hc,ko_table1_resnet$(m)_$(v)))
KITINET_TABLE3_ROWS := $(foreach m,34 50 101 152,$(foreach v,vanilla kiti,kitinet_table3_resnet$(m)_$(v)))

table-ko-1: $(STAMP)  ## KO Table 1: CIFAR-10/100 x ResNet18/34/50 x {SGD, S.C., H.C.}, GPU-scale (RENDER_ONLY=1: render only) -> results/ko_table1/
ifneq ($(RENDER_ONLY),1)
	set -e; for row in $(KO_TABLE1_ROWS); do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/ko_table1/$$row $(HYDRA_ARGS); \
	done
endif
	$(PY) scripts/render.py ko-table1 --runs multirun/ko_table1 --out results/ko_table1
	$(PY) scripts/render.py ko-fig3 --runs multirun/ko_table1 --out results/ko_table1

figure-ko-fig4: $(STAMP)  ## KO Fig. 4: ResNet18 + 1024-1024-10 FC head, tanh / xTanh x {Adam, S.C., H.C.}, GPU-scale (RENDER_ONLY=1: render only) -> results/ko_fig4/
ifneq ($(RENDER_ONLY),1)
	set -e; for row in ko_fig4_tanh ko_fig4_xtanh; do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/ko_fig4/$$row $(HYDRA_ARGS); \
	done
endif
	$(PY) scripts/render.py ko-fig4 --runs multirun/ko_fig4 --out results/ko_fig4

table-ko-45: $(STAMP)  ## KO Tables 4-5: time and peak memory per model and mode, from the Table 1 runs (runs table-ko-1 unless RENDER_ONLY=1) -> results/ko_table45/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) table-ko-1
endif
	$(PY) scripts/render.py ko-table45 --runs multirun/ko_table1 --out results/ko_table45

table-kitinet-3: $(STAMP)  ## KITINet Table 3: CIFAR-10/100 x ResNet-34/50/101/152 x {vanilla, KITI} + MFLOPs, GPU-scale (RENDER_ONLY=1: render only) -> results/kitinet_table3/
ifneq ($(RENDER_ONLY),1)
	set -e; for row in $(KITINET_TABLE3_ROWS); do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_table3/$$row $(HYDRA_ARGS); \
	done
endif
	$(PY) scripts/render.py kitinet-table3 --runs multirun/kitinet_table3 --out results/kitinet_table3

table-kitinet-7-resnet: $(STAMP)  ## KITINet §5.7: rho of every ResNet18 conv layer, vanilla vs KITI, CIFAR-100, GPU-scale (RENDER_ONLY=1: render only) -> results/kitinet_table7_resnet/
ifneq ($(RENDER_ONLY),1)
	set -e; for row in kitinet_table7_resnet18_vanilla kitinet_table7_resnet18_kiti; do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_table7_resnet/$$row $(HYDRA_ARGS); \
	done
endif
	$(PY) scripts/render.py kitinet-table7-resnet --runs multirun/kitinet_table7_resnet --out results/kitinet_table7_resnet

# --- KO Table 2 (ImageNet-1K; GPU-scale: 300 epochs per run, an 8-GPU node each). One experiment
# file per row; the recipes' batch sizes are per process and assume 8 ranks (see the files).
# NPROC=8 runs every (row, seed) under torchrun on this node, in multirun/ko_table2/<row>/seed<s>
# (add HYDRA_ARGS=resume=auto to continue killed runs); without NPROC each row is a Hydra
# multirun (one process per job, e.g. HYDRA_ARGS="hydra/launcher=submitit_slurm"). The data: an ImageFolder
# tree in $$KINETICS_DATA_DIR/imagenet (or data/imagenet), see configs/dataset/imagenet.yaml.
KO_TABLE2_ROWS := ko_table2_resnet50_lamb ko_table2_resnet50_sc ko_table2_resnet50_hc \
	$(foreach m,tiny small,$(foreach v,adamw sc hc,ko_table2_convnext_$(m)_$(v)))
NPROC ?=
comma := ,

table-ko-2: $(STAMP)  ## KO Table 2: ImageNet-1K, ResNet50+LAMB / ConvNeXt-T/S+AdamW x {-, S.C., H.C.}, GPU-scale (NPROC=8: torchrun; RENDER_ONLY=1: render only) -> results/ko_table2/
ifneq ($(RENDER_ONLY),1)
ifeq ($(NPROC),)
	set -e; for row in $(KO_TABLE2_ROWS); do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/ko_table2/$$row $(HYDRA_ARGS); \
	done
else
	set -e; for row in $(KO_TABLE2_ROWS); do for seed in $(subst $(comma), ,$(SEEDS)); do \
	  $(VENV)/bin/torchrun --nproc_per_node=$(NPROC) run.py experiment=$$row seed=$$seed \
	    hydra.run.dir=multirun/ko_table2/$$row/seed$$seed $(HYDRA_ARGS); \
	done; done
endif
endif
	$(PY) scripts/render.py ko-table2 --runs multirun/ko_table2 --out results/ko_table2

clean:  ## remove run outputs (keeps .venv and results/)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
