#!/usr/bin/env python3
"""pi0_ref.py - an independent PyTorch reference of pi0 (any preset; written for pi0-tiny)
that produces the golden outputs the C model tests compare against.

It reads a checkpoint directory written by `rtvla model init` (model.safetensors with the
openpi-PyTorch / LeRobot pi0 tensor names plus our reg_head.*, tokenizer.model, norm_stats.json,
config.json) and computes, for every case of a cases file, the action chunk of the flow head or
of the regression head, plus a few intermediates. Everything runs in float64.

Three implementations run side by side on every case:
  hf      the golden path: transformers' SiglipVisionModel for the vision tower, GemmaModel
          decoder layers for the prefix and the action expert (SDPA attention with an explicit
          4-D additive mask, the prefix K/V passed to the expert through a DynamicCache, rotary
          cos/sin and RMSNorm statistics kept in float64);
  manual  a hand-written einsum version of the same maths (shared/specs/pi0.md), no transformers;
  stock   the transformers modules exactly as shipped (eager attention, their own rotary tables
          and RMSNorm, which compute in float32): checks that our use of them is the intended one.
hf and manual must agree within 1e-10 relative (seen <= 2e-14), stock within 1e-4 (seen <= 8e-6);
the script exits 1 otherwise.

Modes:
  --make-images DIR           write the deterministic PPM inputs (pure Python, no torch)
  --make-random-ckpt DIR      write a random pi0-tiny checkpoint (pure Python + spm_train or the
                              sentencepiece module), for developing before `rtvla model init`
  --ckpt DIR --cases FILE --out DIR [--summary FILE]   compute the goldens (needs torch,
                              transformers >= 5, safetensors, sentencepiece)
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

MASK64 = (1 << 64) - 1

# --------------------------------------------------------------------------------------------
# Shared conventions (pure Python)
# --------------------------------------------------------------------------------------------


def splitmix_normals(seed, n):
    """n standard normals from splitmix64 + Box-Muller (cos branch only), float64 values
    rounded to float32, as the C side draws them (row-major over the (chunk, 32) noise)."""
    state = seed & MASK64

    def nxt():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    out = []
    for _ in range(n):
        a = nxt()
        b = nxt()
        u1 = ((a >> 11) + 1) * 2.0 ** -53
        u2 = (b >> 11) * 2.0 ** -53
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        out.append(struct.unpack("f", struct.pack("f", z))[0])
    return out


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def clean_task(task):
    """openpi prompt cleaning; '' stays '' (zero prompt tokens)."""
    return task.strip().replace("_", " ").replace("\n", " ")


def read_ppm(path):
    """P6, maxval 255 -> (w, h, bytes RGB24)."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] != b"\n":
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise ValueError(f"{path}: truncated PPM header")
        fields.append(data[start:pos])
    pos += 1  # one whitespace byte after maxval
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError(f"{path}: expected P6 with maxval 255, got {fields[0]!r} maxval {fields[3]!r}")
    w, h = int(fields[1]), int(fields[2])
    pix = data[pos:pos + w * h * 3]
    if len(pix) != w * h * 3:
        raise ValueError(f"{path}: expected {w * h * 3} pixel bytes, got {len(pix)}")
    return w, h, pix


def write_ppm(path, w, h, pix):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(bytes(pix))


def _hash32(x):
    x = (x * 0x9E3779B1) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 13
    return x


