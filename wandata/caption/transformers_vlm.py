"""``transformers``: a local Hugging Face vision-language model, in-process.

Qwen2.5-VL by default; any model that ``AutoModelForImageTextToText`` loads and
whose processor has a chat template taking several images works the same way.
Clips are captioned in batches (left-padded, greedy decoding) on the GPU when
there is one. The model loads on the first batch, so building the captioner to
check its options is cheap.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from wandata.caption.base import Captioner, CaptionerError, ClipInput, Option, Result, as_bool
from wandata.caption.template import PROMPT_OPTIONS, prompt_template, render

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


class TransformersCaptioner(Captioner):
    name = "transformers"
    options = {
        "model": Option(DEFAULT_MODEL, "local folder or Hugging Face hub id of the model"),
        **PROMPT_OPTIONS,
        "frames": Option(8, "frames sampled across the clip and given to the model as images", int),
        "max_side": Option(0, "shrink frames so their longer side is at most this (0: the processor decides)", int),
        "batch_size": Option(4, "clips per forward pass", int),
        "max_new_tokens": Option(256, "most tokens generated per caption", int),
        "device": Option("auto", "auto (GPU when present), cpu, cuda, cuda:1, ..."),
        "dtype": Option("auto", "auto (bfloat16 on GPU, float32 on CPU), bfloat16, float16, float32"),
        "attn": Option("", "attention implementation, e.g. sdpa or flash_attention_2 (empty: default)"),
        "local_only": Option(False, "never download; load from a local folder or the cache only", as_bool),
        "trust_remote_code": Option(False, "allow model code from the hub (only for models you trust)", as_bool),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        if importlib.util.find_spec("transformers") is None:
            raise CaptionerError("the transformers captioner needs the transformers package: "
                                 "pip install 'wandata[caption]'")
        self.prompt = prompt_template(self.opts)
        self.batch_size = max(1, self.opts["batch_size"])
        self.model = self.processor = None

    def label(self) -> str:
        return f"transformers:{self.opts['model']}"

    def _load(self) -> None:
        import torch
        import transformers

        o = self.opts
        device = o["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                 "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(o["dtype"])
        if dtype is None:
            raise CaptionerError(f"--opt dtype={o['dtype']!r} is not one of auto, bfloat16, float16, float32")
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        kw = {"local_files_only": o["local_only"], "trust_remote_code": o["trust_remote_code"]}
        source = str(Path(o["model"]).expanduser()) if Path(o["model"]).expanduser().exists() else o["model"]
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(source, **kw)
            self.model = auto.from_pretrained(source, dtype=dtype, **kw,
                                              **({"attn_implementation": o["attn"]} if o["attn"] else {}))
        except Exception as e:  # noqa: BLE001 - every loading failure has the same remedy
            raise CaptionerError(f"could not load the vision-language model {o['model']!r} ({type(e).__name__}: "
                                 f"{e}); give a local folder or a hub id of a model with image input "
                                 "(e.g. Qwen/Qwen2.5-VL-7B-Instruct)") from e
        self.model.to(device).eval()
        self.dtype = dtype
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
        if not getattr(self.processor, "chat_template", None):
            raise CaptionerError(f"the processor of {o['model']!r} has no chat template; use an instruction-tuned "
                                 "(chat) vision-language model")

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        if self.model is None:
            self._load()
        results: list[Result | None] = [None] * len(items)
        ready = []
        for i, item in enumerate(items):
            try:
                ready.append((i, item, item.frames(self.opts["frames"], self.opts["max_side"])))
            except Exception as e:  # noqa: BLE001 - an unreadable clip is this clip's error
                results[i] = Result(error=f"could not sample frames from {item.path} ({type(e).__name__}: {e})")
        if ready:
            for (i, _, _), r in zip(ready, self._generate_or_split(ready)):
                results[i] = r
        return [r or Result(error="no result") for r in results]

    def _generate_or_split(self, ready) -> list[Result]:
        import torch
        try:
            return [Result(text=t) for t in self._generate(ready)]
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(ready) == 1:
                return [Result(error=f"out of GPU memory captioning {ready[0][1].clip_id}; lower --opt frames "
                                     "or --opt max_side, or use a smaller model")]
            # One clip at a time fits where a batch did not.
            return [r for one in ready for r in self._generate_or_split([one])]

    def _generate(self, ready) -> list[str]:
        import torch

        texts, images = [], []
        for _, item, frames in ready:
            prompt = render(self.prompt, item.fields({"k": len(frames)}))
            content = [*({"type": "image"} for _ in frames), {"type": "text", "text": prompt}]
            texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                            tokenize=False, add_generation_prompt=True))
            images.append(list(frames))
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.opts["max_new_tokens"], do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)

    def close(self) -> None:
        self.model = self.processor = None
