// blocklab-cli: headless training, sampling and benchmarking from a preset or
// config file, for scripts, servers and CI.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "run/run_spec.h"
#include "simd/isa.h"

namespace {
const char* kUsage =
    "usage: blocklab-cli <command> [options]    (blocklab-cli --version: build, CPU, kernels)\n"
    "\n"
    "commands:\n"
    "  train   --preset NAME | --config FILE  [--data FILE] [--steps N] [--threads N]\n"
    "          [--seed N] [--lr X] [--batch-size N] [--seq-len N] [--eval-interval N]\n"
    "          [--warmup N] [--optimizer adamw|lion|adafactor|sgd] [--schedule "
    "cosine|linear|constant]\n"
    "          [--tokenizer char|byte|bpe:DIR] [--set field=value]... [--name NAME]\n"
    "          [--tag TAG]... [--flop-budget FLOPS] [--time-budget SECONDS]\n"
    "          [--db FILE] [--checkpoint-interval N] [--keep-checkpoints K] [--flush-interval S]\n"
    "          [--out DIR] [--json] [--quiet] [--distributed]\n"
    "          (--distributed: under mpirun -np N, data-parallel over N processes; rank 0 "
    "records)\n"
    "  train   --resume RUN [--steps N] [--threads N] [--eval-interval N] [--time-budget S]\n"
    "          [--db FILE] ...\n"
    "          (a LoRA run continues on its recorded base, spec and adapter path)\n"
    "  train   --fork RUN [--set field=value]... [--fresh] [--data FILE] [overrides] [--db FILE] "
    "...\n"
    "  train   --preset P --distill-from RUN|CKPT [--distill-temperature T (2)] [--distill-alpha A "
    "(0.5)] ...\n"
    "          (knowledge distillation: alpha * CE + (1 - alpha) * T^2 * KL to the teacher; the\n"
    "          student uses the teacher's tokenizer; resume it with train --resume RUN)\n"
    "  train   --dpo-from RUN|CKPT --data PAIRS.jsonl [--dpo-beta B (0.1)] [--steps N] [--lr X] "
    "...\n"
    "          (DPO: a JSONL line per pair, {\"prompt\", \"chosen\", \"rejected\"}; the model and\n"
    "          its reference start as RUN's; lr defaults to a tenth of RUN's; resume with "
    "--resume)\n"
    "  train   --grpo-from RUN|CKPT --data PROMPTS.jsonl --reward exact|regex:P|length:N|cmd:C\n"
    "          [--group-size G (4)] [--max-new-tokens N (32)] [--grpo-beta B (0.04)]\n"
    "          [--grpo-clip E (0.2)] [--grpo-temperature T (1)] [--steps N] [--lr X] ...\n"
    "          (GRPO: a JSONL line per prompt, {\"prompt\", \"target\"}; rewards of sampled\n"
    "          completions, normalised per group; KL to RUN's model; resume with --resume)\n"
    "  runs    list [--status S] [--tag T] [--sweep ID] | show ID | export ID --format csv|json |\n"
    "          compare ID ID... | tag ID TAG... [--remove] | note ID TEXT | delete ID |\n"
    "          import DIR|FILE... (merge other databases' runs by UUID)  [--db FILE]\n"
    "  sweep   SPEC.json [--workers N] [--threads T] [--new] | --resume SWEEP_ID  [--db FILE]\n"
    "          SPEC.json --slurm [--dry-run] [--shared DIR] [--max-parallel M] [--partition P]\n"
    "          [--time LIMIT]  (grid / random axes, seeds, budget: see README \"Sweeps\")\n"
    "          list | show SWEEP_ID  (each trial's values, run, status and val loss)\n"
    "  sample  --run DIR [--prompt TEXT] [--tokens N] [--temperature X] [--top-k N] [--top-p X] "
    "[--seed N]\n"
    "          [--repetition-penalty X] [--stop TEXT]... [--beams N | --best-of N |\n"
    "          --draft DIR [--draft-tokens K]]  (beam search, best of N samples by log-prob,\n"
    "          greedy speculative decoding with a smaller run as the draft)\n"
    "  train   --init-from RUN|CKPT|HF_DIR --lora rank=8,alpha=16,targets=q,v [--quantize "
    "nf4|affine4|affine8]\n"
    "          --adapter-out DIR|FILE.gguf [--data FILE] [--steps N] [--lr X] ... [--db FILE] "
    "[--json]\n"
    "          [--checkpoint-interval N] [--keep-checkpoints K]  (resume it with train --resume "
    "RUN)\n"
    "  lora    merge --base CKPT --adapter PATH --out DIR | export --adapter PATH --out DIR |\n"
    "          export --adapter PATH --out FILE.gguf --base CKPT [--gguf-layout llama|blocklab] |\n"
    "          sample --base CKPT --adapter PATH|base [--adapter ...] [--prompt TEXT] [--tokens "
    "N]\n"
    "          [--temperature X] [--top-k N] [--top-p X] [--seed N]  (one batch row per adapter)\n"
    "  export  gguf RUN|CKPT --out FILE.gguf [--dtype f32|f16] [--name NAME] [--db FILE]\n"
    "          (a LLaMA-family model as a llama.cpp GGUF file: docs/gguf.md)\n"
    "  bench   --preset NAME | --config FILE  [--threads N] [--steps N] [--warmup-steps N]\n"
    "          [--decode [--decode-tokens N] [--decode-batch B] [--prompt-len P] [--repeat R]]\n"
    "          (--decode: KV-cache / recurrent-state decoding tokens/s instead of training)\n"
    "  eval    --run RUN|DIR [--data FILE] [--batches K] [--batch-size B] [--seq-len T]\n"
    "          [--threads N] [--db FILE] [--json]  (loss, perplexity, bits per byte on the\n"
    "          run's validation split or on FILE, every token scored once; recorded as evals\n"
    "          of run RUN)\n"
    "  eval    --run RUN|DIR --equations [--samples N] [--k 1,5] [--temperature X] [--limit M]\n"
    "          [--seed N]  (pass@k on the PROMPT=ANSWER lines of the same text, e.g. data synth)\n"
    "  tokenizer train --data FILE --vocab-size N --out DIR [--json]  (byte-level BPE, writes\n"
    "          DIR/tokenizer.json in the Hugging Face format; use it with --tokenizer bpe:DIR)\n"
    "  tokenizer encode --tokenizer bpe:DIR|byte --text S | --data FILE\n"
    "  tokenizer decode --tokenizer bpe:DIR|byte --ids \"ID ID ...\"\n"
    "  inspect RUN|CKPT --lens --prompt TEXT [--csv FILE] [--db FILE]  (the logit lens: each\n"
    "          layer's top next-token guess and its probability at every prompt position)\n"
    "  data    prepare --data TEXT --out TOKENS [--tokenizer char|byte|bpe:DIR] [--json]\n"
    "          (encode a corpus of any size once; train --data TOKENS maps it)\n"
    "  data    synth --out FILE [--task add|sub|mul|div] [--p P (97)] [--train-fraction F (0.5)]\n"
    "          [--seed N] [--json]  (every a o b mod p; prints the val_fraction of the held-out "
    "part)\n"
    "  models  list | info NAME | count NAME [--detail] [--seq-len N]  [--json]\n"
    "          NAME: a preset, a published architecture, or a preset/config .json file\n"
    "  models  import hf DIR [--name NAME] [--out CKPT] [--db FILE]  (a Hugging Face folder:\n"
    "          config.json + safetensors + tokenizer.json, as a checkpoint; see "
    "docs/huggingface.md)\n"
    "  export  hf RUN|CKPT --out DIR [--dtype f32|bf16|f16] [--db FILE]  (config.json,\n"
    "          model.safetensors, tokenizer.json for transformers: GPT-2, LLaMA, Mistral, Qwen3,\n"
    "          Mixtral layouts)\n"
    "\n"
    "BLOCKLAB_ISA=avx512|avx2|scalar forces the kernels down to that vector ISA.\n"
    "Every training run is recorded in the experiment database: --db FILE, else $BLOCKLAB_DB,\n"
    "else $XDG_DATA_HOME/blocklab/experiments.db (~/.local/share/blocklab/experiments.db).\n"
    "Checkpoints go to <database dir>/runs/<run id>/checkpoints/step-<N>.\n"
    "\n"
    "presets: see `blocklab-cli models list` (default: gpt-tiny)\n";
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "--version" || cmd == "version") {
    try {
      std::printf("blocklab-cli %s\n%s\n", BLOCKLAB_VERSION, bl::machine_summary().c_str());
    } catch (const std::exception& e) {  // a bad BLOCKLAB_ISA
      std::fprintf(stderr, "blocklab-cli: %s\n", e.what());
      return 2;
    }
    return 0;
  }
  std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    bl::init_kernel_isa();  // a bad BLOCKLAB_ISA stops here, naming the choices
    if (cmd == "train") return bl::cli::train_command(rest);
    if (cmd == "bench") return bl::cli::bench_command(rest);
    if (cmd == "sample") return bl::cli::sample_command(rest);
    if (cmd == "runs") return bl::cli::runs_command(rest);
    if (cmd == "models") return bl::cli::models_command(rest);
    if (cmd == "lora") return bl::cli::lora_command(rest);
    if (cmd == "eval") return bl::cli::eval_command(rest);
    if (cmd == "export") return bl::cli::export_command(rest);
    if (cmd == "tokenizer") return bl::cli::tokenizer_command(rest);
    if (cmd == "data") return bl::cli::data_command(rest);
    if (cmd == "inspect") return bl::cli::inspect_command(rest);
    if (cmd == "sweep") return bl::cli::sweep_command(rest);
    if (cmd == "sweep-worker") return bl::cli::sweep_worker_command(rest);
    if (cmd == "sweep-task") return bl::cli::sweep_task_command(rest);
    std::fprintf(stderr, "blocklab-cli: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    // A run description that cannot be launched is a usage error like a bad option.
    if (dynamic_cast<const bl::cli::UsageError*>(&e) || dynamic_cast<const bl::RunSpecError*>(&e)) {
      std::fprintf(stderr, "blocklab-cli %s: %s\n(see blocklab-cli --help)\n", cmd.c_str(),
                   e.what());
      return 2;
    }
    std::fprintf(stderr, "blocklab-cli %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
