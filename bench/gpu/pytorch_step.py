#!/usr/bin/env python3
"""The training step ddactor_gpu_step_bench measures, written in Python PyTorch eager: the
baseline of scripts/gpu-check.sh's ratio (ddactor samples/s over these).

  dit-b2     The same DiT-B/2 as models/dit.cpp (patch embedding, fixed sin-cos positions,
             timestep MLP, class embedding with a null class, adaLN-Zero blocks with plain
             softmax attention and exact GELU, final adaLN layer) on 4 x 32 x 32 latents, flow
             matching with logit-normal times and 10% class dropout, AdamW, EMA.
  sd15-unet  diffusers' UNet2DConditionModel from the same config.json at 4 x 64 x 64 latents,
             epsilon-prediction DDPM loss, AdamW, no EMA (needs diffusers; skipped without it).

Prints one JSON line like the C++ bench. Nothing is asserted.

  pytorch_step.py --model dit-b2 --device cuda:0 --precision bf16 --batch 32
"""
import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sincos_1d(dim, positions):
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim, grid):
    coords = torch.arange(grid, dtype=torch.float64)
    a, b = torch.meshgrid(coords, coords, indexing="xy")
    return torch.cat([sincos_1d(dim // 2, a), sincos_1d(dim // 2, b)], dim=1).float()


def timestep_frequencies(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.cos(), args.sin()], dim=1)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, l, d = x.shape
        h = d // self.heads
        q, k, v = self.qkv(x).reshape(n, l, 3, self.heads, h).permute(2, 0, 3, 1, 4)
        weights = ((q * (1.0 / math.sqrt(h))) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, l, d))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.ada_ln = nn.Linear(dim, 6 * dim)

    def forward(self, x, c):
        s1, c1, g1, s2, c2, g2 = self.ada_ln(F.silu(c)).chunk(6, dim=1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, c1))
        return x + g2[:, None] * self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), s2, c2))))


class DiT(nn.Module):
    def __init__(self, size=32, channels=4, patch=2, dim=768, depth=12, heads=12, classes=1000):
        super().__init__()
        self.patch, self.channels, self.classes = patch, channels, classes
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(dim, size // patch))
        self.t_fc1 = nn.Linear(256, dim)
        self.t_fc2 = nn.Linear(dim, dim)
        self.labels = nn.Embedding(classes + 1, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_linear = nn.Linear(dim, patch * patch * channels)
        self.final_ada_ln = nn.Linear(dim, 2 * dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in [self.final_ada_ln, self.final_linear] + [b.ada_ln for b in self.blocks]:
            nn.init.zeros_(m.weight)

    def forward(self, x, t, labels):
        n, _, height, width = x.shape
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_fc2(F.silu(self.t_fc1(timestep_frequencies(t * 1000.0, 256))))
        c = c + self.labels(labels)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada_ln(F.silu(c)).chunk(2, dim=1)
        h = self.final_linear(modulate(self.final_norm(h), shift, scale))
        p, g = self.patch, height // self.patch
        h = h.reshape(n, g, g, p, p, self.channels).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(n, self.channels, height, width)


def peak_memory(device):
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["dit-b2", "sd15-unet"], default="dit-b2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--unet-config", default="")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    n = args.batch
    ema = None
    if args.model == "dit-b2":
        model = DiT().to(device)
        ema = [p.detach().clone() for p in model.parameters()]
        latents = torch.randn(n, 4, 32, 32)
        labels = torch.arange(n) * 37 % 1000
    else:
        try:
            from diffusers import UNet2DConditionModel
        except ImportError:
            print(json.dumps({"runner": "pytorch", "model": args.model, "skipped":
                              "diffusers is not installed"}))
            return 0
        with open(args.unet_config) as f:
            config = json.load(f)
        model = UNet2DConditionModel.from_config(config).to(device)
        latents = torch.randn(n, 4, 64, 64)
        context = torch.randn(1, 77, 768, device=device)
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1 - betas, 0).float().to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    generator = torch.Generator().manual_seed(1)

    def step():
        x0 = latents.pin_memory().to(device, non_blocking=True) if device.type == "cuda" \
            else latents
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if args.model == "dit-b2":
                noise = torch.randn(x0.shape, generator=generator).to(device)
                t = torch.sigmoid(torch.randn(n, generator=generator)).to(device)
                dropped = (torch.rand(n, generator=generator) < 0.1).to(device)
                y = torch.where(dropped, torch.full_like(labels, 1000), labels).to(device)
                tb = t[:, None, None, None]
                prediction = model((1 - tb) * x0 + tb * noise, t, y)
                loss = (prediction.float() - (noise - x0)).pow(2).mean()
            else:
                noise = torch.randn(x0.shape, generator=generator).to(device)
                steps = torch.randint(0, 1000, (n,), generator=generator).to(device)
                a = alphas_cumprod[steps][:, None, None, None]
                noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
                prediction = model(noisy, steps, context.expand(n, -1, -1)).sample
                loss = (prediction.float() - noise).pow(2).mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=False)
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - 0.999)
        return loss.item()

    for _ in range(args.warmup):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    print(json.dumps({"runner": "pytorch", "model": args.model, "device": args.device,
                      "precision": args.precision, "batch": n, "steps": args.steps,
                      "samples_per_second": n * args.steps / seconds,
                      "peak_memory_bytes": peak_memory(device),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "loss": loss, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
