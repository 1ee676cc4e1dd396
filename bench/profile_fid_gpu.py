"""Time the steps of the exact Fréchet distance on a GPU (float64, d=2048): Cholesky, F^T S2 F, eigvalsh."""
import torch

from fastgan.bench.suites import fid as suite


def bench(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    rng = torch.Generator().manual_seed(0)
    d = 2048
    x1 = torch.randn(10000, d, generator=rng, dtype=torch.float64) * torch.arange(1, d + 1) ** -0.5
    x2 = torch.randn(10000, d, generator=rng, dtype=torch.float64) * torch.arange(1, d + 1) ** -0.5 * 1.1
    s1, s2 = torch.cov(x1.T).cuda(), torch.cov(x2.T).cuda()
    f = torch.linalg.cholesky(s1)
    m = f.mT @ s2 @ f
    print(f"cholesky {bench(lambda: torch.linalg.cholesky(s1)):.2f} ms")
    print(f"F^T S2 F {bench(lambda: f.mT @ s2 @ f):.2f} ms")
    print(f"eigvalsh {bench(lambda: torch.linalg.eigvalsh(m)):.2f} ms")
    print(f"eigh     {bench(lambda: torch.linalg.eigh(m)):.2f} ms")
    print(f"svdvals(F2^T F1) {bench(lambda: torch.linalg.svdvals(torch.linalg.cholesky(s2).mT @ f)):.2f} ms")
    m32 = m.float()
    print(f"eigvalsh float32 {bench(lambda: torch.linalg.eigvalsh(m32)):.2f} ms")
    del suite
