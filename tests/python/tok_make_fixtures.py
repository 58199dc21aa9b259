"""Writes tokenizer parity fixtures for the C++ HfParity gtests.

Usage: tok_make_fixtures.py OUT_DIR

For each tokenizer (the default model's vocabulary rebuilt as an HF tokenizer, plus tiny ones
trained here in Llama-3, Qwen2 and Llama-2/SentencePiece style) it saves tokenizer.json (and a
tokenizer_config.json), and records the HF `tokenizers` ids and decoded text for a corpus of hard
strings in OUT_DIR/manifest.json. For the GGUF it also dumps the tokenizer.ggml.* fields to
smollm_spec.json so the C++ side can build a TokenizerSpec exactly as from GGUF.
"""
import json
import os
import random
import sys
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

DEFAULT_GGUF = Path.home() / ".cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Hello world! 123",
    "\n",
    "",
    " ",
    "   leading and trailing   ",
    "tabs\tand\t\ttabs\t",
    "line one\nline two\n\n\nline five\r\nwindows\r\n",
    "trailing newline then spaces\n   ",
    "   \n\t  \n",
    "1234567890123456789 and 3.14159 and 1,000,000 and 0x1F",
    "I'm sure you'll see they've done what we'd said; it's John's. DON'T SHOUT, I'LL STOP",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "emoji 😀😃 thumbs 👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 heart ❤️",
    "中文测试：你好，世界！日本語のテキスト。한국어 텍스트",
    "العربية: مرحبا بالعالم. हिन्दी: नमस्ते दुनिया",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0330 and precomposed é ä ñ",
    "Zürich, São Paulo, Kraków, Ελληνικά, русский язык",
    "non-breaking\u00a0space and\u2003em space and\u3000ideographic",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text <|im_end|> end",
    "<s>[INST] what? [/INST]</s>",
    "<|begin_of_text|>Hello<|eot_id|>",
    "$$$ !!! ??? ... --- === ### @@@ ~~~ ^^^",
    "A" * 50 + " " + "ab" * 30,
    "   multiple   spaces   between   words   ",
    "CamelCaseWords and snake_case_words and kebab-case-words",
    "mixed123numbers456with789letters",
    "ﬁ ligature, ½ fraction, ² superscript, Ⅻ roman numeral, ① circled",
]

TRAIN_TEXT = CORPUS + [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Once upon a time there was a little model that learned to tokenize text.",
    "Numbers like 42, 1999 and 2024 appear often in text about history and science.",
    "She said: \"I can't believe it's already done!\" and he replied \"we'll see\".",
    "import numpy as np\nx = np.zeros((3, 4))\nprint(x.shape)\n",
] * 4


# Fresh random strings each run (the seed is printed and stored in the manifest).
ALPHABET = (list("abcXYZ019 _-'.,;!?()<>|/\\\"") + [" ", " ", "  ", "\n", "\t", "\r\n", "'s", "'LL"]
            + list("éßøЖжλ中文字日本한글ع") + ["😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "e\u0301", "\u00a0", "\u3000",
            "½", "²", "١٢٣", "<|im_end|>", "<s>", "</s>", "<|eot_id|>", "12345"])


def random_corpus(seed, count=40):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30))) for _ in range(count)]


def corpus_cases(tok, texts):
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True),
                      "round_trips": tok.decode(plain, skip_special_tokens=False) == text})
    return cases


def save(out, name, tok, config, texts):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    # Reload from disk so the ids come from exactly what the C++ side reads.
    reloaded = Tokenizer.from_file(str(d / "tokenizer.json"))
    return {"name": name, "tokenizer_json": f"{name}/tokenizer.json",
            "tokenizer_config": f"{name}/tokenizer_config.json", "cases": corpus_cases(reloaded, texts)}


def gguf_fixture(out, path, texts):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def get(key, default=None):
        field = reader.fields.get(key)
        return default if field is None else field.contents()

    spec = {
        "kind": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre", "default"),
        "tokens": get("tokenizer.ggml.tokens"),
        "token_types": get("tokenizer.ggml.token_type", []),
        "merges": get("tokenizer.ggml.merges", []),
        "bos_id": get("tokenizer.ggml.bos_token_id", -1),
        "eos_id": get("tokenizer.ggml.eos_token_id", -1),
        "unk_id": get("tokenizer.ggml.unknown_token_id", -1),
        "pad_id": get("tokenizer.ggml.padding_token_id", -1),
        "add_bos": get("tokenizer.ggml.add_bos_token", False),
        "add_eos": get("tokenizer.ggml.add_eos_token", False),
        "add_space_prefix": get("tokenizer.ggml.add_space_prefix", False),
        "chat_template": get("tokenizer.chat_template", ""),
    }
    (out / "smollm_spec.json").write_text(json.dumps(spec, ensure_ascii=False))

    tokens, types = spec["tokens"], spec["token_types"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in spec["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    config = {"bos_token": tokens[spec["bos_id"]], "eos_token": tokens[spec["eos_id"]],
              "add_bos_token": bool(spec["add_bos"]), "chat_template": spec["chat_template"]}
    fixture = save(out, "smollm", tok, config, texts)
    fixture["spec_json"] = "smollm_spec.json"
    return fixture


def byte_level_trained(out, name, texts, regex, specials, bos=None):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    config = {"eos_token": specials[-1]}
    if bos is not None:  # Llama 3 adds <|begin_of_text|> through the post-processor
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, bos_id)]),
        ])
    return save(out, name, tok, config, texts)


def spm_trained(out, texts):
    space = "\u2581"
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(space),
                                           normalizers.Replace(" ", space)])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    # Llama 2 keeps the 256 byte tokens in the model vocabulary: add them after training.
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoders.Sequence([decoders.Replace(space, " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return save(out, "spm", tok, {"bos_token": "<s>", "eos_token": "</s>"},
                texts)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    seed = int(os.environ.get("TESSERA_TOK_SEED", random.SystemRandom().randrange(1 << 30)))
    print(f"tok_make_fixtures: random corpus seed {seed} (set TESSERA_TOK_SEED to repeat)")
    texts = CORPUS + random_corpus(seed)
    fixtures = []
    gguf_path = Path(os.environ.get("TESSERA_TOK_GGUF", DEFAULT_GGUF))
    if gguf_path.exists():
        fixtures.append(gguf_fixture(out, gguf_path, texts))
    fixtures.append(byte_level_trained(out, "llama3", texts, LLAMA3_REGEX,
                                       ["<|begin_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>"))
    fixtures.append(byte_level_trained(out, "qwen2", texts, QWEN2_REGEX,
                                       ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]))
    fixtures.append(spm_trained(out, texts))
    (out / "manifest.json").write_text(json.dumps({"seed": seed, "fixtures": fixtures}, ensure_ascii=False))


if __name__ == "__main__":
    main()
