#!/usr/bin/env python3
"""Writes the PEFT LoRA adapter fixtures of tests/Petals.Tests/Formats/Peft/Fixtures.

The `peft` package (and torch) are not installed where these fixtures were made, so this script writes the two
files PEFT's `save_pretrained` produces by hand, with the standard library only:
  adapter_config.json        the LoraConfig fields PEFT serializes (peft 0.1x naming)
  adapter_model.safetensors  base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight,
                             A [r, in_features], B [out_features, r], with {"format": "pt"} metadata
for the shape of the shared stories260K model (hidden 64, intermediate 172, 5 layers, 8 heads, 4 key-value heads,
head dim 8). Values are seeded Gaussians (a trained adapter: B is not zero).

Usage: python3 tests/reference/make_peft_adapters.py
"""
import json
import os
import random
import struct

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 172, 5, 8, 4, 8
SHAPES = {  # module -> (parent, in_features, out_features)
    "q_proj": ("self_attn", HIDDEN, HEADS * HEAD_DIM),
    "k_proj": ("self_attn", HIDDEN, KV_HEADS * HEAD_DIM),
    "v_proj": ("self_attn", HIDDEN, KV_HEADS * HEAD_DIM),
    "o_proj": ("self_attn", HEADS * HEAD_DIM, HIDDEN),
    "gate_proj": ("mlp", HIDDEN, INTERMEDIATE),
    "up_proj": ("mlp", HIDDEN, INTERMEDIATE),
    "down_proj": ("mlp", INTERMEDIATE, HIDDEN),
}


def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def bf16_bits(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F16":
        return struct.pack("<%dH" % len(values), *[f16_bits(v) for v in values])
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *[bf16_bits(v) for v in values])
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, shape, values) -> the safetensors layout: u64 header length, JSON header, data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, shape, values in sorted(tensors):
        blob = encode(values, dtype)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def config(r, alpha, target_modules, use_rslora=False, layers_to_transform=None):
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": "stories260K",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": layers_to_transform,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_dropout": 0.05,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": use_rslora,
    }


def make(directory, seed, r, alpha, modules, dtype, target_modules, suffix="", use_rslora=False, layers=None):
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(seed)
    tensors = []
    for layer in range(LAYERS):
        if layers is not None and layer not in layers:
            continue
        for module in modules:
            parent, fan_in, fan_out = SHAPES[module]
            prefix = "base_model.model.model.layers.%d.%s.%s" % (layer, parent, module)
            a = [rng.gauss(0.0, 1.0 / fan_in ** 0.5) for _ in range(r * fan_in)]
            b = [rng.gauss(0.0, 0.05) for _ in range(fan_out * r)]
            tensors.append((prefix + ".lora_A" + suffix + ".weight", (r, fan_in), a))
            tensors.append((prefix + ".lora_B" + suffix + ".weight", (fan_out, r), b))
    write_safetensors(os.path.join(directory, "adapter_model.safetensors"), tensors, dtype)
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config(r, alpha, target_modules, use_rslora, layers), f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Petals.Tests", "Formats", "Peft", "Fixtures")
    # Attention and MLP adapters, rank 4, alpha 8 (scale 2), F32, target_modules as a list (in PEFT's set order).
    make(os.path.join(root, "stories260k-lora-qv-down"), 15, 4, 8, ["q_proj", "v_proj", "down_proj"], "F32",
         ["v_proj", "q_proj", "down_proj"])
    # All seven modules, rank 2, rsLoRA (scale alpha / sqrt(r)), BF16, target_modules as a regex string, PEFT's
    # older ".default" key variant, and layers_to_transform leaving block 1 unadapted.
    make(os.path.join(root, "stories260k-lora-all-bf16"), 16, 2, 4, list(SHAPES), "BF16",
         r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)", suffix=".default", use_rslora=True,
         layers=[0, 2, 3, 4])
