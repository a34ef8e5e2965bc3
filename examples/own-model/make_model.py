#!/usr/bin/python3
"""Builds one of models.py's models with a seed, scripts it and saves it as TorchScript.

    make_model.py --model lenet5|cnn|mlp --out FILE [--seed 12] [--classes 10]
                  [--features 8 --outputs 1] [--dropout 0.0]

The file is what gut's `model.name: torchscript` with `model.path: FILE` trains.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import LeNet5, MLPRegressor, SmallCNN  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["lenet5", "cnn", "mlp"])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--outputs", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.model == "lenet5":
        model = LeNet5(a.classes)
    elif a.model == "cnn":
        model = SmallCNN(a.classes, a.dropout)
    else:
        model = MLPRegressor(a.features, a.outputs)
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, a.out)
    n = sum(t.numel() for t in scripted.parameters())
    print(f"wrote {a.out}: {a.model}, {n} parameters, {len(list(scripted.buffers()))} buffers")


if __name__ == "__main__":
    main()
