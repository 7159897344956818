#!/usr/bin/env python3
"""Convert the Silero VAD v5 speech detector to whisper.cpp's ggml VAD format.

Python 3 standard library only (no torch, no numpy), so it runs with any python3.

Usage:
  convert_silero_to_ggml.py --jit silero_vad.jit --version 5.1.2 -o ggml-silero-v5.1.2.bin

Input: silero_vad.jit from the `silero-vad` wheel on PyPI, a TorchScript archive: a zip with
  <root>/data.pkl (a pickle of the module tree; tensors are `torch._utils._rebuild_tensor_v2`
  calls whose storages are persistent ids ('storage', torch.FloatStorage, key, 'cpu', numel))
  and <root>/data/<key> (each storage's raw little-endian float32 values). The archive holds a
  16 kHz model (`_model.*`) and an 8 kHz one (`_model_8k.*`); only the 16 kHz one is kept.

Output, what whisper.cpp's whisper_vad_init_with_params reads (little-endian i32 unless said):
  magic 0x67676d6c; i32 length + "silero-16k"; version major, minor, patch; window 512,
  context 64; 4 encoder layers, each (in channels, out channels, kernel 3) = (129,128), (128,64),
  (64,64), (64,128); LSTM input 128, hidden 128; final conv in 128, out 1; then per tensor:
  i32 n_dims, i32 name length, i32 type (0 f32, 1 f16), dims innermost first (the reverse of the
  row-major shape after dropping dimensions of size 1), the name, the data. Convolution weights
  (encoder, final conv, STFT basis) are f16, everything else f32; the STFT basis keeps its three
  dimensions. Tensor order as in whisper.cpp's models/convert-silero-vad-to-ggml.py: encoder
  weight and bias per layer, LSTM weight_ih, weight_hh, bias_ih, bias_hh, final conv weight and
  bias, STFT basis.
"""

import argparse
import array
import os
import pickle
import struct
import sys
import zipfile

GGML_MAGIC = 0x67676D6C
ENCODER = [(129, 128), (128, 64), (64, 64), (64, 128)]


class _Tensor:
    """What `_rebuild_tensor_v2` is asked to build: a view into a storage."""

    def __init__(self, storage, offset, size, stride, *_rest):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)


class _Module:
    """Any TorchScript module object: only its state (a dict of attributes) matters."""

    def __init__(self, *_args, **_kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _Tensor
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if name.endswith("Storage"):
            return name
        # Module classes (__torch__.*): build a stand-in; never import anything.
        return type(name, (_Module,), {})

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return (storage_type, key, numel)


def load_state(jit_path):
    """The archive's tensors by dotted attribute path, as (shape, list of float)."""
    with zipfile.ZipFile(jit_path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise SystemExit(f"{jit_path}: not a TorchScript archive (no single data.pkl)")
        root = pkl[0][: -len("data.pkl")]
        tree = _Unpickler(z.open(pkl[0])).load()
        tensors = {}

        def walk(obj, path):
            if isinstance(obj, _Tensor):
                tensors[path] = obj
            elif isinstance(getattr(obj, "state", None), dict):
                for k, v in obj.state.items():
                    walk(v, f"{path}.{k}" if path else k)

        walk(tree, "")
        out = {}
        for name, t in tensors.items():
            storage_type, key, _numel = t.storage
            if storage_type != "FloatStorage":
                continue
            n = 1
            for d in t.size:
                n *= d
            values = array.array("f")
            values.frombytes(z.read(f"{root}data/{key}"))
            if sys.byteorder != "little":
                values.byteswap()
            # Only contiguous views are expected (dimensions of size 1 may have any stride).
            expect = 1
            for d, s in reversed(list(zip(t.size, t.stride))):
                if d != 1 and s != expect:
                    raise SystemExit(f"{name}: non-contiguous tensor {t.size} {t.stride}")
                expect *= d
            out[name] = (t.size, values[t.offset : t.offset + n])
        return out


def write_tensor(f, name, shape, values, f16):
    dims = list(shape) if name.endswith("forward_basis_buffer") else [d for d in shape if d != 1]
    dims.reverse()
    data = (
        struct.pack(f"<{len(values)}e", *values)
        if f16
        else struct.pack(f"<{len(values)}f", *values)
    )
    name_b = name.encode()
    f.write(struct.pack("<iii", len(dims), len(name_b), 1 if f16 else 0))
    for d in dims:
        f.write(struct.pack("<i", d))
    f.write(name_b)
    f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jit", required=True, help="silero_vad.jit from the silero-vad wheel")
    ap.add_argument("--version", required=True, help="the wheel's version, e.g. 5.1.2")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()

    state = load_state(args.jit)
    order = []
    for i in range(len(ENCODER)):
        order += [(f"_model.encoder.{i}.reparam_conv.weight", True)]
        order += [(f"_model.encoder.{i}.reparam_conv.bias", False)]
    order += [(f"_model.decoder.rnn.{n}", False) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    order += [("_model.decoder.decoder.2.weight", True), ("_model.decoder.decoder.2.bias", False)]
    order += [("_model.stft.forward_basis_buffer", True)]
    missing = [n for n, _ in order if n not in state]
    if missing:
        raise SystemExit("not a Silero VAD v5 model; missing: " + ", ".join(missing))
    for i, (cin, cout) in enumerate(ENCODER):
        shape = state[f"_model.encoder.{i}.reparam_conv.weight"][0]
        if shape != (cout, cin, 3):
            raise SystemExit(f"encoder {i}: shape {shape}, expected {(cout, cin, 3)}")

    major, minor, patch = (int(x) for x in args.version.split("."))
    with open(args.output, "wb") as f:
        f.write(struct.pack("<I", GGML_MAGIC))
        kind = b"silero-16k"
        f.write(struct.pack("<i", len(kind)) + kind)
        f.write(struct.pack("<iii", major, minor, patch))
        f.write(struct.pack("<ii", 512, 64))  # window, context (samples at 16 kHz)
        f.write(struct.pack("<i", len(ENCODER)))
        for cin, cout in ENCODER:
            f.write(struct.pack("<iii", cin, cout, 3))
        f.write(struct.pack("<ii", 128, 128))  # LSTM input, hidden
        f.write(struct.pack("<ii", 128, 1))  # final conv in, out
        for name, f16 in order:
            shape, values = state[name]
            write_tensor(f, name, shape, values, f16)
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
