#!/usr/bin/python3
"""Writes a data set as the four .npy files gut's `data.dataset: npy` reads.

    make_data.py fmnist --out DIR [--idx /usr/share/datasets/fashion-mnist] [--train 6000] [--test 1000]
    make_data.py regression --out DIR [--train 4000] [--test 1000] [--features 8] [--seed 3]

fmnist: the first N images of Fashion-MNIST (Debian's dataset-fashion-mnist IDX files), x as
uint8 (N, 1, 28, 28) for training (gut scales uint8 to [0, 1]) and float32 in [0, 1] for the test
set (both kinds work), y as int64 class ids.
regression: a synthetic smooth function of `features` standard-normal inputs plus noise, x float32
(N, features), y float32 (N,).
"""
import argparse
import gzip
import os

import numpy as np


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(idx_dir, stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(idx_dir, name)):
            return os.path.join(idx_dir, name)
    raise SystemExit(f"{idx_dir}: no {stem}[.gz] (install Debian's dataset-fashion-mnist)")


def fmnist(a):
    x = read_idx(find(a.idx, "train-images-idx3-ubyte"))[: a.train]
    y = read_idx(find(a.idx, "train-labels-idx1-ubyte"))[: a.train]
    tx = read_idx(find(a.idx, "t10k-images-idx3-ubyte"))[: a.test]
    ty = read_idx(find(a.idx, "t10k-labels-idx1-ubyte"))[: a.test]
    np.save(os.path.join(a.out, "train_x.npy"), x.reshape(-1, 1, 28, 28))
    np.save(os.path.join(a.out, "train_y.npy"), y.astype(np.int64))
    np.save(os.path.join(a.out, "test_x.npy"), (tx.reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255)))
    np.save(os.path.join(a.out, "test_y.npy"), ty.astype(np.int64))


def regression(a):
    rng = np.random.default_rng(a.seed)
    w1 = rng.normal(size=a.features)
    w2 = rng.normal(size=a.features) / np.sqrt(a.features)

    def draw(n):
        x = rng.normal(size=(n, a.features))
        y = np.sin(x @ w1 / np.sqrt(a.features)) + 0.5 * (x @ w2) + 0.05 * rng.normal(size=n)
        return x.astype(np.float32), y.astype(np.float32)

    x, y = draw(a.train)
    tx, ty = draw(a.test)
    for name, arr in (("train_x", x), ("train_y", y), ("test_x", tx), ("test_y", ty)):
        np.save(os.path.join(a.out, name + ".npy"), arr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["fmnist", "regression"])
    p.add_argument("--out", required=True)
    p.add_argument("--idx", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--train", type=int, default=None)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.kind == "fmnist":
        a.train = a.train or 6000
        fmnist(a)
    else:
        a.train = a.train or 4000
        regression(a)
    print(f"wrote {a.kind} to {a.out}: {a.train} training and {a.test} test samples")


if __name__ == "__main__":
    main()
