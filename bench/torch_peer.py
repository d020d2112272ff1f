#!/usr/bin/env python3
# torch_peer.py — the peer figures of ../shared/BENCHMARKS.md measured again in the same device call as
# `llmlab bench hw`, so the hardware lab is compared with PyTorch on the same card in the same minutes:
# dense GEMM at 8192^3 (bf16, fp16), HBM read (sum of 4 GiB) and copy, SDPA attention (fp16, causal,
# 32 heads x 128, batch 1) at seq 2048 and 8192. Median of 20 timed runs after warm-up, CUDA events.
# Usage: python3 bench/torch_peer.py   (needs a GPU and PyTorch; prints one line per figure)
import statistics
import torch
import torch.nn.functional as F


def timed(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts), min(ts), max(ts)


def main():
    dev = torch.device("cuda")
    print("torch", torch.__version__, torch.cuda.get_device_name(0))
    n = 8192
    for dt, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        med, lo, hi = timed(lambda: a @ b)
        print(f"peer gemm {name} 8192^3: {2 * n**3 / med / 1e12:.1f} TFLOPS (median; {2 * n**3 / hi / 1e12:.1f}..{2 * n**3 / lo / 1e12:.1f})")
        del a, b
    x = torch.ones(1 << 30, device=dev, dtype=torch.float32)  # 4 GiB
    med, _, _ = timed(lambda: x.sum())
    print(f"peer hbm read (sum of 4 GiB): {x.numel() * 4 / med / 1e9:.0f} GB/s")
    y = torch.empty_like(x)
    med, _, _ = timed(lambda: y.copy_(x))
    print(f"peer hbm copy (read + write of 4 GiB): {2 * x.numel() * 4 / med / 1e9:.0f} GB/s")
    del x, y
    for seq in (2048, 8192):
        q, k, v = (torch.randn(1, 32, seq, 128, device=dev, dtype=torch.float16) for _ in range(3))
        med, _, _ = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        flops = 4 * seq * seq * 128 * 32 / 2
        print(f"peer sdpa fp16 causal seq {seq}: {flops / med / 1e12:.0f} TFLOPS")


if __name__ == "__main__":
    main()
