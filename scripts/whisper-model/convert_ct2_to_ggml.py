#!/usr/bin/env python3
"""Convert a CTranslate2 (faster-whisper) Whisper model to whisper.cpp's ggml format.

Python 3 standard library only (no numpy, no torch), so it runs with any python3.

Usage:
  convert_ct2_to_ggml.py --model model.bin [--model model.bin.part2 ...] \
      --mel-filters mel_filters.npz --vocab gpt2.tiktoken -o ggml-tiny.en.bin

Several --model files are concatenated in order (a model split in parts).

Input 1, the CTranslate2 binary model (version 6, spec WhisperSpec), little-endian:
  u32 version, string spec, u32 revision, u32 variable count, then per variable:
  string name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, data (row-major);
  then u32 alias count and per alias: string alias, string target.
  A string is a u16 length (counting a trailing NUL) and the bytes.
  dtype: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Scalars (rank 0) hold
  settings such as encoder/num_heads (int16).
Input 2, openai-whisper's mel_filters.npz: a zip of .npy arrays; mel_80 is 80x201 float32.
Input 3, openai-whisper's gpt2.tiktoken / multilingual.tiktoken: "base64(token) rank" per line.

Output, the ggml file that whisper.cpp's whisper_model_load reads (all little-endian i32/f32):
  magic 0x67676d6c; hparams n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
  n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype (1 = mostly f16);
  n_mel, n_fft, n_mel*n_fft f32 filter values;
  token count, then per token (in rank order) i32 length and the raw bytes: the tiktoken tokens
  (50256 in gpt2.tiktoken, 50257 in multilingual.tiktoken, whose last one is empty), and for
  English-only models `<|endoftext|>` (id 50256) appended, as in the published ggml files, which
  were made from the older vocab.json that held it (today's convert-pt-to-ggml.py drops it and
  its files are 17 bytes shorter); whisper.cpp names the other special tokens itself;
  then per tensor: i32 n_dims, i32 name length, i32 type (0 f32, 1 f16), dims innermost first
  (the reverse of the row-major shape), the name, the data. 2-D and 3-D weights are f16;
  1-D tensors, the conv biases (reshaped to [n, 1]) and both positional embeddings are f32.
  Tensors are written in the order of OpenAI's state_dict (what convert-pt-to-ggml.py writes);
  whisper.cpp finds them by name but requires exactly the tensors it expects.

Name mapping, CTranslate2 -> OpenAI (ggml):
  encoder/conv{1,2}/{weight,bias}            -> encoder.conv{1,2}.{weight,bias}
  {encoder,decoder}/position_encodings/encodings -> {encoder,decoder}.positional_embedding
  decoder/embeddings/weight                   -> decoder.token_embedding.weight
                                                 (decoder/projection/weight is an alias of it)
  encoder/layer_norm                          -> encoder.ln_post
  decoder/layer_norm                          -> decoder.ln        (gamma -> weight, beta -> bias)
  {encoder,decoder}/layer_i/ ->  {encoder,decoder}.blocks.i.
    self_attention/linear_0   (q, k, v fused: split in three row blocks) -> attn.{query,key,value}
    self_attention/linear_1                                              -> attn.out
    self_attention/layer_norm                                            -> attn_ln
    attention/linear_0        (decoder only)                             -> cross_attn.query
    attention/linear_1        (k, v fused)                               -> cross_attn.{key,value}
    attention/linear_2                                                   -> cross_attn.out
    attention/layer_norm                                                 -> cross_attn_ln
    ffn/linear_0, ffn/linear_1                                           -> mlp.0, mlp.2
    ffn/layer_norm                                                       -> mlp_ln
  Whisper's key projections have no bias: CTranslate2 stores zeros there, and they are dropped
  (a key bias only adds q.b to every score of a query, which softmax ignores, so dropping even
  a non-zero one would not change the result).
"""

import argparse
import ast
import base64
import os
import struct
import sys
import zipfile

GGML_MAGIC = 0x67676D6C
CT2_FLOAT32, CT2_INT8, CT2_INT16, CT2_INT32, CT2_FLOAT16, CT2_BFLOAT16 = 0, 1, 2, 3, 4, 5
CT2_DTYPE_SIZE = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
CT2_DTYPE_NAME = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
GGML_F32, GGML_F16 = 0, 1


class ConvertError(Exception):
    pass


class Tensor:
    """A row-major tensor: shape (outermost first), dtype (CT2 code) and raw little-endian bytes."""

    def __init__(self, shape, dtype, data):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.data = data

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def scalar(self):
        fmt = {CT2_INT8: "<b", CT2_INT16: "<h", CT2_INT32: "<i", CT2_FLOAT32: "<f"}[self.dtype]
        return struct.unpack(fmt, self.data[: struct.calcsize(fmt)])[0]


