"""Markdown table from bench/compare_torch.sh's raw JSON: both sides as tokens
per median step time (torch_ref.py's own tokens_per_sec is a mean; the ratio is
taken on the same statistic), median over repetitions with the range."""
import json, os, statistics, sys

out, reps = sys.argv[1], int(sys.argv[2])
for f in sorted(os.listdir(out)):
    if f.startswith("ours-"):
        j = json.load(open(f"{out}/{f}"))
        print(f"Blocklab: kernels {j.get('kernel_isa', '?')}, BLAS {j.get('blas', '?')}, CPU {j.get('cpu', '?')}\n")
        break
print("| preset | threads | PyTorch tok/s median (range) | Blocklab tok/s median (range) | ratio | Blocklab RSS after warm-up / end MB | PyTorch peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for preset in ["gpt-tiny", "gpt-small", "llama-small"]:
    for t in (1, 2):
        if not os.path.exists(f"{out}/ours-{preset}-{t}-1.json"):
            continue  # not in this run's CASES / THREADS
        tj = [json.load(open(f"{out}/torch-{preset}-{t}-{r}.json")) for r in range(1, reps + 1)]
        oj = [json.load(open(f"{out}/ours-{preset}-{t}-{r}.json")) for r in range(1, reps + 1)]
        tokens = oj[0]["batch_size"] * oj[0]["seq_len"]
        th = [tokens / (d["median_step_ms"] / 1000) for d in tj]
        ot = [d["tokens_per_sec"] for d in oj]
        mt, mo = statistics.median(th), statistics.median(ot)
        print(f"| {preset} | {t} | {mt:,.0f} ({min(th):,.0f}-{max(th):,.0f}) | {mo:,.0f} ({min(ot):,.0f}-{max(ot):,.0f}) "
              f"| {mo / mt:.2f}x | {max(d['rss_after_warmup_mb'] for d in oj):.0f} / {max(d['rss_end_mb'] for d in oj):.0f} "
              f"| {max(d['peak_rss_mb'] for d in tj):.0f} |")
