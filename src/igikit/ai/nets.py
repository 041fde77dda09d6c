"""A small 2D U-Net with several output heads, sized for training in seconds on a CPU.

The encoder-decoder is the U-Net of Ronneberger et al. (MICCAI 2015) cut down to three levels and
a few channels. The last stage is ``heads`` independent linear 3 x 3 read-outs sharing the trunk
(one convolution with ``heads`` outputs): trained on different bootstrap weights of
each batch, their spread is a cheap ensemble (Lee et al., "Why M heads are better than one",
arXiv:1511.06314, 2015) for the per-pixel uncertainty.

This module imports torch: import it inside functions from anything a command line loads.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MultiHeadUNet(nn.Module):
    """U-Net, input (N, in_channels, H, W) with H and W multiples of 8; output logits (N, heads, H, W).

    Parameters
    ----------
    channels
        Feature channels at the three resolutions (full, 1/2, 1/4); the bottleneck (1/8) doubles
        the last.
    heads
        Output heads (ensemble members).
    in_channels
        Input channels: the image, and optionally a prior mask in [0, 1] as the second channel.
    prior_gain
        With a prior, the output is ``prior_gain * (prior - 0.5)`` plus the network's correction
        (a residual on the prior's logit): an untrained network returns the prior, and training
        only has to learn where the image says the prior is wrong.
    """

    def __init__(self, channels: tuple[int, int, int] = (8, 16, 32), heads: int = 3, in_channels: int = 1,
                 prior_gain: float = 8.0) -> None:
        super().__init__()
        self.prior_gain = prior_gain if in_channels >= 2 else 0.0
        c1, c2, c3 = channels
        self.heads = heads
        self.enc1 = _block(in_channels, c1)
        self.enc2 = _block(c1, c2)
        self.enc3 = _block(c2, c3)
        self.bottom = _block(c3, 2 * c3)
        self.pool = nn.MaxPool2d(2)
        self.up3 = nn.ConvTranspose2d(2 * c3, c3, 2, stride=2)
        self.dec3 = _block(2 * c3, c3)
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = _block(2 * c2, c2)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = _block(2 * c1, c1)
        # One linear 3 x 3 read-out per head: no hidden units that could die and silence a head.
        self.head_out = nn.Conv2d(c1, heads, 3, padding=1)
        if self.prior_gain:
            nn.init.normal_(self.head_out.weight, std=0.01)  # start close to the prior
            if self.head_out.bias is not None:
                nn.init.zeros_(self.head_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottom(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        out: torch.Tensor = self.head_out(d1)
        if self.prior_gain:
            out = out + self.prior_gain * (x[:, 1:2] - 0.5)
        return out
