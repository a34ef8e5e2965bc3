#!/usr/bin/python3
"""Loads a model gut wrote and scores it on a data set of .npy files, as gut scores it.

    evaluate.py --model model-final.pt --data DIR [--loss cross_entropy|mse] [--zoo NAME]
                [--norm evonorm|groupnorm]

A TorchScript model (model.name: torchscript) loads with torch.jit.load; a built-in model's file
is a state dict (torch.load) that `--zoo lenet5` loads into models.LeNet5 and `--zoo resnet20`
(resnet32/44/56, vgg11, mobilenetv2) into zoo.py's definition, with the run's model.norm as
--norm (mobilenetv2 takes the input size from the data). Prints one JSON line:
{"metric": "accuracy" or "rmse", "value": ..., "samples": N}. uint8 inputs are scaled to [0, 1],
as gut does.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import LeNet5  # noqa: E402


def load(path, zoo, norm="evonorm", input_size=32):
    if zoo is None:
        return torch.jit.load(path)
    state = torch.load(path)
    if zoo == "lenet5":
        model = LeNet5(state["fc3.bias"].shape[0])
    else:
        import zoo as zoo_models
        if zoo not in zoo_models.NAMES:
            raise SystemExit(f"--zoo {zoo}: unknown; known: lenet5, {', '.join(zoo_models.NAMES)}")
        classes = state[[k for k in state if k.endswith(".bias")][-1]].shape[0]  # the head's bias
        model = zoo_models.build(zoo, classes, norm, input_size)
    model.load_state_dict(state)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"])
    p.add_argument("--zoo", default=None)
    p.add_argument("--norm", default="evonorm", choices=["evonorm", "groupnorm"])
    p.add_argument("--batch", type=int, default=250)
    a = p.parse_args()
    x = np.load(os.path.join(a.data, "test_x.npy"))
    y = np.load(os.path.join(a.data, "test_y.npy"))
    model = load(a.model, a.zoo, a.norm, x.shape[-1])
    model.eval()
    x = torch.from_numpy(x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x)
    y = torch.from_numpy(y)
    hits, sq = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(x), a.batch):
            out = model(x[s:s + a.batch])
            if a.loss == "mse":
                t = y[s:s + a.batch].reshape(out.shape[0], -1).double()
                sq += float(((out.reshape(out.shape[0], -1).double() - t) ** 2).sum())
            else:
                hits += int((out.argmax(1) == y[s:s + a.batch]).sum())
    n = len(x)
    if a.loss == "mse":
        values = n * (y[0].numel() if y.dim() > 1 else 1)
        print(json.dumps({"metric": "rmse", "value": (sq / values) ** 0.5, "samples": n}))
    else:
        print(json.dumps({"metric": "accuracy", "value": hits / n, "samples": n}))


if __name__ == "__main__":
    main()
