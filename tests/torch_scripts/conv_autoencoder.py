"""A convolutional denoising autoencoder as the classic blog and course
versions write it (Conv2d + ReLU + MaxPool2d(return_indices) down,
MaxUnpool-free up paths: nn.Upsample(nearest) + Conv2d in one decoder,
ConvTranspose2d(stride 2) in the other), MSELoss against the clean image,
Adam with weight decay, a ReduceLROnPlateau scheduler, and the latent
codes' statistics.  Adapted to small local data: 12x12 checkerboards and
gradients with NumPy noise, the weights from NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(8)
torch.manual_seed(0)
yy, xx = np.mgrid[:12, :12]
clean = np.stack([((xx // k + yy // k) % 2) * 1.0 for k in (2, 3, 4, 6)] +
                 [xx / 11.0, yy / 11.0, (xx + yy) / 22.0, np.abs(xx - yy) / 11.0])[:, None]
noisy = clean + 0.2 * rng.standard_normal(clean.shape)
clean_t, noisy_t = torch.from_numpy(clean), torch.from_numpy(noisy)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        return self.pool(F.relu(self.conv2(x)))


class UpsampleDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv1 = nn.Conv2d(4, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, z):
        x = F.relu(self.conv1(self.up(z)))
        return torch.sigmoid(self.conv2(self.up(x)))


class TransposedDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.t_conv1 = nn.ConvTranspose2d(4, 6, 2, stride=2)
        self.t_conv2 = nn.ConvTranspose2d(6, 1, 2, stride=2)

    def forward(self, z):
        return torch.sigmoid(self.t_conv2(F.relu(self.t_conv1(z))))


for decoder in (UpsampleDecoder(), TransposedDecoder()):
    model = nn.Sequential(Encoder(), decoder).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.4, 0.4, tuple(p.shape))))
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1)
    for epoch in range(1, 13):
        train_loss = 0.0
        for i in range(0, 8, 4):
            optimizer.zero_grad()
            outputs = model(noisy_t[i:i + 4])
            loss = criterion(outputs, clean_t[i:i + 4])
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * 4
        train_loss = train_loss / 8
        scheduler.step(train_loss)
        if epoch % 4 == 0:
            print("Epoch: {} \tTraining Loss: {:.6f} lr {}".format(epoch, train_loss, optimizer.param_groups[0]["lr"]))
    with torch.no_grad():
        codes = model[0](noisy_t)
        print(type(decoder).__name__, codes.shape, codes.mean().item(), model(noisy_t).std().item())
