"""Super-resolution with an efficient sub-pixel convolution
(pytorch/examples, super_resolution/model.py and main.py, BSD 3-Clause
licence, (c) PyTorch contributors): Net of four convolutions and
nn.PixelShuffle(upscale_factor), _initialize_weights with init.orthogonal_
and calculate_gain('relu'), MSELoss, Adam, and PSNR = 10 log10(1 / mse);
the bilinear F.interpolate baseline next to it.  Adapted to small local
data: 12x12 patterns downsampled with F.avg_pool2d, the orthogonal weights
drawn from NumPy (QR of a Gaussian), float64."""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init
import torch.optim as optim

rng = np.random.default_rng(5)
torch.manual_seed(123)


def orthogonal_(tensor, gain=1):
    rows, cols = tensor.shape[0], tensor[0].numel()
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    q = q.T if rows < cols else q
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(gain * q[:rows, :cols]).view_as(tensor))
    return tensor


class Net(nn.Module):
    def __init__(self, upscale_factor):
        super(Net, self).__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 8, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(8, 8, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(8, 4, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(4, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        self._initialize_weights()

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        x = self.pixel_shuffle(self.conv4(x))
        return x

    def _initialize_weights(self):
        orthogonal_(self.conv1.weight, init.calculate_gain("relu"))
        orthogonal_(self.conv2.weight, init.calculate_gain("relu"))
        orthogonal_(self.conv3.weight, init.calculate_gain("relu"))
        orthogonal_(self.conv4.weight)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            init.zeros_(conv.bias)


yy, xx = np.mgrid[:12, :12] / 12.0
targets = np.stack([np.sin(2 * np.pi * (a * xx + b * yy)) * 0.5 + 0.5
                    for a, b in rng.uniform(0.3, 1.5, (24, 2))])[:, None]
target = torch.from_numpy(targets)
input = F.avg_pool2d(target, 2)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(input, target), batch_size=8)
model = Net(upscale_factor=2).double()
print(model.pixel_shuffle, init.calculate_gain("relu"), init.calculate_gain("leaky_relu", 0.2))
criterion = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
for epoch in range(1, 6):
    epoch_loss = 0
    for iteration, batch in enumerate(loader, 1):
        input_batch, target_batch = batch[0], batch[1]
        optimizer.zero_grad()
        loss = criterion(model(input_batch), target_batch)
        epoch_loss += loss.item()
        loss.backward()
        optimizer.step()
    print("===> Epoch {} Complete: Avg. Loss: {:.6f}".format(epoch, epoch_loss / len(loader)))
    with torch.no_grad():
        mse = criterion(model(input), target)
        psnr = 10 * math.log10(1 / mse.item())
        baseline = criterion(F.interpolate(input, scale_factor=2, mode="bilinear", align_corners=False), target)
        nearest = criterion(F.interpolate(input, size=(12, 12), mode="nearest"), target)
    print("===> Avg. PSNR: {:.4f} dB (bilinear {:.4f} dB, nearest {:.4f} dB)".format(
        psnr, 10 * math.log10(1 / baseline.item()), 10 * math.log10(1 / nearest.item())))
print(F.pixel_unshuffle(target[:1], 2).shape)
