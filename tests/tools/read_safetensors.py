#!/usr/bin/env python3
"""An independent reader of safetensors files, written from the format's spec with json and
numpy (PyTorch when it is installed), used by ddactor's tests to show that files written by
ddactor's C++ writer are readable by Python and by PyTorch.

Usage: read_safetensors.py FILE

Prints one JSON object: {name: {"dtype", "shape", "sum", "torch_dtype"?}, "__metadata__": {...}}.
"sum" is an exact integer for integer and bool dtypes and a float otherwise; "torch_dtype" is
present when the tensor went through PyTorch (torch.from_numpy, and a bit view for BF16).
Exits non-zero with a message on stderr when the file breaks the format.
"""

import json
import struct
import sys

import numpy as np

try:
    import torch
except ImportError:  # numpy alone still checks the file and the sums
    torch = None

NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",  # BF16: raw bits, converted below
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def bf16_bits_to_float32(bits):
    # bfloat16 is the upper half of a float32.
    return (bits.astype(np.uint32) << 16).view(np.float32)


def to_summary(dtype, shape, raw):
    array = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype]).reshape(shape)
    entry = {"dtype": dtype, "shape": list(shape)}
    if torch is not None:
        if dtype == "BF16":
            tensor = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(array.copy())
        entry["torch_dtype"] = str(tensor.dtype)
        if dtype in FLOAT_DTYPES:
            entry["sum"] = float(tensor.double().sum().item())
        else:
            entry["sum"] = int(tensor.to(torch.int64).sum().item())
    else:
        if dtype == "BF16":
            array = bf16_bits_to_float32(array)
        if dtype in FLOAT_DTYPES:
            entry["sum"] = float(array.astype(np.float64).sum())
        else:
            entry["sum"] = int(array.astype(np.int64).sum())
    return entry


def read(path):
    with open(path, "rb") as file:
        content = file.read()
    if len(content) < 8:
        raise ValueError("file shorter than the 8-byte header size")
    (header_size,) = struct.unpack("<Q", content[:8])
    if 8 + header_size > len(content):
        raise ValueError("header size past the end of the file")
    header = json.loads(content[8:8 + header_size].decode("utf-8"))
    buffer = memoryview(content)[8 + header_size:]

    summary = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in info.items()):
                raise ValueError("__metadata__ must map strings to strings")
            summary[name] = info
            continue
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{name}: fields {sorted(info)}")
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
        if end - begin != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise ValueError(f"{name}: {end - begin} bytes do not match {dtype} {shape}")
        spans.append((begin, end, name))
        summary[name] = to_summary(dtype, shape, bytes(buffer[begin:end]))

    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ValueError(f"{name}: data does not start where the previous tensor ended")
        position = end
    if position != len(buffer):
        raise ValueError("data buffer not covered exactly by the tensors")
    return summary


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        summary = read(sys.argv[1])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        print(f"{sys.argv[1]}: {error}", file=sys.stderr)
        return 1
    json.dump(summary, sys.stdout, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