def make_images(outdir):
    """Three deterministic test pictures: smooth gradients, a disc, stripes and hashed noise
    (high frequencies make resampling errors visible). Sizes: landscape 240x100 (downscaled to
    224x93, odd vertical padding), portrait 97x160 (upscaled to 135x224, odd horizontal padding),
    224x224 (no resize)."""
    os.makedirs(outdir, exist_ok=True)
    specs = [("view_land_240x100.ppm", 240, 100, 1), ("view_port_97x160.ppm", 97, 160, 2),
             ("view_sq_224x224.ppm", 224, 224, 3)]
    for name, w, h, salt in specs:
        pix = bytearray(w * h * 3)
        cx, cy, r2 = w * 0.6, h * 0.45, (min(w, h) * 0.3) ** 2
        for y in range(h):
            for x in range(w):
                n = _hash32(salt * 1000003 + y * 4099 + x)
                red = int(255 * x / (w - 1))
                green = int(255 * y / (h - 1))
                blue = (n & 0xFF)
                if (x - cx) ** 2 + (y - cy) ** 2 < r2:
                    red, green = 255 - green, 40
                if ((x + 2 * y) // 5) % 2 == 0:
                    blue = blue // 4
                o = (y * w + x) * 3
                pix[o], pix[o + 1], pix[o + 2] = red, green, blue
        write_ppm(os.path.join(outdir, name), w, h, pix)
        print(f"wrote {os.path.join(outdir, name)}")


# --------------------------------------------------------------------------------------------
# Random checkpoint (pure Python)
# --------------------------------------------------------------------------------------------

TINY = dict(image_size=224, patch=14, vis_width=64, vis_depth=2, vis_heads=4, vis_mlp=128,
            vis_ln_eps=1e-6, llm_width=128, llm_depth=2, llm_mlp=256, vocab=1024, n_heads=4,
            n_kv_heads=1, head_dim=32, rope_theta=10000.0, rms_eps=1e-6, exp_width=64,
            exp_mlp=128, reg_hidden=64, action_dim=32, robot_dof=6, chunk=50, steps=10,
            max_prompt=48)

VP = "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
PROJ = "paligemma_with_expert.paligemma.model.multi_modal_projector.linear."
LP = "paligemma_with_expert.paligemma.model.language_model."
EP = "paligemma_with_expert.gemma_expert.model."


def tensor_shapes(c):
    """name -> (shape, kind) for every tensor of a checkpoint with dims c."""
    s = {}
    wv, mv, p = c["vis_width"], c["vis_mlp"], c["patch"]
    ntok = (c["image_size"] // p) ** 2
    s[VP + "embeddings.patch_embedding.weight"] = ((wv, 3, p, p), "w")
    s[VP + "embeddings.patch_embedding.bias"] = ((wv,), "b")
    s[VP + "embeddings.position_embedding.weight"] = ((ntok, wv), "pos")
    for i in range(c["vis_depth"]):
        L = VP + f"encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            s[L + n + ".weight"] = ((wv,), "ln")
            s[L + n + ".bias"] = ((wv,), "b")
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[L + "self_attn." + n + ".weight"] = ((wv, wv), "w")
            s[L + "self_attn." + n + ".bias"] = ((wv,), "b")
        s[L + "mlp.fc1.weight"] = ((mv, wv), "w")
        s[L + "mlp.fc1.bias"] = ((mv,), "b")
        s[L + "mlp.fc2.weight"] = ((wv, mv), "w")
        s[L + "mlp.fc2.bias"] = ((wv,), "b")
    s[VP + "post_layernorm.weight"] = ((wv,), "ln")
    s[VP + "post_layernorm.bias"] = ((wv,), "b")
    w = c["llm_width"]
    s[PROJ + "weight"] = ((w, wv), "w")
    s[PROJ + "bias"] = ((w,), "b")
    s[LP + "embed_tokens.weight"] = ((c["vocab"], w), "emb")
    q, kv = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    for prefix, width, mlp in ((LP, w, c["llm_mlp"]), (EP, c["exp_width"], c["exp_mlp"])):
        for i in range(c["llm_depth"]):
            L = prefix + f"layers.{i}."
            s[L + "self_attn.q_proj.weight"] = ((q, width), "w")
            s[L + "self_attn.k_proj.weight"] = ((kv, width), "w")
            s[L + "self_attn.v_proj.weight"] = ((kv, width), "w")
            s[L + "self_attn.o_proj.weight"] = ((width, q), "w")
            s[L + "mlp.gate_proj.weight"] = ((mlp, width), "w")
            s[L + "mlp.up_proj.weight"] = ((mlp, width), "w")
            s[L + "mlp.down_proj.weight"] = ((width, mlp), "w")
            s[L + "input_layernorm.weight"] = ((width,), "rms")
            s[L + "post_attention_layernorm.weight"] = ((width,), "rms")
        s[prefix + "norm.weight"] = ((width,), "rms")
    we, a, r = c["exp_width"], c["action_dim"], c["reg_hidden"]
    for n, shp in (("state_proj", (we, a)), ("action_in_proj", (we, a)),
                   ("action_time_mlp_in", (we, 2 * we)), ("action_time_mlp_out", (we, we)),
                   ("action_out_proj", (a, we)), ("reg_head.in_proj", (r, w)),
                   ("reg_head.state_proj", (r, a)), ("reg_head.fc", (r, r)),
                   ("reg_head.out_proj", (c["chunk"] * a, r))):
        s[n + ".weight"] = (shp, "w")
        s[n + ".bias"] = ((shp[0],), "b")
    return s


def write_safetensors_f32(path, tensors):
    """tensors: name -> (shape, list of floats)."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        shape, vals = tensors[name]
        blob = struct.pack("<%df" % len(vals), *vals)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_tokenizer(path, vocab, rng):
    """A SentencePiece BPE model with byte fallback and identity normalization, ids 0 pad,
    1 eos, 2 bos, 3 unk (Gemma's layout), trained on a generated corpus."""
    words = ["pick", "up", "the", "red", "green", "blue", "cube", "place", "put", "into", "bowl",
             "open", "close", "drawer", "robot", "arm", "gripper", "move", "left", "right",
             "towel", "fold", "push", "button", "cup", "on", "plate", "stack", "blocks"]
    syl = ["ka", "lo", "mi", "zu", "ter", "an", "ox", "bri", "sel", "qua", "ve", "dro", "im"]
    lines = []
    for _ in range(4000):
        n = rng.randint(3, 10)
        toks = []
        for _ in range(n):
            if rng.random() < 0.6:
                toks.append(rng.choice(words))
            else:
                toks.append("".join(rng.choice(syl) for _ in range(rng.randint(1, 4))))
        lines.append(" ".join(toks))
    with tempfile.TemporaryDirectory() as td:
        corpus = os.path.join(td, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(lines) + "\n")
        prefix = os.path.join(td, "tok")
        args = dict(input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=vocab,
                    byte_fallback="true", normalization_rule_name="identity",
                    character_coverage="1.0", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                    hard_vocab_limit="false", num_threads=1)
        try:
            import sentencepiece as spm
            spm.SentencePieceTrainer.train(" ".join(f"--{k}={v}" for k, v in args.items()))
        except ImportError:
            subprocess.run(["spm_train"] + [f"--{k}={v}" for k, v in args.items()], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(prefix + ".model", "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())


def make_random_ckpt(outdir, seed):
    c = dict(TINY)
    rng = random.Random(seed)
    os.makedirs(outdir, exist_ok=True)
    tensors = {}
    for name, (shape, kind) in tensor_shapes(c).items():
        n = 1
        for d in shape:
            n *= d
        fan_in = n // shape[0] if len(shape) > 1 else 1
        if kind == "w":
            sd = 1.0 / math.sqrt(fan_in)
            vals = [rng.gauss(0.0, sd) for _ in range(n)]
        elif kind == "b":
            vals = [rng.gauss(0.0, 0.05) for _ in range(n)]
        elif kind == "ln":
            vals = [1.0 + rng.gauss(0.0, 0.1) for _ in range(n)]
        elif kind == "rms":
            vals = [rng.gauss(0.0, 0.1) for _ in range(n)]
        elif kind == "pos":
            vals = [rng.gauss(0.0, 0.3) for _ in range(n)]
        else:  # embedding rows, scaled by sqrt(width) in the model
            vals = [rng.gauss(0.0, 1.0 / math.sqrt(shape[1])) for _ in range(n)]
        tensors[name] = (shape, vals)
    write_safetensors_f32(os.path.join(outdir, "model.safetensors"), tensors)
    make_tokenizer(os.path.join(outdir, "tokenizer.model"), c["vocab"], rng)
    d = c["robot_dof"]
    stats = {"norm_stats": {
        k: {"mean": [rng.uniform(-40, 40) for _ in range(d)],
            "std": [rng.uniform(5, 40) for _ in range(d)],
            "q01": [-90.0] * d, "q99": [90.0] * d} for k in ("state", "actions")}}
    with open(os.path.join(outdir, "norm_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(dict(c, preset="pi0-tiny"), f, indent=1)
    print(f"wrote random pi0-tiny checkpoint (seed {seed}) to {outdir}")


# --------------------------------------------------------------------------------------------
# Model (torch)
# --------------------------------------------------------------------------------------------

CFG_KEYS = list(TINY.keys())
NEG = -2.3819763e38  # openpi's mask value; added to logits, never -inf


def load_cfg(ckpt, shapes):
    """pi0-tiny defaults, overridden by config.json (flat or nested; our field names), then
    checked against the tensor shapes."""
    c = dict(TINY)
    src = {}
    p = os.path.join(ckpt, "config.json")
    if os.path.exists(p):
        with open(p) as f:
            j = json.load(f)

        def walk(d):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v)
                elif k in c and isinstance(v, (int, float)) and not isinstance(v, bool):
                    c[k] = type(TINY[k])(v)
                    src[k] = "config.json"
        walk(j)
    # shape-derived values win; a disagreement with config.json is an error
    derive = {
        "vis_width": (VP + "embeddings.patch_embedding.weight", 0),
        "patch": (VP + "embeddings.patch_embedding.weight", 2),
        "vis_mlp": (VP + "encoder.layers.0.mlp.fc1.weight", 0),
        "llm_width": (LP + "norm.weight", 0),
        "llm_mlp": (LP + "layers.0.mlp.gate_proj.weight", 0),
        "exp_width": (EP + "norm.weight", 0),
        "exp_mlp": (EP + "layers.0.mlp.gate_proj.weight", 0),
        "action_dim": ("state_proj.weight", 1),
        "reg_hidden": ("reg_head.fc.weight", 0),
        "vocab": (LP + "embed_tokens.weight", 0),
    }
    for k, (name, axis) in derive.items():
        if name in shapes:
            v = shapes[name][axis]
            if src.get(k) == "config.json" and c[k] != v:
                raise ValueError(f"{ckpt}/config.json: {k} is {c[k]} but tensor {name} has {v}")
            c[k] = v
    c["vis_depth"] = len({n for n in shapes if n.startswith(VP + "encoder.layers.") and n.endswith("fc1.weight")})
    c["llm_depth"] = len({n for n in shapes if n.startswith(LP + "layers.") and n.endswith("q_proj.weight")})
    edepth = len({n for n in shapes if n.startswith(EP + "layers.") and n.endswith("q_proj.weight")})
    if edepth != c["llm_depth"]:
        raise ValueError(f"{ckpt}: expert has {edepth} layers, LLM {c['llm_depth']}")
    q = shapes[LP + "layers.0.self_attn.q_proj.weight"][0]
    kv = shapes[LP + "layers.0.self_attn.k_proj.weight"][0]
    if q != c["n_heads"] * c["head_dim"] or kv != c["n_kv_heads"] * c["head_dim"]:
        raise ValueError(f"{ckpt}: q_proj rows {q} / k_proj rows {kv} do not match n_heads "
                         f"{c['n_heads']}, n_kv_heads {c['n_kv_heads']}, head_dim {c['head_dim']}")
    c["image_size"] = int(round(math.sqrt(shapes[VP + "embeddings.position_embedding.weight"][0]))) * c["patch"]
    if "reg_head.out_proj.weight" in shapes:
        c["chunk"] = shapes["reg_head.out_proj.weight"][0] // c["action_dim"]
    return c


def run_goldens(args):
    import torch
    import torch.nn.functional as F
    import transformers
    from safetensors import safe_open
    import sentencepiece as spm

    torch.set_grad_enabled(False)
    dev = torch.device(args.device)
    D = torch.float64

    # ---- checkpoint ------------------------------------------------------------------------
    st_path = os.path.join(args.ckpt, "model.safetensors")
    T = {}
    with safe_open(st_path, framework="pt") as f:
        for k in f.keys():
            name = k[len("model."):] if k.startswith("model.") else k
            T[name] = f.get_tensor(k).to(D).to(dev)
    if LP + "embed_tokens.weight" not in T and "paligemma_with_expert.paligemma.lm_head.weight" in T:
        T[LP + "embed_tokens.weight"] = T["paligemma_with_expert.paligemma.lm_head.weight"]
    c = load_cfg(args.ckpt, {k: tuple(v.shape) for k, v in T.items()})
    expected = tensor_shapes(c)
    for name, (shape, _) in expected.items():
        if name not in T:
            if name.startswith("reg_head."):
                continue
            raise ValueError(f"{st_path}: tensor {name} is missing")
        if tuple(T[name].shape) != tuple(shape):
            raise ValueError(f"{st_path}: tensor {name} has shape {tuple(T[name].shape)}, expected {tuple(shape)}")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.ckpt, "tokenizer.model"))
    with open(os.path.join(args.ckpt, "norm_stats.json")) as f:
        ns = json.load(f)["norm_stats"]
    eps_n = 1e-6

    S = c["image_size"]
    ntok = (S // c["patch"]) ** 2
    H, A = c["chunk"], c["action_dim"]
    nh, nkv, hd = c["n_heads"], c["n_kv_heads"], c["head_dim"]
    W, WE, WV = c["llm_width"], c["exp_width"], c["vis_width"]

    def t64(x):
        return torch.tensor(x, dtype=D, device=dev)

    # ---- inputs ----------------------------------------------------------------------------
    def preprocess(path):
        w, h, pix = read_ppm(path)
        x = torch.frombuffer(bytearray(pix), dtype=torch.uint8).to(D).view(h, w, 3)
        x = x.permute(2, 0, 1)[None].to(dev)  # (1, 3, h, w), values 0..255 as float
        if (w, h) != (S, S):
            ratio = max(w / S, h / S)
            rh, rw = int(h / ratio), int(w / ratio)
            x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=False)
        else:
            rh, rw = S, S
        out = torch.full((1, 3, S, S), -1.0, dtype=D, device=dev)
        top, left = (S - rh) // 2, (S - rw) // 2
        out[:, :, top:top + rh, left:left + rw] = x / 255.0 * 2.0 - 1.0
        return out

    def tokenize(task):
        if task == "":
            return []
        bos = sp.bos_id()
        if bos < 0:
            raise ValueError("tokenizer.model has no BOS piece")
        toks = [bos] + sp.encode(clean_task(task)) + sp.encode("\n")
        if len(toks) > c["max_prompt"]:
            raise ValueError(f"task {task!r} needs {len(toks)} tokens > max_prompt {c['max_prompt']}")
        return toks

    def stats(kind, field, dof):
        v = ns[kind][field]
        if len(v) < dof:
            raise ValueError(f"norm_stats.json: {kind}.{field} has {len(v)} values, need {dof}")
        return t64(v[:dof])

    def norm_state(state):
        d = len(state)
        s = (t64(state) - stats("state", "mean", d)) / (stats("state", "std", d) + eps_n)
        return torch.cat([s, torch.zeros(A - d, dtype=D, device=dev)])

    def unnorm_actions(x, d):
        return x[:, :d] * (stats("actions", "std", d) + eps_n) + stats("actions", "mean", d)

    # ---- shared pieces ---------------------------------------------------------------------
    def lin(x, name):
        y = x @ T[name + ".weight"].T
        b = T.get(name + ".bias")
        return y + b if b is not None else y

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def posemb(t, dim, min_p=4e-3, max_p=4.0):
        frac = torch.linspace(0.0, 1.0, dim // 2, dtype=D, device=dev)
        period = min_p * (max_p / min_p) ** frac
        arg = (2.0 * math.pi / period) * t
        return torch.cat([torch.sin(arg), torch.cos(arg)])

    def rope_tables(pos):
        """float64 cos/sin (1, S, hd) in transformers' layout (frequencies repeated twice)."""
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=D, device=dev) / hd))
        ang = pos.to(D)[:, None] * inv[None, :]
        emb = torch.cat([ang, ang], dim=-1)[None]
        return emb.cos(), emb.sin()

    def suffix_embed(x, t, s_norm):
        s = lin(s_norm[None], "state_proj")  # (1, WE)
        a = lin(x, "action_in_proj")  # (H, WE)
        te = posemb(t, WE)[None].expand(H, WE)
        h = lin(F.silu(lin(torch.cat([a, te], dim=1), "action_time_mlp_in")), "action_time_mlp_out")
        return torch.cat([s, h], dim=0)  # (1 + H, WE)

    def suffix_mask(P):
        m = torch.zeros(1 + H, P + 1 + H, dtype=D, device=dev)
        m[0, P + 1:] = NEG  # the state token sees the prefix and itself only
        return m

    # ---- manual implementation ---------------------------------------------------------------
    def m_ln(x, name, eps):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * T[name + ".weight"] + T[name + ".bias"]

    def m_rms(x, name):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + c["rms_eps"]) * (1.0 + T[name + ".weight"])

    def m_vision(pix):  # (V, 3, S, S) -> (V, ntok, WV)
        V, p, g = pix.shape[0], c["patch"], S // c["patch"]
        patches = pix.reshape(V, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(V, g * g, 3 * p * p)
        wp = T[VP + "embeddings.patch_embedding.weight"].reshape(WV, 3 * p * p)
        x = patches @ wp.T + T[VP + "embeddings.patch_embedding.bias"] + T[VP + "embeddings.position_embedding.weight"]
        nv = c["vis_heads"]
        dv = WV // nv
        for i in range(c["vis_depth"]):
            L = VP + f"encoder.layers.{i}."
            y = m_ln(x, L + "layer_norm1", c["vis_ln_eps"])
            q = lin(y, L + "self_attn.q_proj").view(V, -1, nv, dv)
            k = lin(y, L + "self_attn.k_proj").view(V, -1, nv, dv)
            v = lin(y, L + "self_attn.v_proj").view(V, -1, nv, dv)
            sc = torch.einsum("vqhd,vkhd->vhqk", q, k) / math.sqrt(dv)
            o = torch.einsum("vhqk,vkhd->vqhd", sc.softmax(-1), v).reshape(V, -1, WV)
            x = x + lin(o, L + "self_attn.out_proj")
            y = m_ln(x, L + "layer_norm2", c["vis_ln_eps"])
            x = x + lin(gelu_tanh(lin(y, L + "mlp.fc1")), L + "mlp.fc2")
        return m_ln(x, VP + "post_layernorm", c["vis_ln_eps"])

    def m_rope(x, pos):  # x (S, heads, hd); half-split pairs (i, i + hd/2)
        half = hd // 2
        inv = c["rope_theta"] ** (-2.0 * torch.arange(half, dtype=D, device=dev) / hd)
        th = pos.to(D)[:, None, None] * inv[None, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * th.cos() - x2 * th.sin(), x2 * th.cos() + x1 * th.sin()], dim=-1)

    def m_layer(x, L, pos, mask, kv_prefix=None):
        """x (S, width) -> (x, k, v) with k, v (S, nkv, hd) after RoPE."""
        n = x.shape[0]
        h = m_rms(x, L + "input_layernorm")
        q = m_rope(lin(h, L + "self_attn.q_proj").view(n, nh, hd), pos)
        k = m_rope(lin(h, L + "self_attn.k_proj").view(n, nkv, hd), pos)
        v = lin(h, L + "self_attn.v_proj").view(n, nkv, hd)
        K, Vv = (k, v) if kv_prefix is None else (torch.cat([kv_prefix[0], k]), torch.cat([kv_prefix[1], v]))
        grp = torch.arange(nh, device=dev) // (nh // nkv)  # query head -> kv head
        sc = torch.einsum("qhd,khd->hqk", q, K[:, grp]) / math.sqrt(hd) + mask
        o = torch.einsum("hqk,khd->qhd", sc.softmax(-1), Vv[:, grp]).reshape(n, nh * hd)
        x = x + lin(o, L + "self_attn.o_proj")
        h = m_rms(x, L + "post_attention_layernorm")
        x = x + lin(gelu_tanh(lin(h, L + "mlp.gate_proj")) * lin(h, L + "mlp.up_proj"), L + "mlp.down_proj")
        return x, k, v

    def m_prefix(img_emb, toks):
        txt = T[LP + "embed_tokens.weight"][toks] * math.sqrt(W) if toks else img_emb[:0]
        x = torch.cat([img_emb, txt])
        P = x.shape[0]
        pos = torch.arange(P, device=dev)
        mask = torch.zeros(P, P, dtype=D, device=dev)
        kvs = []
        for i in range(c["llm_depth"]):
            x, k, v = m_layer(x, LP + f"layers.{i}.", pos, mask)
            kvs.append((k, v))
        return kvs, m_rms(x, LP + "norm")

    def m_velocity(kvs, P, xt, t, s_norm):
        x = suffix_embed(xt, t, s_norm)
        pos = torch.arange(P, P + 1 + H, device=dev)
        mask = suffix_mask(P)
        for i in range(c["llm_depth"]):
            x, _, _ = m_layer(x, EP + f"layers.{i}.", pos, mask, kvs[i])
        return lin(m_rms(x, EP + "norm")[1:], "action_out_proj")

    class Manual:
        name = "manual"

        def vision(self, pix):
            return m_vision(pix)

        def prefix(self, img_emb, toks):
            kvs, final = m_prefix(img_emb, toks)
            return kvs, final

        def velocity(self, kvs, P, xt, t, s_norm, mask=None):
            return m_velocity(kvs, P, xt, t, s_norm)

    # ---- transformers implementation ---------------------------------------------------------
    from transformers import GemmaConfig, SiglipVisionConfig, SiglipVisionModel
    from transformers.cache_utils import DynamicCache
    from transformers.models.gemma.modeling_gemma import GemmaModel

    class F64RMSNorm(torch.nn.Module):
        """Gemma RMSNorm with the (1 + w) scale, statistics kept in the input dtype (the stock
        module computes them in float32)."""

        def __init__(self, src, eps):
            super().__init__()
            self.weight = src.weight
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight)

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in T.items() if k.startswith(prefix)}

    def gemma_model(prefix, width, mlp, impl, exact):
        gc = GemmaConfig(vocab_size=c["vocab"], hidden_size=width, intermediate_size=mlp,
                         num_hidden_layers=c["llm_depth"], num_attention_heads=nh,
                         num_key_value_heads=nkv, head_dim=hd, rms_norm_eps=c["rms_eps"],
                         rope_parameters={"rope_type": "default", "rope_theta": c["rope_theta"]},
                         hidden_activation="gelu_pytorch_tanh",
                         max_position_embeddings=8192, attention_bias=False, attention_dropout=0.0,
                         attn_implementation=impl)
        m = GemmaModel(gc)
        m.config._attn_implementation = impl
        m = m.to(device=dev, dtype=D).eval()
        sd = sub(prefix)
        res = m.load_state_dict(sd, strict=False)
        missing = [k for k in res.missing_keys if k != "embed_tokens.weight" or prefix == LP]
        if missing or res.unexpected_keys:
            raise ValueError(f"GemmaModel({prefix}): missing {missing}, unexpected {res.unexpected_keys}")
        if exact:
            for layer in m.layers:
                layer.input_layernorm = F64RMSNorm(layer.input_layernorm, c["rms_eps"])
                layer.post_attention_layernorm = F64RMSNorm(layer.post_attention_layernorm, c["rms_eps"])
            m.norm = F64RMSNorm(m.norm, c["rms_eps"])
        return m

    def cache_kv(cache, i):
        if hasattr(cache, "layers"):
            return cache.layers[i].keys, cache.layers[i].values
        return cache.key_cache[i], cache.value_cache[i]

    def run_layers(model, x, mask4, pos, cache, exact):
        if exact:
            cos, sin = rope_tables(pos)
        else:
            cos, sin = model.rotary_emb(x, pos[None])
        for layer in model.layers:
            out = layer(x, attention_mask=mask4, position_ids=pos[None], past_key_values=cache,
                        use_cache=True, cache_position=pos, position_embeddings=(cos, sin))
            x = out[0] if isinstance(out, tuple) else out
        return x

    class HF:
        def __init__(self, exact):
            self.exact = exact
            self.name = "hf" if exact else "stock"
            impl = "sdpa" if exact else "eager"
            vc = SiglipVisionConfig(hidden_size=WV, intermediate_size=c["vis_mlp"],
                                    num_hidden_layers=c["vis_depth"], num_attention_heads=c["vis_heads"],
                                    num_channels=3, image_size=S, patch_size=c["patch"],
                                    hidden_act="gelu_pytorch_tanh", layer_norm_eps=c["vis_ln_eps"],
                                    attention_dropout=0.0, attn_implementation=impl)
            vc.vision_use_head = False
            self.vis = SiglipVisionModel(vc)
            self.vis.config._attn_implementation = impl
            self.vis = self.vis.to(device=dev, dtype=D).eval()
            # transformers 4.x keys carry "vision_model."; 5.x SiglipVisionModel's do not
            pre = "vision_model." if any(k.startswith("vision_model.") for k in self.vis.state_dict()) else ""
            self.vis.load_state_dict({pre + k: v for k, v in sub(VP).items()}, strict=True)
            self.lm = gemma_model(LP, W, c["llm_mlp"], impl, exact)
            self.ex = gemma_model(EP, WE, c["exp_mlp"], impl, exact)
            self.embed_scaled = hasattr(self.lm.embed_tokens, "embed_scale")

        def vision(self, pix):
            return self.vis(pixel_values=pix).last_hidden_state

        def prefix(self, img_emb, toks):
            if toks:
                ids = torch.tensor([toks], device=dev)
                if self.exact:
                    txt = self.lm.embed_tokens.weight[ids[0]] * math.sqrt(W)
                else:
                    txt = self.lm.embed_tokens(ids)[0]
                    if not self.embed_scaled:
                        txt = txt * math.sqrt(W)
                x = torch.cat([img_emb, txt])
            else:
                x = img_emb
            P = x.shape[0]
            cache = DynamicCache()
            mask4 = torch.zeros(1, 1, P, P, dtype=D, device=dev)
            y = run_layers(self.lm, x[None], mask4, torch.arange(P, device=dev), cache, self.exact)
            kvs = []
            for i in range(c["llm_depth"]):
                k, v = cache_kv(cache, i)  # (1, nkv, P, hd)
                kvs.append((k[0].transpose(0, 1), v[0].transpose(0, 1)))  # (P, nkv, hd)
            return kvs, self.lm.norm(y)[0]

        def velocity(self, kvs, P, xt, t, s_norm, mask=None):
            cache = DynamicCache()
            for i, (k, v) in enumerate(kvs):  # a fresh copy of the prefix cache every step
                cache.update(k.transpose(0, 1)[None].clone(), v.transpose(0, 1)[None].clone(), i)
            x = suffix_embed(xt, t, s_norm)[None]
            m = suffix_mask(P) if mask is None else mask
            y = run_layers(self.ex, x, m[None, None], torch.arange(P, P + 1 + H, device=dev), cache, self.exact)
            return lin(self.ex.norm(y)[0, 1:], "action_out_proj")

    # ---- one case ------------------------------------------------------------------------------
    cases_dir = os.path.dirname(os.path.abspath(args.cases))

    def run_case(impl, case):
        pix = torch.cat([preprocess(os.path.join(cases_dir, v)) for v in case["views"]])
        vis = impl.vision(pix)  # (V, ntok, WV)
        img = lin(vis, PROJ[:-1]).reshape(-1, W)  # projector, no scaling
        toks = tokenize(case["task"])
        kvs, final = impl.prefix(img, toks)
        P = final.shape[0]
        pooled = final.mean(0)
        s_norm = norm_state(case["state"])
        r = dict(pix=pix, vis=vis, img=img, toks=toks, P=P, k0=kvs[0][0], pooled=pooled)
        if case["head"] == "flow":
            noise = t64(splitmix_normals(case["seed"], H * A)).view(H, A)
            x = noise.clone()
            dt = -1.0 / c["steps"]
            for k in range(c["steps"]):
                t = f32(1.0 - k / c["steps"])
                v = impl.velocity(kvs, P, x, t, s_norm)
                if k == 0:
                    r["v0"] = v
                    r["kvs"] = kvs
                x = x + dt * v
            r["noise"] = noise
        elif case["head"] == "regression":
            h0 = lin(pooled, "reg_head.in_proj") + lin(s_norm, "reg_head.state_proj")
            h2 = gelu_tanh(lin(gelu_tanh(h0), "reg_head.fc"))
            x = lin(h2, "reg_head.out_proj").view(H, A)
        else:
            raise ValueError(f"{args.cases}: case {case['case']}: head {case['head']!r} is not flow or regression")
        r["x"] = x
        r["chunk"] = unnorm_actions(x, len(case["state"]))
        return r

    def rel(a, b):
        return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))

    def first(t, n=16):
        return [float(f"{v:.12g}") for v in t.reshape(-1)[:n].tolist()]

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    impls = {"manual": Manual(), "hf": HF(exact=True), "stock": HF(exact=False)}
    summary = dict(torch=torch.__version__, transformers=transformers.__version__,
                   python=sys.version.split()[0], device=str(dev), cfg=c,
                   embed_module_scales=impls["stock"].embed_scaled,
                   attn=dict(hf=impls["hf"].lm.config._attn_implementation,
                             stock=impls["stock"].lm.config._attn_implementation,
                             vision_hf=impls["hf"].vis.config._attn_implementation),
                   cases={})
    # rotary tables: ours (float64) vs transformers' module (float32 inside)
    pos = torch.arange(0, 3 * ntok + c["max_prompt"] + 1 + H, device=dev)
    cos_hf, sin_hf = impls["stock"].lm.rotary_emb(torch.zeros(1, 1, W, dtype=D, device=dev), pos[None])
    cos_me, sin_me = rope_tables(pos)
    summary["rope_table_maxdiff"] = max(float((cos_hf - cos_me).abs().max()), float((sin_hf - sin_me).abs().max()))
    fails = []
    os.makedirs(args.out, exist_ok=True)
    for case in cases:
        res = {n: run_case(im, case) for n, im in impls.items()}
        g, mres, sres = res["hf"], res["manual"], res["stock"]
        d = {}
        for key in ("vis", "pooled", "k0", "x", "chunk") + (("v0",) if case["head"] == "flow" else ()):
            d[key] = dict(manual=rel(mres[key], g[key]), stock=rel(sres[key], g[key]))
            if d[key]["manual"] > 1e-10:
                fails.append(f"{case['case']}: {key}: hf vs manual rel diff {d[key]['manual']:.3g}")
            if d[key]["stock"] > 1e-4:
                fails.append(f"{case['case']}: {key}: hf vs stock rel diff {d[key]['stock']:.3g}")
        if g["toks"] != mres["toks"]:
            fails.append(f"{case['case']}: token mismatch")
        if case["head"] == "flow":
            # the mask must matter: letting the state token see the actions changes the result
            P = g["P"]
            s_norm = norm_state(case["state"])
            v_ok = impls["hf"].velocity(g["kvs"], P, g["noise"], 1.0, s_norm)
            v_open = impls["hf"].velocity(g["kvs"], P, g["noise"], 1.0, s_norm,
                                          mask=torch.zeros(1 + H, P + 1 + H, dtype=D, device=dev))
            d["mask_sensitivity"] = rel(v_open, v_ok)
            if d["mask_sensitivity"] < 1e-8:
                fails.append(f"{case['case']}: suffix mask has no effect (transformers ignored it?)")
        summary["cases"][case["case"]] = d
        out = {
            "case": case["case"], "head": case["head"], "views": case["views"], "task": case["task"],
            "state": case["state"], "seed": case["seed"], "tokens": g["toks"], "n_prefix": g["P"],
            "vision0_first16": first(g["vis"][0]),
            "proj0_first16": first(g["img"][0]),
            "k0_row0_first16": first(g["k0"][0]),
            "pooled_first16": first(g["pooled"]),
            "views_preprocessed_sum": [float(f"{float(p.sum()):.12g}") for p in g["pix"]],
            "views_preprocessed_sumsq": [float(f"{float((p * p).sum()):.12g}") for p in g["pix"]],
            "chunk_normalized_first16": first(g["x"]),
            "chunk": [[float(f"{v:.12g}") for v in row] for row in g["chunk"].tolist()],
        }
        if case["head"] == "flow":
            out["noise_first16"] = first(g["noise"])
            out["velocity0_first16"] = first(g["v0"])
        with open(os.path.join(args.out, case["case"] + ".json"), "w", encoding="utf-8") as f:
            json.dump(out, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")
        print(f"{case['case']}: n_prefix {g['P']} tokens {len(g['toks'])} diffs {json.dumps(d)}", flush=True)
    summary["failures"] = fails
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}, indent=1))
    if fails:
        print("FAILED:\n  " + "\n  ".join(fails))
        return 1
    print(f"OK: {len(cases)} cases; hf == manual and hf ~ stock on every case")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--make-images", metavar="DIR")
    ap.add_argument("--make-random-ckpt", metavar="DIR")
    ap.add_argument("--seed", type=int, default=1, help="seed of --make-random-ckpt")
    ap.add_argument("--ckpt", metavar="DIR")
    ap.add_argument("--cases", metavar="FILE")
    ap.add_argument("--out", metavar="DIR")
    ap.add_argument("--summary", metavar="FILE", help="write the cross-check figures as JSON")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="print the largest chunk difference between two golden folders")
    args = ap.parse_args()
    did = False
    if args.compare:
        worst = 0.0
        for name in sorted(os.listdir(args.compare[0])):
            if not name.endswith(".json") or name == "cases.json":
                continue
            with open(os.path.join(args.compare[0], name), encoding="utf-8") as fa, \
                    open(os.path.join(args.compare[1], name), encoding="utf-8") as fb:
                a, b = json.load(fa), json.load(fb)
            d = max(abs(x - y) for ra, rb in zip(a["chunk"], b["chunk"]) for x, y in zip(ra, rb))
            print(f"{name}: max |chunk diff| {d:.3g}")
            worst = max(worst, d)
        print(f"worst {worst:.3g}")
        did = True
    if args.make_images:
        make_images(args.make_images)
        did = True
    if args.make_random_ckpt:
        make_random_ckpt(args.make_random_ckpt, args.seed)
        did = True
    if args.ckpt:
        if not (args.cases and args.out):
            ap.error("--ckpt needs --cases and --out")
        return run_goldens(args)
    if not did:
        ap.error("nothing to do: give --make-images, --make-random-ckpt or --ckpt/--cases/--out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
