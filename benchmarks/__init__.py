"""Speed and memory benchmarks of the kinetics core against SPEC §5 (``make bench``).

Eight measurements, all on CPU with ``torch.set_num_threads(2)`` (``--threads`` to change), one
module each:

1. :mod:`benchmarks.fast_vs_literal`: KO soft / hard collision, the fast ``kinetics`` functions
   against the paper-literal ones of :mod:`benchmarks.literal` (dense ``(N, N, d)`` tensors), time
   and peak extra memory.
2. :mod:`benchmarks.kitinet_op`: KITINet per token at GPT-2 shape (2048 x 768, heads 12 and 48)
   in a GPT-2-like and a dense input regime: forward and forward+backward against ``x + v``,
   against the floor of the selection's arithmetic, and with the counter-based direction stream
   against the ``torch.randn`` generator it replaced.
3. :mod:`benchmarks.hard_collision_memory`: hard collision at an ImageNet head (N=1000, d=2048)
   when nearly every pair collides: the ≤ 64 MB extra-peak target.
4. :mod:`benchmarks.ko_resnet18_step`: one ResNet-18 training step with SGD against
   KineticOptimizer soft / hard on the head.
5. :mod:`benchmarks.kiti_resnet18`: KITI-ResNet-18 (CIFAR stem, KITINet in the last stage) against
   ResNet-18: training step and eval forward (SPEC §5: ≤ 10% and 0%; eval outputs must be bitwise
   equal), plus the KITINet call alone on the inputs the network really gives it.
6. :mod:`benchmarks.ko_resnet_overhead`: KO step overhead for CIFAR ResNet-18/34/50 x {SGD, +S.C.,
   +H.C.}: time and peak memory, the analog of KO Tables 4-5.
7. :mod:`benchmarks.text_minilm`: a MiniLM-L6 sequence classifier's training step (random weights
   and tokens): AdamW against KO soft / hard on the head and KITINet in the final layer (issue 11:
   ≤ 1.01x, ≤ 1.01x, ≤ 1.05x at the collision rate met), peak memory, and the KITI eval forward
   (time ratio; logits bitwise equal).
8. :mod:`benchmarks.lm_training`: language models at the mini-lm settings (issue 12): tokens/s of
   our training loop (``fit`` with the runner's callbacks) against a bare PyTorch loop (≥ 0.97x),
   KITI-GPT-2's training step against GPT-2 at the collision rates it meets (≤ 1.05x; eval 1.00x
   and bitwise equal), and KO soft on a tiny Qwen2's last layer against AdamW (≤ 1.02x).

Shared pieces: :mod:`benchmarks.config` (sizes and repeats), :mod:`benchmarks.measure` (timing,
statistics, machine facts and load), :mod:`benchmarks.memory` (peak-memory probes),
:mod:`benchmarks.report` (``bench.md`` / ``bench.json``) and :mod:`benchmarks.runner` (runs the
sections). ``scripts/bench.py`` is the command line.

Absolute times on a shared 2-core machine drift by several %, so variants that are compared are run
interleaved (round r starts with variant r mod k), repeated, and summarised by the median of the
per-round paired ratios; absolute medians are reported after the ratios.

The report records how many CPUs other processes used meanwhile: with 2 threads on this 2-core
machine any competing process makes every parallel op wait for a descheduled thread, so numbers
from a busy machine are flagged (run it idle, or with ``--threads 1``).
"""