# ---------------------------------------------------------------------------------------------
# Readers


class _Reader:
    def __init__(self, data, what):
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ConvertError(
                "%s: truncated (needed %d bytes at offset %d, file has %d)"
                % (self.what, n, self.pos, len(self.data))
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        fmt = "<" + fmt
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self):
        (n,) = self.unpack("H")
        return bytes(self.take(n)).rstrip(b"\0").decode("utf-8")


def read_ct2(data, what="CTranslate2 model"):
    """Parses a CTranslate2 binary model. Returns (spec, variables dict, aliases dict)."""
    r = _Reader(memoryview(data), what)
    (version,) = r.unpack("I")
    if version > 0xFFFF:
        raise ConvertError("%s: not a CTranslate2 model (version field %#x)" % (what, version))
    if version < 6:
        raise ConvertError("%s: CTranslate2 binary version %d is not supported (need 6)" % (what, version))
    spec = r.string()
    (revision,) = r.unpack("I")
    (count,) = r.unpack("I")
    variables = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("B")
        shape = r.unpack("%dI" % rank) if rank else ()
        dtype, nbytes = r.unpack("BI")
        if dtype not in CT2_DTYPE_SIZE:
            raise ConvertError("%s: variable %s has unknown dtype %d" % (what, name, dtype))
        t = Tensor(shape, dtype, r.take(nbytes))
        if t.numel() * CT2_DTYPE_SIZE[dtype] != nbytes:
            raise ConvertError(
                "%s: variable %s: %d bytes do not match shape %s of %s"
                % (what, name, nbytes, list(shape), CT2_DTYPE_NAME[dtype])
            )
        variables[name] = t
    aliases = {}
    if r.pos < len(r.data):
        (n_alias,) = r.unpack("I")
        for _ in range(n_alias):
            alias = r.string()
            aliases[alias] = r.string()
    if r.pos != len(r.data):
        raise ConvertError("%s: %d trailing bytes after the aliases" % (what, len(r.data) - r.pos))
    return spec, revision, variables, aliases


def read_npy(data, what):
    """Parses a .npy array (float32/float64, C order). Returns (shape, list of floats)."""
    if data[:6] != b"\x93NUMPY":
        raise ConvertError("%s: not a .npy array" % what)
    major = data[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", data[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", data[8:12])
        start = 12
    header = ast.literal_eval(data[start : start + hlen].decode("latin1"))
    descr, shape = header["descr"], tuple(header["shape"])
    if header.get("fortran_order"):
        raise ConvertError("%s: Fortran-order arrays are not supported" % what)
    fmts = {"<f4": "f", "<f8": "d", "<f2": "e"}
    if descr not in fmts:
        raise ConvertError("%s: dtype %s is not supported" % (what, descr))
    n = 1
    for d in shape:
        n *= d
    body = data[start + hlen :]
    values = struct.unpack("<%d%s" % (n, fmts[descr]), body[: n * struct.calcsize(fmts[descr])])
    return shape, values


def read_mel_filters(path_or_file, n_mels):
    key = "mel_%d.npy" % n_mels
    try:
        with zipfile.ZipFile(path_or_file) as z:
            if key not in z.namelist():
                raise ConvertError(
                    "mel filters: %s has no %s (has %s)" % (path_or_file, key, ", ".join(z.namelist()))
                )
            data = z.read(key)
    except zipfile.BadZipFile:
        raise ConvertError("mel filters: %s is not an .npz file" % (path_or_file,))
    shape, values = read_npy(data, key)
    if len(shape) != 2 or shape[0] != n_mels:
        raise ConvertError("mel filters: %s has shape %s, expected (%d, n_fft)" % (key, shape, n_mels))
    return shape, values


def read_tiktoken(path):
    """Returns the tokens (bytes) in rank order."""
    tokens = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f.read().splitlines(), 1):
            if not line.strip():
                continue
            try:
                tok, rank = line.split()
                tokens[int(rank)] = base64.b64decode(tok)  # "=" (empty) occurs in multilingual.tiktoken
            except Exception:
                raise ConvertError("vocab: %s line %d is not 'base64 rank'" % (path, lineno))
    ranks = sorted(tokens)
    if ranks != list(range(len(ranks))):
        raise ConvertError("vocab: %s: ranks are not 0..%d without gaps" % (path, len(ranks) - 1))
    return [tokens[i] for i in ranks]


# ---------------------------------------------------------------------------------------------
# Conversion


def f16_to_f32(data):
    n = len(data) // 2
    return struct.pack("<%df" % n, *struct.unpack("<%de" % n, data))


def f32_to_f16(data):
    n = len(data) // 4
    return struct.pack("<%de" % n, *struct.unpack("<%df" % n, data))


