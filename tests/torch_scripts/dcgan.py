"""Deep Convolutional GAN (pytorch/examples, dcgan/main.py, BSD 3-Clause
licence, (c) PyTorch contributors): the Generator of ConvTranspose2d,
BatchNorm2d, ReLU and Tanh, the Discriminator of Conv2d, BatchNorm2d,
LeakyReLU and Sigmoid, weights_init through Module.apply, BCELoss, Adam with
betas (0.5, 0.999), real_label/fake_label with fill_, fake.detach() for the
discriminator's step.  Adapted to small local data: 16x16 "images" of
blurred stripes, tiny widths, a few iterations, the weights and the noise
from NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

torch.manual_seed(999)
torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(999)
device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
nc, nz, ngf, ndf, batch_size = 1, 4, 4, 4, 8

rows = np.arange(16)[:, None] + np.arange(16)[None, :]
dataset = np.stack([np.sin(rows * f) for f in np.linspace(0.2, 1.0, 32)])[:, None]
dataloader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(dataset)),
                                         batch_size=batch_size, shuffle=False)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.copy_(torch.from_numpy(rng.normal(0.0, 0.02, tuple(m.weight.shape))))
    elif classname.find("BatchNorm") != -1:
        m.weight.data.copy_(torch.from_numpy(rng.normal(1.0, 0.02, tuple(m.weight.shape))))
        m.bias.data.fill_(0)


class Generator(nn.Module):
    def __init__(self):
        super(Generator, self).__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh()
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


netG = Generator().to(device)
netG.apply(weights_init)
netD = Discriminator().to(device)
netD.apply(weights_init)
print(netG)
criterion = nn.BCELoss()
fixed_noise = torch.from_numpy(rng.standard_normal((batch_size, nz, 1, 1))).to(device)
real_label, fake_label = 1, 0
optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))

for epoch in range(3):
    for i, data in enumerate(dataloader, 0):
        netD.zero_grad()
        real_cpu = data[0].to(device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)
        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.from_numpy(rng.standard_normal((batch_size, nz, 1, 1))).to(device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        if i % 2 == 0:
            print("[%d/%d][%d/%d] Loss_D: %.4f Loss_G: %.4f D(x): %.4f D(G(z)): %.4f / %.4f"
                  % (epoch, 3, i, len(dataloader), errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
with torch.no_grad():
    fake = netG(fixed_noise)
print(fake.shape, fake.mean().item(), fake.std().item())
