"""Tests of convert_ct2_to_ggml.py on a tiny synthetic CTranslate2 Whisper model.

Run: python3 -m unittest discover -s scripts/whisper-model
"""

import base64
import io
import os
import struct
import sys
import tempfile
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_ct2_to_ggml as conv  # noqa: E402

F32, I8, I16, F16 = 0, 1, 2, 4

# A tiny model: 4-wide state, 2 heads, 1 encoder and 1 decoder layer, 2 mel bins.
STATE, HEADS, MELS, AUDIO_CTX, TEXT_CTX, FFN = 4, 2, 2, 3, 5, 8


def values(n, seed):
    """n distinct-ish values that float16 represents exactly."""
    return [((i * 7 + seed * 13) % 61 - 30) / 8.0 for i in range(n)]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class FakeCT2:
    """Builds a CTranslate2 v6 binary file."""

    def __init__(self):
        self.vars = []  # (name, shape, dtype, data)
        self.aliases = []
        self.seed = 0
        self.floats = {}  # name -> list of float values (for checking)

    def add(self, name, shape, dtype=F16, vals=None):
        self.seed += 1
        if vals is None:
            vals = values(numel(shape), self.seed)
        fmt = {F16: "e", F32: "f"}[dtype]
        data = struct.pack("<%d%s" % (len(vals), fmt), *vals)
        self.vars.append((name, tuple(shape), dtype, data))
        self.floats[name] = vals

    def scalar(self, name, dtype, value):
        fmt = {I8: "<b", I16: "<h"}[dtype]
        self.vars.append((name, (), dtype, struct.pack(fmt, value)))

    def linear(self, name, rows, cols, bias_vals=None):
        self.add(name + "/weight", (rows, cols))
        self.add(name + "/bias", (rows,), vals=bias_vals)

    def norm(self, name, dtype=F16):
        self.add(name + "/gamma", (STATE,), dtype)
        self.add(name + "/beta", (STATE,), dtype)

    @staticmethod
    def string(s):
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    def bytes(self, spec="WhisperSpec"):
        out = struct.pack("<I", 6) + self.string(spec) + struct.pack("<I", 3)
        out += struct.pack("<I", len(self.vars))
        for name, shape, dtype, data in sorted(self.vars):
            out += self.string(name) + struct.pack("<B", len(shape))
            out += struct.pack("<%dI" % len(shape), *shape)
            out += struct.pack("<BI", dtype, len(data)) + data
        out += struct.pack("<I", len(self.aliases))
        for a, t in self.aliases:
            out += self.string(a) + self.string(t)
        return out


def fused_bias(n, parts):
    """A fused bias (q, k, v or k, v) whose key block of n is zero."""
    b = values(n * parts, 99)
    k = parts - 2  # the key is the second block of q, k, v and the first of k, v
    b[k * n : (k + 1) * n] = [0.0] * n
    return b


def fake_model(n_vocab=6):
    m = FakeCT2()
    m.scalar("decoder/activation", I8, 3)
    m.scalar("encoder/num_heads", I16, HEADS)
    m.scalar("decoder/num_heads", I16, HEADS)
    m.add("encoder/conv1/weight", (STATE, MELS, 3))
    m.add("encoder/conv1/bias", (STATE,))
    m.add("encoder/conv2/weight", (STATE, STATE, 3))
    m.add("encoder/conv2/bias", (STATE,))
    m.add("encoder/position_encodings/encodings", (AUDIO_CTX, STATE))
    for side in ("encoder", "decoder"):
        p = side + "/layer_0/"
        m.linear(p + "self_attention/linear_0", 3 * STATE, STATE, fused_bias(STATE, 3))
        m.linear(p + "self_attention/linear_1", STATE, STATE)
        m.norm(p + "self_attention/layer_norm")
        if side == "decoder":
            m.linear(p + "attention/linear_0", STATE, STATE)
            m.linear(p + "attention/linear_1", 2 * STATE, STATE, fused_bias(STATE, 2))
            m.linear(p + "attention/linear_2", STATE, STATE)
            m.norm(p + "attention/layer_norm")
        m.linear(p + "ffn/linear_0", FFN, STATE)
        m.linear(p + "ffn/linear_1", STATE, FFN)
        m.norm(p + "ffn/layer_norm")
    m.norm("encoder/layer_norm", dtype=F32)  # a float32 source tensor
    m.norm("decoder/layer_norm")
    m.add("decoder/embeddings/weight", (n_vocab, STATE))
    m.add("decoder/position_encodings/encodings", (TEXT_CTX, STATE))
    m.aliases.append(("decoder/projection/weight", "decoder/embeddings/weight"))
    return m