def bf16_to_f32(data):
    n = len(data) // 2
    out = bytearray(n * 4)
    out[2::4] = data[0::2]
    out[3::4] = data[1::2]
    return bytes(out)


def as_type(t, ggml_type, name):
    """Returns t's data as ggml f32 or f16 bytes."""
    data = bytes(t.data)
    if t.dtype == CT2_FLOAT16:
        return data if ggml_type == GGML_F16 else f16_to_f32(data)
    if t.dtype == CT2_FLOAT32:
        return f32_to_f16(data) if ggml_type == GGML_F16 else data
    if t.dtype == CT2_BFLOAT16:
        data = bf16_to_f32(data)
        return f32_to_f16(data) if ggml_type == GGML_F16 else data
    raise ConvertError(
        "%s is %s (a quantized CTranslate2 model?); only float16/float32/bfloat16 models can be "
        "converted" % (name, CT2_DTYPE_NAME[t.dtype])
    )


def split_rows(t, parts, name):
    """Splits a fused [parts*n, ...] tensor into `parts` tensors along the first dimension."""
    rows = t.shape[0]
    if rows % parts:
        raise ConvertError("%s: %d rows cannot be split in %d" % (name, rows, parts))
    step = len(t.data) // parts
    shape = (rows // parts,) + t.shape[1:]
    return [Tensor(shape, t.dtype, t.data[i * step : (i + 1) * step]) for i in range(parts)]


def is_zero(t):
    return not any(bytes(t.data).replace(b"\x80", b"\x00"))  # +0.0 and -0.0 in f16/f32/bf16


class Model:
    def __init__(self, variables, aliases):
        self.vars = variables
        self.aliases = aliases

    def get(self, name):
        name = self.aliases.get(name, name)
        if name not in self.vars:
            raise ConvertError("the CTranslate2 model has no variable %s" % name)
        return self.vars[name]

    def has(self, name):
        return self.aliases.get(name, name) in self.vars

    def n_layers(self, side):
        n = 0
        while any(k.startswith("%s/layer_%d/" % (side, n)) for k in self.vars):
            n += 1
        return n


def hparams_of(m):
    emb = m.get("decoder/embeddings/weight")
    enc_pos = m.get("encoder/position_encodings/encodings")
    dec_pos = m.get("decoder/position_encodings/encodings")
    conv1 = m.get("encoder/conv1/weight")
    n_audio_state = enc_pos.shape[1]
    n_text_state = dec_pos.shape[1]

    def heads(side, state):
        key = side + "/num_heads"
        return m.get(key).scalar() if m.has(key) else state // 64

    hp = {
        "n_vocab": emb.shape[0],
        "n_audio_ctx": enc_pos.shape[0],
        "n_audio_state": n_audio_state,
        "n_audio_head": heads("encoder", n_audio_state),
        "n_audio_layer": m.n_layers("encoder"),
        "n_text_ctx": dec_pos.shape[0],
        "n_text_state": n_text_state,
        "n_text_head": heads("decoder", n_text_state),
        "n_text_layer": m.n_layers("decoder"),
        "n_mels": conv1.shape[1],
    }
    if hp["n_audio_layer"] == 0 or hp["n_text_layer"] == 0:
        raise ConvertError("the CTranslate2 model has no encoder or no decoder layers")
    return hp


HPARAM_ORDER = [
    "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels",
]


def ggml_tensors(m, hp, warn=print):
    """Yields (ggml name, Tensor) in OpenAI state_dict order."""

    def linear(src, dst, bias=True):
        yield dst + ".weight", m.get(src + "/weight")
        if bias:
            yield dst + ".bias", m.get(src + "/bias")

    def norm(src, dst):
        yield dst + ".weight", m.get(src + "/gamma")
        yield dst + ".bias", m.get(src + "/beta")

    def fused(src, dsts, pfx):
        w = split_rows(m.get(src + "/weight"), len(dsts), src + "/weight")
        b = split_rows(m.get(src + "/bias"), len(dsts), src + "/bias")
        for i, d in enumerate(dsts):
            yield pfx + d + ".weight", w[i]
            if d.endswith("key"):
                if not is_zero(b[i]):
                    warn("note: %s has a non-zero key bias; dropped (it does not change attention)" % src)
                continue
            yield pfx + d + ".bias", b[i]

    def block(side, i, cross):
        s, p = "%s/layer_%d/" % (side, i), "%s.blocks.%d." % (side, i)
        yield from fused(s + "self_attention/linear_0", ["attn.query", "attn.key", "attn.value"], p)
        yield from linear(s + "self_attention/linear_1", p + "attn.out")
        yield from norm(s + "self_attention/layer_norm", p + "attn_ln")
        if cross:
            yield from linear(s + "attention/linear_0", p + "cross_attn.query")
            yield from fused(s + "attention/linear_1", ["cross_attn.key", "cross_attn.value"], p)
            yield from linear(s + "attention/linear_2", p + "cross_attn.out")
            yield from norm(s + "attention/layer_norm", p + "cross_attn_ln")
        yield from linear(s + "ffn/linear_0", p + "mlp.0")
        yield from linear(s + "ffn/linear_1", p + "mlp.2")
        yield from norm(s + "ffn/layer_norm", p + "mlp_ln")

    yield "encoder.positional_embedding", m.get("encoder/position_encodings/encodings")
    yield from linear("encoder/conv1", "encoder.conv1")
    yield from linear("encoder/conv2", "encoder.conv2")
    for i in range(hp["n_audio_layer"]):
        yield from block("encoder", i, False)
    yield from norm("encoder/layer_norm", "encoder.ln_post")
    yield "decoder.positional_embedding", m.get("decoder/position_encodings/encodings")
    yield "decoder.token_embedding.weight", m.get("decoder/embeddings/weight")
    for i in range(hp["n_text_layer"]):
        yield from block("decoder", i, True)
    yield from norm("decoder/layer_norm", "decoder.ln")


F32_NAMES = {
    "encoder.conv1.bias", "encoder.conv2.bias",
    "encoder.positional_embedding", "decoder.positional_embedding",
}


def convert(model_bytes, mel_filters, vocab, out, log=print):
    """Converts; mel_filters: .npz path or file; vocab: .tiktoken path; out: binary file object.
    Returns (hparams, number of tensors)."""
    spec, _rev, variables, aliases = read_ct2(model_bytes)
    if spec != "WhisperSpec":
        raise ConvertError("the CTranslate2 model is a %s, not a WhisperSpec" % spec)
    m = Model(variables, aliases)
    hp = hparams_of(m)
    log("hparams: " + ", ".join("%s=%d" % (k, hp[k]) for k in HPARAM_ORDER))
    (n_mel, n_fft), filters = read_mel_filters(mel_filters, hp["n_mels"])
    tokens = read_tiktoken(vocab)
    multilingual = hp["n_vocab"] >= 51865
    if len(tokens) > hp["n_vocab"]:
        raise ConvertError("vocab has %d tokens, the model only %d" % (len(tokens), hp["n_vocab"]))
    if multilingual != (len(tokens) > 50256):
        log(
            "warning: a %s model with a %d-token vocab (expected %s.tiktoken)"
            % ("multilingual" if multilingual else "English-only", len(tokens),
               "multilingual" if multilingual else "gpt2")
        )

    out.write(struct.pack("<i", GGML_MAGIC))
    out.write(struct.pack("<11i", *([hp[k] for k in HPARAM_ORDER] + [1])))
    out.write(struct.pack("<ii", n_mel, n_fft))
    out.write(struct.pack("<%df" % len(filters), *filters))
    if not multilingual:
        tokens = tokens + [b"<|endoftext|>"]
    out.write(struct.pack("<i", len(tokens)))
    for tok in tokens:
        out.write(struct.pack("<i", len(tok)))
        out.write(tok)

    count = 0
    for name, t in ggml_tensors(m, hp, warn=log):
        shape = t.shape
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            shape = (shape[0], 1)
        ggml_type = GGML_F32 if (len(shape) < 2 or name in F32_NAMES) else GGML_F16
        data = as_type(t, ggml_type, name)
        bname = name.encode("utf-8")
        out.write(struct.pack("<iii", len(shape), len(bname), ggml_type))
        out.write(struct.pack("<%di" % len(shape), *reversed(shape)))
        out.write(bname)
        out.write(data)
        count += 1
    return hp, count


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True,
                    help="CTranslate2 model.bin (repeat for parts, concatenated in order)")
    ap.add_argument("--mel-filters", required=True, help="openai-whisper's mel_filters.npz")
    ap.add_argument("--vocab", required=True, help="gpt2.tiktoken or multilingual.tiktoken")
    ap.add_argument("-o", "--output", required=True, help="the ggml file to write")
    args = ap.parse_args(argv)
    try:
        buf = bytearray()
        for p in args.model:
            with open(p, "rb") as f:
                buf += f.read()
        tmp = args.output + ".part"
        try:
            with open(tmp, "wb") as out:
                hp, count = convert(buf, args.mel_filters, args.vocab, out,
                                    log=lambda s: print(s, file=sys.stderr))
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except (ConvertError, OSError) as e:
        print("convert_ct2_to_ggml: error: %s" % e, file=sys.stderr)
        return 1
    print("wrote %s: %d tensors, %d bytes" % (args.output, count, os.path.getsize(args.output)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
