"""Train an MLP classifier on the handwritten digits that ship with
scikit-learn (8x8 images, 10 classes, 1797 samples), with gpugrad.

    python examples/train_digits.py                # CUDA when available, else the CPU
    python examples/train_digits.py --device cpu --epochs 40 --seed 1
    python examples/train_digits.py --amp          # mixed precision: bfloat16 on the CPU, float16 + GradScaler on CUDA

Prints the device, a tqdm bar with the running loss, the test accuracy at the
end, and writes a PNG of the loss and accuracy curves.
"""

import argparse
import pathlib
import time

import matplotlib
import numpy
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import gpugrad
from gpugrad import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--plot", default=str(pathlib.Path(__file__).with_suffix(".png")),
                        help="where to write the loss/accuracy plot")
    parser.add_argument("--save", default=None, help="write the trained weights here (.npz)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: autocast (bfloat16 on the CPU, float16 on CUDA, with a GradScaler)")
    return parser.parse_args(argv)


def pick_device(requested):
    if requested is not None:
        return gpugrad.device(requested)
    return gpugrad.device("cuda") if gpugrad.cuda.is_available() else gpugrad.device("cpu")


def build_model(hidden):
    return nn.Sequential(
        nn.Linear(64, hidden), nn.GELU(), nn.Dropout(0.1),
        nn.Linear(hidden, hidden), nn.GELU(),
        nn.Linear(hidden, 10))


def evaluate(model, x, y, batch_size=512):
    model.eval()
    correct = 0
    with gpugrad.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size])
            correct += (logits.argmax(1) == y[start:start + batch_size]).sum().item()
    model.train()
    return correct / x.shape[0]


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    where = gpugrad.cuda.get_device_name() if device.type == "cuda" else "the CPU (NumPy)"
    precision = f", mixed precision ({gpugrad.get_autocast_dtype(device.type)})" if args.amp else ""
    print(f"gpugrad {gpugrad.__version__}: training on {device} ({where}){precision}")

    gpugrad.manual_seed(args.seed)
    shuffle = numpy.random.default_rng(args.seed)
    digits = load_digits()
    features = (digits.data / 16.0).astype(numpy.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, digits.target, test_size=0.25, random_state=args.seed, stratify=digits.target)
    x_train, x_test = gpugrad.tensor(x_train, device=device), gpugrad.tensor(x_test, device=device)
    y_train, y_test = gpugrad.tensor(y_train, device=device), gpugrad.tensor(y_test, device=device)

    model = build_model(args.hidden).to(device)
    optimizer = gpugrad.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = gpugrad.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    # float16 needs loss scaling (small gradients underflow); bfloat16 has float32's range and does not
    scaler = gpugrad.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")

    history = {"loss": [], "train_accuracy": [], "test_accuracy": []}
    n = x_train.shape[0]
    started = time.perf_counter()
    bar = tqdm(range(1, args.epochs + 1), desc="epochs", disable=args.quiet, unit="epoch")
    for epoch in bar:
        order = gpugrad.tensor(shuffle.permutation(n), device=device)
        total, batches = 0.0, 0
        for start in range(0, n, args.batch_size):
            index = order[start:start + args.batch_size]
            with gpugrad.autocast(device.type, enabled=args.amp):
                loss = loss_fn(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
            batches += 1
            bar.set_postfix(loss=f"{total / batches:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        scheduler.step()
        history["loss"].append(total / batches)
        history["train_accuracy"].append(evaluate(model, x_train, y_train))
        history["test_accuracy"].append(evaluate(model, x_test, y_test))
    seconds = time.perf_counter() - started

    accuracy = history["test_accuracy"][-1]
    print(f"trained {args.epochs} epochs in {seconds:.1f} s; final loss {history['loss'][-1]:.4f}")
    print(f"test accuracy: {accuracy * 100:.2f}% ({x_test.shape[0]} held-out digits)")
    write_plot(history, args.plot, device)
    print(f"curves written to {args.plot}")
    if args.save:
        gpugrad.save(model.state_dict(), args.save)
        print(f"weights written to {args.save}")
    return accuracy, history


def write_plot(history, path, device):
    epochs = range(1, len(history["loss"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, history["loss"], marker="o", markersize=3)
    left.set(title="training loss (cross-entropy)", xlabel="epoch", ylabel="loss")
    left.set_yscale("log")
    right.plot(epochs, [a * 100 for a in history["train_accuracy"]], label="train")
    right.plot(epochs, [a * 100 for a in history["test_accuracy"]], label="test")
    right.set(title="accuracy", xlabel="epoch", ylabel="%")
    right.legend()
    fig.suptitle(f"gpugrad MLP on sklearn digits ({device})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
