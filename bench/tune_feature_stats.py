"""Time configurations of the fused statistics kernel against torch.matmul on a GPU (b=1024, d=2048).

    python bench/tune_feature_stats.py
"""
import torch
import triton
import triton.language as tl

from fastgan.kernels import feature_stats as fs

CONFIGS = [  # BLOCK, BLOCK_K, num_warps, num_stages, precision
    (64, 32, 8, 3, "tf32x3"), (64, 32, 4, 3, "tf32x3"), (64, 64, 4, 3, "tf32x3"), (128, 32, 8, 3, "tf32x3"),
    (128, 64, 8, 3, "tf32x3"), (128, 32, 8, 4, "tf32x3"), (128, 32, 4, 3, "tf32x3"), (64, 32, 4, 3, "ieee"),
    (128, 32, 8, 3, "ieee"), (128, 32, 8, 3, "tf32"), (128, 64, 8, 4, "tf32"),
]


def main(b=1024, d=2048):
    x = torch.randn(b, d, device="cuda") * 0.05 + 3
    mb, delta = x.mean(0), torch.zeros(d, device="cuda")
    m2 = torch.zeros(d, d, device="cuda")
    useful = b * d * (d + 1)  # upper triangle
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        ms = triton.testing.do_bench(lambda: x.T @ x, warmup=10, rep=50, return_mode="median")
        print(f"torch.matmul(x.T, x) tf32={tf32}: {ms:.4f} ms, {2 * b * d * d / ms / 1e9:.1f} TFLOP/s")
    torch.backends.cuda.matmul.allow_tf32 = False
    for block, bk, nw, ns, prec in CONFIGS:
        grid = (triton.cdiv(d, block), triton.cdiv(d, block))

        def fn():
            fs._centered_gram_kernel[grid](x, mb, delta, m2, b, d, x.stride(0), 0.0, X_DTYPE=tl.float32, BLOCK=block,
                                           BLOCK_K=bk, PRECISION=prec, num_warps=nw, num_stages=ns)
        try:
            ms = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
            print(f"BLOCK={block:3d} BLOCK_K={bk:2d} warps={nw} stages={ns} {prec:7s}: {ms:.4f} ms, "
                  f"{useful / ms / 1e9:.1f} useful TFLOP/s")
        except Exception as e:  # noqa: BLE001 - e.g. out of shared memory for a config
            print(f"BLOCK={block} BLOCK_K={bk} warps={nw} stages={ns} {prec}: failed: {str(e).splitlines()[0][:100]}")


def time_update(d=2048):
    """The whole FeatureStatistics.update (batch mean, fused kernel, Chan merge) against torch.matmul(x.T, x)."""
    from fastgan.metrics import FeatureStatistics

    for b in (256, 1024):
        x = torch.randn(b, d, device="cuda") * 0.05 + 3
        st = FeatureStatistics(d, device="cuda", precision="float32", backend="triton")
        ms = triton.testing.do_bench(lambda: st.update(x), warmup=10, rep=50, return_mode="median")
        ref = triton.testing.do_bench(lambda: x.T @ x, warmup=10, rep=50, return_mode="median")
        print(f"update b={b}: {ms:.4f} ms, {b * d * (d + 1) / ms / 1e9:.1f} useful TFLOP/s; matmul {ref:.4f} ms, "
              f"{2 * b * d * d / ref / 1e9:.1f} TFLOP/s; rate ratio {b * d * (d + 1) / ms / (2 * b * d * d / ref):.0%}")


if __name__ == "__main__":
    import sys

    time_update() if "--update" in sys.argv else main()
