"""An independent re-implementation, for tests only, of insightface's arcface_torch IResNet
(``recognition/arcface_torch/backbones/iresnet.py``), written from its published structure and
module names -- not copied, and never imported by the package.

insightface's class hard-codes the base width 64 (stages 64/128/256/512) and ``fc_scale = 7 * 7``
(112x112 input); here both are parameters so tiny test backbones can be checked too. With the
defaults (``width=64``, ``fc_scale=49``) the module tree, tensor names and shapes are those of
``get_model("r18" | "r34" | "r50" | "r100", fp16=False, num_features=...)``.

Layout: ``conv1`` (3x3, stride 1, no bias) - ``bn1`` - ``prelu``; ``layer1``..``layer4``, each a
``Sequential`` of ``IBasicBlock`` (``bn1, conv1, bn2, prelu, conv2(stride), bn3`` plus
``downsample = Sequential(conv1x1(stride), BN)`` where the shape changes); ``bn2`` -
flatten - ``dropout`` - ``fc`` - ``features`` (BatchNorm1d, scale fixed at 1). Every BatchNorm
has eps 1e-5; each layer's first block has stride 2.
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class InsightfaceIResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...], num_features: int = 512, width: int = 64,
                 fc_scale: int = 7 * 7, dropout: float = 0.0) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-05)
        self.prelu = nn.PReLU(width)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1])
        self.layer3 = self._make_layer(4 * width, layers[2])
        self.layer4 = self._make_layer(8 * width, layers[3])
        self.bn2 = nn.BatchNorm2d(8 * width, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(8 * width * fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_layer(self, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes, eps=1e-05))
        seq = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        seq += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


def get_model(name: str, num_features: int = 512, width: int = 64, fc_scale: int = 7 * 7) -> InsightfaceIResNet:
    """insightface's ``get_model(name, fp16=False, num_features=...)`` for the IResNets, widened to
    any ``width`` / ``fc_scale``."""
    return InsightfaceIResNet(LAYERS[name], num_features, width, fc_scale)
