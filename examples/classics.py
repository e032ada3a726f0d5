"""The seed's classic results, computed with gpugrad.

1. The gradients of f(x, y) = (x + exp(y)) / (log(x) + (x - y)^3) at (3, 4).
2. -log(e^x / (e^x + e^y)) at (50, 100): the naive formula overflows, the
   stable log-sum-exp gives 50 with gradients -1 and 1.
"""

import gpugrad


def gradients_of_f(x0=3.0, y0=4.0):
    x = gpugrad.tensor(x0, dtype=gpugrad.float64, requires_grad=True)
    y = gpugrad.tensor(y0, dtype=gpugrad.float64, requires_grad=True)
    f = (x + y.exp()) / (x.log() + (x - y) ** 3)
    f.backward()
    return f.item(), x.grad.item(), y.grad.item()


def naive_and_stable(a=50.0, b=100.0):
    pair = gpugrad.tensor([a, b], dtype=gpugrad.float32, requires_grad=True)
    e = pair.exp()
    naive = -(e[0] / (e[0] + e[1])).log()
    stable = gpugrad.logsumexp(pair, 0) - pair[0]
    stable.backward()
    return naive.item(), stable.item(), pair.grad.tolist()


def main():
    f, dx, dy = gradients_of_f()
    print(f"f(3, 4) = (x + e^y) / (log x + (x - y)^3) = {f:.6f}")
    print(f"  df/dx = {dx:.6f}   df/dy = {dy:.6f}")
    naive, stable, grad = naive_and_stable()
    print(f"-log(e^50 / (e^50 + e^100)), float32: naive = {naive} (exp overflows), "
          f"log-sum-exp = {stable:.4f}, gradients = {grad}")


if __name__ == "__main__":
    main()
