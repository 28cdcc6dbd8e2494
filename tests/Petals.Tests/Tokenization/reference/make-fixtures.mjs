// Generates ../fixtures/tokenizer-fixtures.json: expected ids and decodes from an independent reference
// implementation (@huggingface/tokenizers, the JS port of Hugging Face tokenizers), cross-checked against
// @lenml/tokenizers (the package the shared files came from). See README.md in this folder.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const refDir = process.env.TOKREF ?? "/tmp/tokref";
const shared = process.env.PETALS_SHARED ?? path.resolve(import.meta.dirname, "../../../../../shared");
const { pathToFileURL } = await import("node:url");
const esm = (rel) => import(pathToFileURL(path.join(refDir, "node_modules", rel)).href);
const hf = await esm("@huggingface/tokenizers/dist/tokenizers.mjs");
const lenml = await esm("@lenml/tokenizers/dist/main.mjs");

const corpus = [
  "",
  "Hello world",
  " Hello world",
  "Hello world ",
  "  leading and trailing  ",
  "Hello, world! How are you today?",
  "a",
  " ",
  "  ",
  "\t",
  "\n",
  "\n\n\n",
  "line one\nline two\r\nline three\n",
  "tabs\tbetween\t\twords",
  "multiple     spaces    here",
  "trailing spaces      \n   next line",
  "1234567890",
  "3.14159265358979 and 2,718,281 and 1e-10",
  "Year 2024: 12345678901234567890 items",
  "!!!???...,,,;;;:::",
  "(parentheses) [brackets] {braces} <angles>",
  "def add(a, b):\n    return a + b\n",
  "for (int i = 0; i < n; ++i) { sum += x[i]; }",
  "const s = `template ${x}`; // comment",
  "<html><body class=\"x\">Hi</body></html>",
  "I'm sure you've seen it; they'll say we'd done it. THEY'RE HERE. It's",
  "email: someone@example.com, url: https://example.org/path?q=1&r=2",
  "😀",
  "Emoji: 😀😃😄 and 👍🏽 thumbs",
  "Family 👨‍👩‍👧‍👦 and flag 🇫🇷🇯🇵 and 🏳️‍🌈",
  "𝓗𝓮𝓵𝓵𝓸 𝔀𝓸𝓻𝓵𝓭 𝟙𝟚𝟛",
  "Rare CJK: 𠀀𠀁𪚥 and 𩸽",
  "中文测试：你好，世界！",
  "日本語のテキストです。カタカナとひらがな。",
  "한국어 텍스트입니다",
  "Café naïve résumé façade",
  "e\u0301 combining acute, a\u0308 umlaut, n\u0303",
  "Ångström ß ẞ œ Œ æ",
  "مرحبا بالعالم",
  "Привет, мир! Как дела?",
  "Γειά σου Κόσμε",
  "<|begin_of_text|>Hello",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
  "text <|end_of_text|> more",
  "<s>",
  "<s> Hello</s>",
  "Hello<s>world</s>",
  "<unk>",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "                                                                ",
  "----------------------------------------------------------------",
  "0000000000000000000000000000000000000000",
  "\u00a0non-breaking\u00a0space and\u2003em space",
  "zero\u200bwidth\u200cjoiner\u200d",
  "Mixed: abc123def 456ghi",
  "The quick brown fox jumps over the lazy dog.",
  "▁already▁has▁metaspace",
  "ĠĠbyte-level-looking Ċ",
  "\u0000\u0001\u0007 control chars",
  "A long sentence, with many words, designed to exercise the merge priority queue across multiple pre-tokenized words and caching, repeated: the the the the.",
];

// Id sequences decoded by the reference: incomplete and invalid UTF-8 from byte tokens, specials in the middle.
const decodeOnly = {
  llama3: [[76460], [76460, 222], [9906, 76460, 1917], [128000, 9906, 128001], [222, 222, 9906], [1917, 11, 220, 128009]],
  mistral: [[37, 228, 13755, 270, 157, 183, 6], [1, 28705, 243, 162], [243], [1, 22557, 2, 1526], [28705], [259, 259], [1, 1, 2, 0]],
};

// Variants of the real files that exercise components the two files do not use. The C# tests apply the same
// patch: top-level keys of tokenizer.json are replaced, and added-token flags are overridden by content.
const variants = {
  "mistral-metaspace-first": {
    base: "mistral",
    patch: {
      normalizer: null,
      pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    },
  },
  "mistral-metaspace-split-nfkc": {
    base: "mistral",
    patch: {
      normalizer: { type: "NFKC" },
      // split: false; the JavaScript references ignore split: true (Rust splits before every U+2581), which the C# unit tests cover.
      pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false },
      decoder: { type: "Sequence", decoders: [{ type: "ByteFallback" }, { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true }] },
    },
  },
  "llama3-gpt2-digits": {
    base: "llama3",
    patch: {
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true }] },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|end_of_text|>", type_id: 0 } }],
        pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: {
          "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] },
          "<|end_of_text|>": { id: "<|end_of_text|>", ids: [128001], tokens: ["<|end_of_text|>"] },
        },
      },
    },
    addedTokenFlags: { "<|eot_id|>": { lstrip: true, rstrip: true } },
  },
  "llama3-split-punct": {
    base: "llama3",
    patch: {
      normalizer: { type: "NFC" },
      pre_tokenizer: { type: "Sequence", pretokenizers: [
        { type: "Split", pattern: { Regex: "\\p{P}" }, behavior: "Isolated", invert: false },
        // A String pattern with "Removed" is mis-handled by the JavaScript references (they keep the delimiter), so
        // String is exercised with Isolated and Removed with a Regex; the C# unit tests cover the other combinations.
        { type: "Split", pattern: { String: "-" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: " " }, behavior: "Removed", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ] },
    },
  },
};
const variantExtraCorpus = ["Hi <|eot_id|>  there", "x<|eot_id|>y", "  <|eot_id|>\n\nok", "ｆｕｌｌｗｉｄｔｈ ① ﬁ", "Numbers 12345 and 3.5", "Hello,world! (yes)"];

