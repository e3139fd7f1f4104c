"""Checks that a random model folder written by `npm run models -- random` loads in Hugging Face
transformers exactly like a real openai/clip-vit-base-patch32 folder, and that CLIPModel computes the
same embeddings as the folder's weights imply. Usage: .venv/bin/python tools/check_random_model_loads.py DIR/clip
"""
import sys

import torch
from transformers import CLIPModel, CLIPTokenizerFast

folder = sys.argv[1]
model = CLIPModel.from_pretrained(folder)
tok = CLIPTokenizerFast.from_pretrained(folder)
ids = tok(["a photo of a cat", "a watercolor painting"], padding="max_length", max_length=77, return_tensors="pt")
size = model.config.vision_config.image_size
with torch.no_grad():
    out = model(input_ids=ids.input_ids, pixel_values=torch.zeros(1, 3, size, size))
print("loaded", type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters")
print("ids", ids.input_ids[0, :8].tolist())
print("logits_per_image", out.logits_per_image.tolist())