def npy(shape, vals):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (tuple(shape),)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(
        "<%df" % len(vals), *vals
    )


N_FFT = 5
MEL_VALUES = [i / 16.0 for i in range(MELS * N_FFT)]
TOKENS = [b"!", b"hello", b" world", b"\xe5\x9c"]


def npz_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mel_%d.npy" % MELS, npy((MELS, N_FFT), MEL_VALUES))
        z.writestr("mel_128.npy", npy((1, 1), [9.0]))
    return buf.getvalue()


def tiktoken_text(tokens):
    return b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tokens))


def parse_ggml(data):
    """An independent reader of whisper.cpp's ggml model file."""
    pos = [0]

    def take(fmt):
        fmt = "<" + fmt
        n = struct.calcsize(fmt)
        v = struct.unpack(fmt, data[pos[0] : pos[0] + n])
        pos[0] += n
        return v

    def raw(n):
        b = data[pos[0] : pos[0] + n]
        pos[0] += n
        return b

    (magic,) = take("i")
    hparams = take("11i")
    n_mel, n_fft = take("2i")
    filters = take("%df" % (n_mel * n_fft))
    (n_tok,) = take("i")
    tokens = []
    for _ in range(n_tok):
        (n,) = take("i")
        tokens.append(raw(n))
    tensors = []
    while pos[0] < len(data):
        n_dims, name_len, ttype = take("3i")
        dims = take("%di" % n_dims)
        name = raw(name_len).decode()
        count = numel(dims)
        vals = take("%d%s" % (count, "f" if ttype == 0 else "e"))
        tensors.append((name, list(reversed(dims)), ttype, list(vals)))
    return magic, hparams, (n_mel, n_fft, list(filters)), tokens, tensors


class ConvertTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        self.npz = os.path.join(d, "mel_filters.npz")
        self.vocab = os.path.join(d, "vocab.tiktoken")
        with open(self.npz, "wb") as f:
            f.write(npz_bytes())
        with open(self.vocab, "wb") as f:
            f.write(tiktoken_text(TOKENS))

    def tearDown(self):
        self.tmp.cleanup()

    def convert(self, model, log=None):
        out = io.BytesIO()
        logged = []
        conv.convert(model.bytes(), self.npz, self.vocab, out, log=logged.append)
        return parse_ggml(out.getvalue()), logged

    def test_header_hparams_filters_tokens(self):
        (magic, hp, mel, tokens, _), _ = self.convert(fake_model())
        self.assertEqual(magic, 0x67676D6C)
        # n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
        # n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
        self.assertEqual(hp, (6, AUDIO_CTX, STATE, HEADS, 1, TEXT_CTX, STATE, HEADS, 1, MELS, 1))
        self.assertEqual(mel, (MELS, N_FFT, MEL_VALUES))
        # English-only (n_vocab < 51865): <|endoftext|> appended after the tiktoken tokens.
        self.assertEqual(tokens, TOKENS + [b"<|endoftext|>"])

    def test_tensor_names_dims_types_and_order(self):
        (_, _, _, _, tensors), _ = self.convert(fake_model())
        got = [(n, d, t) for n, d, t, _ in tensors]
        S, F = STATE, FFN

        def block(p, cross):
            r = [
                (p + "attn.query.weight", [S, S], 1), (p + "attn.query.bias", [S], 0),
                (p + "attn.key.weight", [S, S], 1),
                (p + "attn.value.weight", [S, S], 1), (p + "attn.value.bias", [S], 0),
                (p + "attn.out.weight", [S, S], 1), (p + "attn.out.bias", [S], 0),
                (p + "attn_ln.weight", [S], 0), (p + "attn_ln.bias", [S], 0),
            ]
            if cross:
                r += [
                    (p + "cross_attn.query.weight", [S, S], 1), (p + "cross_attn.query.bias", [S], 0),
                    (p + "cross_attn.key.weight", [S, S], 1),
                    (p + "cross_attn.value.weight", [S, S], 1), (p + "cross_attn.value.bias", [S], 0),
                    (p + "cross_attn.out.weight", [S, S], 1), (p + "cross_attn.out.bias", [S], 0),
                    (p + "cross_attn_ln.weight", [S], 0), (p + "cross_attn_ln.bias", [S], 0),
                ]
            return r + [
                (p + "mlp.0.weight", [F, S], 1), (p + "mlp.0.bias", [F], 0),
                (p + "mlp.2.weight", [S, F], 1), (p + "mlp.2.bias", [S], 0),
                (p + "mlp_ln.weight", [S], 0), (p + "mlp_ln.bias", [S], 0),
            ]

        want = (
            [
                ("encoder.positional_embedding", [AUDIO_CTX, S], 0),
                ("encoder.conv1.weight", [S, MELS, 3], 1), ("encoder.conv1.bias", [S, 1], 0),
                ("encoder.conv2.weight", [S, S, 3], 1), ("encoder.conv2.bias", [S, 1], 0),
            ]
            + block("encoder.blocks.0.", False)
            + [("encoder.ln_post.weight", [S], 0), ("encoder.ln_post.bias", [S], 0)]
            + [
                ("decoder.positional_embedding", [TEXT_CTX, S], 0),
                ("decoder.token_embedding.weight", [6, S], 1),
            ]
            + block("decoder.blocks.0.", True)
            + [("decoder.ln.weight", [S], 0), ("decoder.ln.bias", [S], 0)]
        )
        self.assertEqual(got, want)
        # no alias (decoder/projection) and no settings scalar gets written
        self.assertEqual(len({n for n, _, _ in got}), len(got))

    def test_data_and_fused_split(self):
        m = fake_model()
        (_, _, _, _, tensors), logged = self.convert(m)
        t = {n: v for n, _, _, v in tensors}
        f = m.floats
        S = STATE
        n2 = S * S
        qkv_w = f["encoder/layer_0/self_attention/linear_0/weight"]
        self.assertEqual(t["encoder.blocks.0.attn.query.weight"], qkv_w[:n2])
        self.assertEqual(t["encoder.blocks.0.attn.key.weight"], qkv_w[n2 : 2 * n2])
        self.assertEqual(t["encoder.blocks.0.attn.value.weight"], qkv_w[2 * n2 :])
        qkv_b = f["encoder/layer_0/self_attention/linear_0/bias"]
        self.assertEqual(t["encoder.blocks.0.attn.query.bias"], qkv_b[:S])
        self.assertEqual(t["encoder.blocks.0.attn.value.bias"], qkv_b[2 * S :])
        self.assertNotIn("encoder.blocks.0.attn.key.bias", t)
        kv_w = f["decoder/layer_0/attention/linear_1/weight"]
        self.assertEqual(t["decoder.blocks.0.cross_attn.key.weight"], kv_w[:n2])
        self.assertEqual(t["decoder.blocks.0.cross_attn.value.weight"], kv_w[n2:])
        kv_b = f["decoder/layer_0/attention/linear_1/bias"]
        self.assertEqual(kv_b[:S], [0.0] * S)
        self.assertEqual(t["decoder.blocks.0.cross_attn.value.bias"], kv_b[S:])
        self.assertNotIn("decoder.blocks.0.cross_attn.key.bias", t)
        self.assertEqual(t["decoder.blocks.0.cross_attn.query.weight"],
                         f["decoder/layer_0/attention/linear_0/weight"])
        self.assertEqual(t["decoder.blocks.0.cross_attn.out.bias"],
                         f["decoder/layer_0/attention/linear_2/bias"])
        self.assertEqual(t["decoder.blocks.0.mlp.2.weight"], f["decoder/layer_0/ffn/linear_1/weight"])
        self.assertEqual(t["decoder.blocks.0.mlp_ln.bias"], f["decoder/layer_0/ffn/layer_norm/beta"])
        self.assertEqual(t["decoder.blocks.0.cross_attn_ln.weight"],
                         f["decoder/layer_0/attention/layer_norm/gamma"])
        # f16 -> f32 (conv bias, positional embedding), f32 -> f32 (ln_post), f16 -> f16
        self.assertEqual(t["encoder.conv1.bias"], f["encoder/conv1/bias"])
        self.assertEqual(t["encoder.conv2.weight"], f["encoder/conv2/weight"])
        self.assertEqual(t["encoder.positional_embedding"], f["encoder/position_encodings/encodings"])
        self.assertEqual(t["decoder.positional_embedding"], f["decoder/position_encodings/encodings"])
        self.assertEqual(t["encoder.ln_post.weight"], f["encoder/layer_norm/gamma"])
        self.assertEqual(t["decoder.token_embedding.weight"], f["decoder/embeddings/weight"])
        self.assertFalse([line for line in logged if "key bias" in line])

    def test_nonzero_key_bias_is_dropped_with_a_note(self):
        m = fake_model()
        name = "encoder/layer_0/self_attention/linear_0/bias"
        for i, (n, shape, dtype, _) in enumerate(m.vars):
            if n == name:
                vals = values(3 * STATE, 5)
                m.vars[i] = (n, shape, dtype, struct.pack("<%de" % len(vals), *vals))
        (_, _, _, _, tensors), logged = self.convert(m)
        self.assertNotIn("encoder.blocks.0.attn.key.bias", [n for n, _, _, _ in tensors])
        self.assertTrue([line for line in logged if "non-zero key bias" in line])

    def test_multilingual_vocab_is_written_as_is(self):
        with open(self.vocab, "wb") as f:
            f.write(tiktoken_text(TOKENS) + b"= %d\n" % len(TOKENS))  # the empty last token
        (_, hp, _, tokens, tensors), _ = self.convert(fake_model(n_vocab=51865))
        self.assertEqual(hp[0], 51865)
        self.assertEqual(tokens, TOKENS + [b""])
        emb = [d for n, d, _, _ in tensors if n == "decoder.token_embedding.weight"]
        self.assertEqual(emb, [[51865, STATE]])

    def test_cli_concatenates_parts(self):
        data = fake_model().bytes()
        d = self.tmp.name
        parts = [os.path.join(d, "model.bin.part1"), os.path.join(d, "model.bin.part2")]
        with open(parts[0], "wb") as f:
            f.write(data[:100])
        with open(parts[1], "wb") as f:
            f.write(data[100:])
        out = os.path.join(d, "out.bin")
        args = ["--mel-filters", self.npz, "--vocab", self.vocab, "-o", out]
        with open(os.devnull, "w") as null:
            err, sys.stderr = sys.stderr, null
            try:
                rc = conv.main(["--model", parts[0], "--model", parts[1]] + args)
                rc_bad = conv.main(["--model", parts[0]] + args[:-1] + [out + "2"])
            finally:
                sys.stderr = err
        self.assertEqual(rc, 0)
        self.assertEqual(rc_bad, 1)
        self.assertFalse(os.path.exists(out + "2"))
        ref = io.BytesIO()
        conv.convert(data, self.npz, self.vocab, ref, log=lambda s: None)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), ref.getvalue())

    def test_errors(self):
        m = fake_model()
        data = m.bytes()
        with self.assertRaisesRegex(conv.ConvertError, "truncated"):
            conv.convert(data[:-40], self.npz, self.vocab, io.BytesIO(), log=lambda s: None)
        with self.assertRaisesRegex(conv.ConvertError, "not a WhisperSpec"):
            conv.convert(m.bytes("TransformerSpec"), self.npz, self.vocab, io.BytesIO(),
                         log=lambda s: None)
        q = fake_model()
        q.vars = [v for v in q.vars if v[0] != "encoder/conv2/weight"]
        q.vars.append(("encoder/conv2/weight", (STATE, STATE, 3), I8, bytes(STATE * STATE * 3)))
        with self.assertRaisesRegex(conv.ConvertError, "int8"):
            conv.convert(q.bytes(), self.npz, self.vocab, io.BytesIO(), log=lambda s: None)
        r = fake_model()
        r.vars = [v for v in r.vars if v[0] != "decoder/layer_norm/beta"]
        with self.assertRaisesRegex(conv.ConvertError, "no variable decoder/layer_norm/beta"):
            conv.convert(r.bytes(), self.npz, self.vocab, io.BytesIO(), log=lambda s: None)


if __name__ == "__main__":
    unittest.main()