function loadFiles(dir) {
  const json = JSON.parse(readFileSync(path.join(shared, "tokenizers", dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(path.join(shared, "tokenizers", dir, "tokenizer_config.json"), "utf8"));
  return { json, config };
}

function applyVariant(variant) {
  const { json, config } = loadFiles(variant.base);
  Object.assign(json, variant.patch);
  for (const [content, flags] of Object.entries(variant.addedTokenFlags ?? {})) {
    for (const t of json.added_tokens) if (t.content === content) Object.assign(t, flags);
    for (const t of Object.values(config.added_tokens_decoder ?? {})) if (t.content === content) Object.assign(t, flags);
  }
  return { json, config };
}

// A seeded random corpus: fragments that stress the split regex, byte fallback and added tokens, plus random
// code points from every plane in use (BMP and astral).
function randomCorpus(count, seed) {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const fragments = ["a", "the", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "1", "42", "2024", "123456", ".", ",", "!", "?", "'s", "'ll", "'", "\"", "-",
    "_", "(", ")", "<", ">", "é", "e\u0301", "ß", "Ω", "中", "文", "日本", "한", "مر", "Привет", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷",
    "𝓗", "𠀀", "\u200d", "\u00a0", "\u3000", "Hello", " world", " World", "HELLO", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
    "<|eot_id|>", "\u2581", "Ġ", "\u0000", "\u00ff", "\ud7ff", "\ufffd", "ｆｕｌｌ", "①"];
  const out = [];
  for (let i = 0; i < count; i++) {
    const parts = [];
    const n = Math.floor(next() * 12);
    for (let j = 0; j < n; j++) {
      if (next() < 0.8) parts.push(fragments[Math.floor(next() * fragments.length)]);
      else {
        let cp = 0x20 + Math.floor(next() * (0x2ffff - 0x20));
        if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
        parts.push(String.fromCodePoint(cp));
      }
    }
    out.push(parts.join(""));
  }
  return out;
}
const extraCorpus = randomCorpus(250, 20241122);

function load(lib, dir) {
  const { json, config } = variants[dir] ? applyVariant(variants[dir]) : loadFiles(dir);
  if (lib === "hf") return new hf.Tokenizer(json, config);
  return lenml.TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config });
}

function encodeHf(tok, text, special) { return Array.from(tok.encode(text, { add_special_tokens: special }).ids); }
function encodeLenml(tok, text, special) { return Array.from(tok.encode(text, { add_special_tokens: special })); }
function decodeHf(tok, ids, skip) { return ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }); }
function decodeLenml(tok, ids, skip) { return tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }); }

const out = { generator: "@huggingface/tokenizers (cross-checked with @lenml/tokenizers)", variants, tokenizers: {} };
const disagreements = [];
for (const name of ["llama3", "mistral", ...Object.keys(variants)]) {
  const a = load("hf", name);
  const b = load("lenml", name);
  const cases = [];
  for (const text of variants[name] ? corpus.concat(variantExtraCorpus) : corpus.concat(extraCorpus)) {
    const ids = encodeHf(a, text, false);
    const idsSpecial = encodeHf(a, text, true);
    const decoded = decodeHf(a, idsSpecial, false);
    const decodedSkip = decodeHf(a, idsSpecial, true);
    const lb = encodeLenml(b, text, false);
    const lbs = encodeLenml(b, text, true);
    if (JSON.stringify(lb) !== JSON.stringify(ids) || JSON.stringify(lbs) !== JSON.stringify(idsSpecial))
      disagreements.push({ tokenizer: name, text, hf: idsSpecial, lenml: lbs });
    cases.push({ text, ids, idsWithSpecial: idsSpecial, decoded, decodedSkipSpecial: decodedSkip });
  }
  out.tokenizers[name] = cases;
  if (variants[name]) continue;
  out.decodeOnly = out.decodeOnly ?? {};
  out.decodeOnly[name] = decodeOnly[name].map((ids) => {
    const decoded = decodeHf(a, ids, false);
    const decodedSkipSpecial = decodeHf(a, ids, true);
    if (decoded !== decodeLenml(b, ids, false) || decodedSkipSpecial !== decodeLenml(b, ids, true))
      disagreements.push({ tokenizer: name, ids, hf: [decoded, decodedSkipSpecial], lenml: [decodeLenml(b, ids, false), decodeLenml(b, ids, true)] });
    return { ids, decoded, decodedSkipSpecial };
  });
}
out.disagreements = disagreements;
const target = path.resolve(import.meta.dirname, "../fixtures/tokenizer-fixtures.json");
writeFileSync(target, JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${target}; ${disagreements.length} disagreement(s) between the two references`);
for (const d of disagreements) console.log(JSON.stringify(d));
