#!/usr/bin/env python3
"""PyTorch / HF transformers reference for the engine's reward model (engine/src/reward).

Needs the reference venv (torch, transformers<5, safetensors, numpy):

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch 'transformers>=4.46,<5' safetensors numpy

Commands (all print JSON on stdout):

  embed --model models/all-minilm-l6-v2 TEXT...
      sentence embeddings as sentence-transformers' all-MiniLM-L6-v2 makes them: BertModel,
      mean pooling over the attention mask, L2 normalisation, max 256 tokens.

  score --model rm/ --items items.json
      rewards from AutoModelForSequenceClassification.from_pretrained(rm/) for items
      [{"prompt": [{"role": "user", "content": ...}, ...], "response": ...}, ...], laid out as
      the engine does (layout "bert-pair-v1"): segment A = the conversation rendered as
      "User: ...\\nAssistant: ..." lines, segment B = the response, tokenizer(A, B).
      Llama/Qwen2 exports (layout "decoder-text-v1"): the response appended to the conversation
      as its last "Assistant: " line, tokenizer(text) from the export's tokenizer.json.

  bench --model models/all-minilm-l6-v2 --data pairs.jsonl --batch-size 8 --max-len 256 \\
        --steps 6 --threads 2
      training pairs/s of the same model and loss as `engine train` (BertForSequenceClassification
      with one output, Bradley-Terry loss, AdamW, dropout off), batches padded to their
      longest item like the engine; prints {"pairs_per_s": ...}.
"""

import argparse
import json
import sys
import time


def render(messages):
    names = {"system": "System: ", "user": "User: ", "assistant": "Assistant: "}
    return "\n".join(names[m["role"]] + m["content"] for m in messages)


def cmd_embed(args):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval()
    enc = tok(args.texts, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(mean, p=2, dim=1)
    print(json.dumps({"embeddings": emb.tolist()}))


def cmd_score(args):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

    items = json.load(open(args.items))
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    if model.config.model_type in ("llama", "qwen2"):
        # Layout "decoder-text-v1": the response as the conversation's last line, tokenized by
        # the export's tokenizer.json as it is (a model-specific tokenizer class may add tokens
        # of its own), one item at a time (no padding).
        tok = PreTrainedTokenizerFast(tokenizer_file=f"{args.model}/tokenizer.json")
        rewards = []
        for item in items:
            text = render(item["prompt"] + [{"role": "assistant", "content": item["response"]}])
            enc = tok(text, return_tensors="pt")
            with torch.no_grad():
                rewards.append(model(**enc).logits[0, 0].item())
        print(json.dumps({"rewards": rewards, "num_labels": model.config.num_labels}))
        return
    tok = AutoTokenizer.from_pretrained(args.model)
    a = [render(item["prompt"]) for item in items]
    b = [item["response"] for item in items]
    enc = tok(a, b, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    print(json.dumps({"rewards": logits[:, 0].tolist(), "num_labels": model.config.num_labels}))


def read_pairs(path, limit):
    """Gold pairs from our schema (prompt list, chosen, rejected)."""
    out = []
    for line in open(path):
        if not line.strip():
            continue
        row = json.loads(line)
        out.append((render(row["prompt"]), row["chosen"], row["rejected"]))
        if len(out) >= limit:
            break
    return out


def split_budget(a, b, budget):
    if a + b <= budget:
        return a, b
    keep_a = min(a, max(budget - b if budget > b else 0, budget // 3))
    return keep_a, min(b, budget - keep_a)


def encode_pair(tok, conv, resp, max_len):
    """The engine's layout with its truncation (conversation cut from the left)."""
    a = tok(conv, add_special_tokens=False)["input_ids"]
    b = tok(resp, add_special_tokens=False)["input_ids"]
    ka, kb = split_budget(len(a), len(b), max_len - 3)
    ids = [tok.cls_token_id] + a[len(a) - ka:] + [tok.sep_token_id] + b[:kb] + [tok.sep_token_id]
    types = [0] * (ka + 2) + [1] * (kb + 1)
    return ids, types


def cmd_bench(args):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    config = BertConfig.from_pretrained(args.model, num_labels=1, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification.from_pretrained(args.model, config=config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    pairs = read_pairs(args.data, args.batch_size * (args.steps + args.warmup))
    encoded = [(encode_pair(tok, c, x, args.max_len), encode_pair(tok, c, y, args.max_len)) for c, x, y in pairs]

    def batch(rows):
        t = max(len(ids) for ids, _ in rows)
        ids = torch.zeros((len(rows), t), dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for i, (r, ty) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            types[i, : len(ty)] = torch.tensor(ty)
            mask[i, : len(r)] = 1
        return ids, types, mask

    def step(chunk):
        rows = [c for c, _ in chunk] + [r for _, r in chunk]
        ids, types, mask = batch(rows)
        r = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits[:, 0]
        n = len(chunk)
        loss = torch.nn.functional.softplus(-(r[:n] - r[n:])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    chunks = [encoded[i : i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]
    for chunk in chunks[: args.warmup]:
        step(chunk)
    start = time.perf_counter()
    done = 0
    for chunk in chunks[args.warmup :]:
        step(chunk)
        done += len(chunk)
    elapsed = time.perf_counter() - start
    print(json.dumps({"pairs": done, "seconds": elapsed, "pairs_per_s": done / elapsed, "threads": args.threads,
                      "torch": torch.__version__}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--model", required=True)
    e.add_argument("--max-len", type=int, default=256)
    e.add_argument("texts", nargs="+")
    s = sub.add_parser("score")
    s.add_argument("--model", required=True)
    s.add_argument("--items", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--data", required=True)
    b.add_argument("--batch-size", type=int, default=8)
    b.add_argument("--max-len", type=int, default=256)
    b.add_argument("--steps", type=int, default=6)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    {"embed": cmd_embed, "score": cmd_score, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
