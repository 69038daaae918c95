"""The ``transformers`` captioner with a tiny, randomly initialised Qwen2.5-VL built here.

Everything is made offline: a byte-level BPE tokenizer trained on two sentences,
the Qwen2-VL image processor with a small pixel budget, a chat template, and a
one-layer model. A generation-config bias makes the random model say " cat"
every step, so the test can check the decoded text exactly: it proves loading,
batching (left padding across clips with different image sizes) and decoding,
not caption quality.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from wandata.caption import caption_clips, make
from wandata.caption.transformers_vlm import TransformersCaptioner
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_qwen25_vl(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["a video of a cat walking on the grass", "the camera pans left, a cat sits"],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ids = {s: tok.token_to_id(s) for s in SPECIAL}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"})
    # A small pixel budget keeps each frame to a handful of vision tokens.
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 2, max_pixels=28 * 28 * 6)
    Qwen2_5_VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                        chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=1024, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 4]}),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id = ids["<|im_end|>"], ids["<|endoftext|>"]
    gen.sequence_bias = [[[tok.token_to_id("Ġcat")], 100.0]]
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    build_tiny_qwen25_vl(folder)
    return folder


def test_tiny_vlm_captions_the_sample_clips_in_batches(sample_dataset, tiny_vlm, monkeypatch):
    batches, devices = [], set()
    original = TransformersCaptioner._generate

    def spy(self, ready):
        batches.append((len(ready), {f[0].shape for _, _, f in ready}))
        devices.add(self.model.device.type)
        return original(self, ready)

    monkeypatch.setattr(TransformersCaptioner, "_generate", spy)
    cap = make("transformers", {"model": str(tiny_vlm), "local_only": "true", "frames": "2",
                                "batch_size": "3", "max_new_tokens": "4"})
    assert cap.label() == f"transformers:{tiny_vlm}"
    s = caption_clips(Manifest(sample_dataset), cap, progress=False)
    cap.close()
    assert s.failed == 0, s.errors
    assert s.captioned == 8 and [n for n, _ in batches] == [3, 3, 2]
    assert devices == {"cuda" if torch.cuda.is_available() else "cpu"}  # on the GPU when there is one
    assert any(len(shapes) == 2 for _, shapes in batches), "expected a batch mixing portrait and landscape clips"
    expected = "transformers:" + str(tiny_vlm)
    for c in Manifest(sample_dataset).all_clips():
        if c.status == KEPT and c.path:
            assert c.caption == "cat cat cat cat" and c.captioner == expected


def test_a_model_that_cannot_load_is_a_clear_error(sample_dataset, tmp_path):
    from wandata.caption import CaptionerError
    cap = make("transformers", {"model": str(tmp_path / "nothing-here"), "local_only": "true"})
    with pytest.raises(CaptionerError, match="could not load the vision-language model"):
        caption_clips(Manifest(sample_dataset), cap, progress=False)
