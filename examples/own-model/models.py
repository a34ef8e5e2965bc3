"""PyTorch models for gut's walkthrough (docs/own-model.md).

LeNet5 is also the PyTorch definition of gut's built-in `lenet5`: the state dict in a zoo run's
model-final.pt loads into it with `load_state_dict` (same names, same shapes, same function).
SmallCNN has BatchNorm (buffers that each agent keeps) and dropout; MLPRegressor is for
`model.loss: mse`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """gut's lenet5 (docs/algorithms.md section 5.1): 1x28x28 in, `classes` logits out."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SmallCNN(nn.Module):
    """A small convolutional classifier with BatchNorm and dropout, for 1x28x28 images."""

    def __init__(self, classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16 * 7 * 7, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(x.flatten(1)))


class MLPRegressor(nn.Module):
    """Features in, `outputs` real values out."""

    def __init__(self, features: int, outputs: int = 1, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, outputs))

    def forward(self, x):
        return self.net(x)
