"""A small U-Net for segmentation in the style of milesial/Pytorch-UNet
(unet/unet_parts.py and unet_model.py, GPL-3.0 licence, (c) milesial):
DoubleConv, Down (MaxPool2d then DoubleConv), Up with either
nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True) or
nn.ConvTranspose2d, F.pad to the skip's size and torch.cat, OutConv; trained
with BCEWithLogitsLoss plus a Dice loss under RMSprop.  Adapted to small
local data: 16x16 images of discs with their masks, InstanceNorm2d(affine)
instead of BatchNorm, tiny widths, the weights from NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import optim

rng = np.random.default_rng(11)


class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(mid_channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.ReLU(inplace=True)
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels, n_classes, bilinear=False):
        super(UNet, self).__init__()
        self.inc = DoubleConv(n_channels, 4)
        self.down1 = Down(4, 8)
        factor = 2 if bilinear else 1
        self.down2 = Down(8, 16 // factor)
        self.up1 = Up(16, 8 // factor, bilinear)
        self.up2 = Up(8, 4, bilinear)
        self.outc = nn.Conv2d(4, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x = self.up1(x3, x2)
        x = self.up2(x, x1)
        return self.outc(x)


def dice_coeff(input, target, epsilon=1e-6):
    inter = 2 * (input * target).sum(dim=(-1, -2))
    sets_sum = input.sum(dim=(-1, -2)) + target.sum(dim=(-1, -2))
    sets_sum = torch.where(sets_sum == 0, inter, sets_sum)
    dice = (inter + epsilon) / (sets_sum + epsilon)
    return dice.mean()


yy, xx = np.mgrid[:15, :15]
centres = rng.uniform(4, 11, (8, 2))
masks = (np.hypot(xx[None] - centres[:, :1, None], yy[None] - centres[:, 1:, None]) < 3.5).astype(float)
images = torch.from_numpy((masks + 0.4 * rng.standard_normal(masks.shape))[:, None])
true_masks = torch.from_numpy(masks[:, None])
for bilinear in (False, True):
    model = UNet(n_channels=1, n_classes=1, bilinear=bilinear).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.4, 0.4, tuple(p.shape))))
    optimizer = optim.RMSprop(model.parameters(), lr=1e-3, weight_decay=1e-8, momentum=0.9)
    criterion = nn.BCEWithLogitsLoss()
    for epoch in range(6):
        masks_pred = model(images)
        loss = criterion(masks_pred, true_masks)
        loss += 1 - dice_coeff(F.sigmoid(masks_pred), true_masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if epoch % 2 == 1:
            print("bilinear" if bilinear else "transposed", epoch, round(loss.item(), 6))
    model.eval()
    with torch.no_grad():
        pred = (F.sigmoid(model(images)) > 0.5).float()
        print("dice", dice_coeff(pred, true_masks).item(), model.up1.up)
