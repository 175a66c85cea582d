"""The shapes verl hands a reward manager, rebuilt for tests (not verl's code): a DataProto-like batch
(`batch` tensors, `non_tensor_batch` numpy object arrays, int and slice indexing), a tokenizer with decode(ids,
skip_special_tokens), and verl's two registries as importable modules."""
import sys
import types

import numpy as np
import torch


class Item:
    def __init__(self, batch, non_tensor_batch):
        self.batch = batch
        self.non_tensor_batch = non_tensor_batch


class Batch:
    def __init__(self, batch, non_tensor_batch):
        self.batch = batch
        self.non_tensor_batch = non_tensor_batch

    def __len__(self):
        return next(iter(self.batch.values())).shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Batch({k: v[i] for k, v in self.batch.items()}, {k: v[i] for k, v in self.non_tensor_batch.items()})
        return Item({k: v[i] for k, v in self.batch.items()}, {k: v[i] for k, v in self.non_tensor_batch.items()})


class CharTokenizer:
    """Special tokens are single ids; every other character is its own id."""

    def __init__(self, specials, pad="<|endoftext|>"):
        self.specials = list(specials)
        self.pad_id = self.specials.index(pad)

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            for k, sp in enumerate(self.specials):
                if text.startswith(sp, i):
                    ids.append(k)
                    i += len(sp)
                    break
            else:
                ids.append(1000 + ord(text[i]))
                i += 1
        return ids

    def decode(self, ids, skip_special_tokens=False):
        out = []
        for t in (int(x) for x in ids):
            if t < 1000:
                if not skip_special_tokens:
                    out.append(self.specials[t])
            else:
                out.append(chr(t - 1000))
        return "".join(out)


def make_batch(tok, prompts, responses, non_tensor, prompt_len=None, resp_len=None):
    """verl's rollout layout: prompts left padded to prompt_len, responses right padded to resp_len,
    attention_mask over both, `prompts`/`responses`/`input_ids` tensors."""
    p_ids = [tok.encode(p) for p in prompts]
    r_ids = [tok.encode(r) for r in responses]
    P = prompt_len or max(map(len, p_ids)) + 3
    R = resp_len or max(map(len, r_ids)) + 5
    pt = torch.full((len(p_ids), P), tok.pad_id, dtype=torch.long)
    rt = torch.full((len(p_ids), R), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(p_ids), P + R), dtype=torch.long)
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        pt[i, P - len(p):] = torch.tensor(p)
        rt[i, : len(r)] = torch.tensor(r)
        mask[i, P - len(p): P + len(r)] = 1
    nt = {k: np.array(v, dtype=object) for k, v in non_tensor.items()}
    return Batch({"prompts": pt, "responses": rt, "input_ids": torch.cat([pt, rt], 1), "attention_mask": mask}, nt)


def install_fake_registries():
    """verl.workers.reward_manager and verl.experimental.reward_loop.reward_manager with register() and a
    lookup that fails like verl's ("Unknown reward manager: <name>")."""
    regs = {}
    for mod in ("verl.workers.reward_manager", "verl.experimental.reward_loop.reward_manager"):
        registry = {}

        def register(name, registry=registry):
            def deco(cls):
                registry[name] = cls
                return cls
            return deco

        def get(name, registry=registry):
            if name not in registry:
                raise ValueError("Unknown reward manager: %s" % name)
            return registry[name]

        parts = mod.split(".")
        for j in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:j]), types.ModuleType(".".join(parts[:j])))
        m = sys.modules[mod]
        m.register = register
        m.get_reward_manager_cls = get
        regs[mod] = get
    return regs


def load_by_path(path, name):
    """What verl's custom_reward_function.path / reward_manager.module.path loading does: import a file by
    path under a module name of its own, then getattr."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("custom_module_%d" % abs(hash(path)), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)
