"""The variational autoencoder of pytorch/examples (vae/main.py, BSD 3-Clause
licence, (c) PyTorch contributors): VAE (fc1, fc21, fc22, fc3, fc4),
reparameterize, the loss of binary_cross_entropy(reduction='sum') plus the
KL term, Adam, train and test loops, and decoding samples under no_grad.
Adapted to small local data: 8x8 images of soft blobs, a 2-D latent, the
weights and the reparameterisation noise from NumPy (torch's and gpugrad's
random streams differ), float64."""

import numpy as np
import torch
import torch.utils.data
from torch import nn, optim
from torch.nn import functional as F

torch.manual_seed(1)
rng = np.random.default_rng(1)
device = torch.device("cpu")
torch.set_default_dtype(torch.float64)

yy, xx = np.mgrid[:8, :8]
centres = rng.uniform(1.5, 5.5, (96, 2))
images = np.exp(-((xx[None] - centres[:, :1, None]) ** 2 + (yy[None] - centres[:, 1:, None]) ** 2) / 3.0)
train_loader = torch.utils.data.DataLoader(torch.from_numpy(images[:64].reshape(64, 1, 8, 8)), batch_size=16)
test_loader = torch.utils.data.DataLoader(torch.from_numpy(images[64:].reshape(32, 1, 8, 8)), batch_size=16)


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc21 = nn.Linear(32, 2)
        self.fc22 = nn.Linear(32, 2)
        self.fc3 = nn.Linear(2, 32)
        self.fc4 = nn.Linear(32, 64)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.from_numpy(rng.standard_normal(tuple(std.shape)))
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 64))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


model = VAE().to(device)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, tuple(p.shape))))
optimizer = optim.Adam(model.parameters(), lr=1e-2)


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 64), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    model.train()
    train_loss = 0
    for batch_idx, data in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    print("====> Epoch: {} Average loss: {:.4f}".format(epoch, train_loss / len(train_loader.dataset)))


def test(epoch):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, data in enumerate(test_loader):
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
            if i == 0:
                n = min(data.size(0), 4)
                comparison = torch.cat([data[:n], recon_batch.view(16, 1, 8, 8)[:n]])
    test_loss /= len(test_loader.dataset)
    print("====> Test set loss: {:.4f}".format(test_loss), comparison.shape)


for epoch in range(1, 6):
    train(epoch)
    test(epoch)
    with torch.no_grad():
        sample = torch.from_numpy(rng.standard_normal((4, 2))).to(device)
        sample = model.decode(sample).cpu()
        print(sample.view(4, 1, 8, 8).mean(dim=(1, 2, 3)))
