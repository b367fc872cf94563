#!/usr/bin/env python3
"""Makes small TorchScript feature extractors and the outputs ddactor must get from them, for
tests/models/feature_extractor_test.cpp.

Usage: make_feature_module.py OUT_DIR

Writes into OUT_DIR:
  rgb_maps.pt    traced conv net: (N, 3, 16, 16) -> (N, 8, 7, 7) feature maps (ddactor averages
                 them over the trailing dims)
  grey_flat.pt   traced conv + linear: (N, 1, 10, 10) -> (N, 5)
  tuple_out.pt   traced module returning ((N, 2) channel means, input)
  scalar_out.pt  traced module returning a 0-d tensor (ddactor must refuse it)
  expected.safetensors  the test images (uint8, CHW) and the expected features (F32):
      rgb_images [6, 3, 12, 12], rgb_expected [6, 8]   (resized to 16x16, ImageNet-normalised)
      grey_images [5, 1, 10, 10], grey_expected [5, 5] (native size, values in [-1, 1])
      tuple_expected [5, 1]                            (grey images through tuple_out.pt)

The preprocessing here is written from ddactor's documentation (feature_extractor.hpp), not
from its code: x = u8 / 127.5 - 1; bilinear resize with align_corners=False; for RGB,
((x + 1) / 2 - mean) / std with the ImageNet statistics.
"""

import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class RgbMaps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x):
        return torch.tanh(self.conv(x))


class GreyFlat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class TupleOut(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3)) * 2.0, x


class ScalarOut(torch.nn.Module):
    def forward(self, x):
        return x.sum()


def save_safetensors(path, tensors):
    """A safetensors file from (name, tensor) pairs, written from the format's spec."""
    names = {torch.float32: "F32", torch.uint8: "U8"}
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors:
        data = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)


def to_float(images):
    return images.to(torch.float32) / 127.5 - 1.0


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    rgb_images = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    grey_images = torch.randint(0, 256, (5, 1, 10, 10), dtype=torch.uint8)

    with torch.no_grad():
        rgb = RgbMaps().eval()
        example = torch.zeros(2, 3, 16, 16)
        torch.jit.trace(rgb, example).save(os.path.join(out_dir, "rgb_maps.pt"))
        x = F.interpolate(to_float(rgb_images), size=(16, 16), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - IMAGENET_MEAN) / IMAGENET_STD
        rgb_expected = rgb(x).mean((2, 3))

        grey = GreyFlat().eval()
        torch.jit.trace(grey, torch.zeros(2, 1, 10, 10)).save(os.path.join(out_dir, "grey_flat.pt"))
        grey_expected = grey(to_float(grey_images))

        tuple_module = TupleOut().eval()
        torch.jit.trace(tuple_module, torch.zeros(2, 1, 10, 10)).save(
            os.path.join(out_dir, "tuple_out.pt"))
        tuple_expected = tuple_module(to_float(grey_images))[0]

        torch.jit.trace(ScalarOut().eval(), torch.zeros(2, 1, 10, 10)).save(
            os.path.join(out_dir, "scalar_out.pt"))

    save_safetensors(os.path.join(out_dir, "expected.safetensors"), [
        ("rgb_images", rgb_images), ("rgb_expected", rgb_expected.to(torch.float32)),
        ("grey_images", grey_images), ("grey_expected", grey_expected.to(torch.float32)),
        ("tuple_expected", tuple_expected.to(torch.float32)),
    ])


if __name__ == "__main__":
    main()
