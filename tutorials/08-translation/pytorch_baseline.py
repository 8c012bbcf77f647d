#!/usr/bin/python3
# The chapter 8 model in PyTorch, for side-by-side benchmarks against `attend train`
# (docs/08-translation.md, Appendix D, "Measured against PyTorch"). Not needed to build or test.
# Same data handling as Attend (tokenizer, vocabularies, length-bucketed batches of
# B sentences), same model (pre-norm Transformer, sinusoidal positions, embeddings
# N(0, 1/d_model) scaled by sqrt(d_model)), same optimiser and schedule, same BLEU.
#
#   OPENBLAS_NUM_THREADS=2 /usr/bin/python3 tutorials/08-translation/pytorch_baseline.py \
#       --train train.tsv --valid valid.tsv --test test.tsv --minutes 10 --threads 2
import argparse
import collections
import math
import random
import resource
import sys
import time

import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def tokenize(text, lowercase=False):
    """Attend's tokenizer (src/data/corpus.cpp): white space, . , ! ? ; : split off."""
    tokens, word = [], ""
    for c in text:
        if c.isspace() or c in "\u00a0\u202f":
            if word:
                tokens.append(word)
            word = ""
        elif c in ".,!?;:":
            if word:
                tokens.append(word)
            tokens.append(c)
            word = ""
        else:
            word += c.lower() if lowercase and "A" <= c <= "Z" else c
    if word:
        tokens.append(word)
    return tokens


def read_tsv(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            source, target = line.split("\t")
            pairs.append((" ".join(tokenize(source)), " ".join(tokenize(target))))
    return pairs


class Vocabulary:
    def __init__(self, sentences):
        counts = collections.Counter(w for s in sentences for w in s.split())
        # Attend orders words by count, then alphabetically (Vocabulary::build).
        self.tokens = ["<pad>", "<bos>", "<eos>", "<unk>"] + sorted(counts, key=lambda w: (-counts[w], w))
        self.ids = {w: i for i, w in enumerate(self.tokens)}

    def encode(self, sentence):
        return [self.ids.get(w, UNK) for w in sentence.split()]

    def decode(self, ids):
        words = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.tokens[i])
        return " ".join(words)


def bucketed_batches(src, tgt, batch_size, rng):
    """Shuffle, sort pools of 50 batches by length, cut batches, shuffle batches."""
    order = list(range(len(src)))
    rng.shuffle(order)
    pool, batches = batch_size * 50, []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: (len(src[i]), len(tgt[i])))
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(rows, width):
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


def sinusoidal_positions(max_len, d):
    pe = torch.zeros(max_len, d, dtype=torch.float64)
    for pos in range(max_len):
        for i in range(0, d, 2):
            angle = pos / (10000.0 ** (i / d))
            pe[pos, i] = math.sin(angle)
            pe[pos, i + 1] = math.cos(angle)
    return pe.float()


class Seq2Seq(torch.nn.Module):
    def __init__(self, src_vocab, tgt_vocab, d, heads, layers, ff, dropout, max_len=256):
        super().__init__()
        self.d = d
        self.src_embed = torch.nn.Embedding(src_vocab, d, padding_idx=PAD)
        self.tgt_embed = torch.nn.Embedding(tgt_vocab, d, padding_idx=PAD)
        for e in (self.src_embed, self.tgt_embed):
            torch.nn.init.normal_(e.weight, 0.0, 1.0 / math.sqrt(d))
            with torch.no_grad():
                e.weight[PAD].zero_()
        self.register_buffer("pe", sinusoidal_positions(max_len, d))
        self.transformer = torch.nn.Transformer(d, heads, layers, layers, ff, dropout, batch_first=True,
                                                norm_first=True)
        self.dropout = torch.nn.Dropout(dropout)
        self.output = torch.nn.Linear(d, tgt_vocab)

    def embed(self, table, ids):
        return self.dropout(table(ids) * math.sqrt(self.d) + self.pe[: ids.shape[1]])

    def encode(self, src):
        return self.transformer.encoder(self.embed(self.src_embed, src), src_key_padding_mask=src == PAD)

    def decode(self, memory, src, tgt_in):
        T = tgt_in.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        h = self.transformer.decoder(self.embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                                     tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        return self.output(h)

    def forward(self, src, tgt_in):
        return self.decode(self.encode(src), src, tgt_in)


@torch.no_grad()
def greedy(model, src_rows, max_len=254):
    """Greedy decoding of a batch (no KV cache: nn.Transformer has none)."""
    model.eval()
    src = pad(src_rows, max(len(r) for r in src_rows))
    memory = model.encode(src)
    limit = min(2 * src.shape[1] + 10, max_len)
    out = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(limit):
        nxt = model.decode(memory, src, out)[:, -1].argmax(-1)
        nxt[done] = PAD
        out = torch.cat([out, nxt[:, None]], 1)
        done |= nxt == EOS
        if done.all():
            break
    model.train()
    return [row[1:].tolist() for row in out]


def corpus_bleu(hypotheses, references):
    """Corpus BLEU-4 as sacrebleu computes it by default on tokenized text (exp smoothing)."""
    correct, total = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        h = hyp.split()
        rs = [r.split() for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, 5):
            grams = collections.Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            best = collections.Counter()
            for r in rs:
                for g, c in collections.Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1)).items():
                    best[g] = max(best[g], c)
            correct[n - 1] += sum(min(c, best[g]) for g, c in grams.items())
            total[n - 1] += max(0, len(h) - n + 1)
    if hyp_len == 0:
        return 0.0
    smooth, log_sum = 1.0, 0.0
    for n in range(4):
        if total[n] == 0:
            return 0.0
        if correct[n] == 0:
            smooth *= 2.0
            p = 100.0 / (smooth * total[n])
        else:
            p = 100.0 * correct[n] / total[n]
        log_sum += math.log(p)
    bp = 1.0 if hyp_len >= ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_sum / 4.0)


def evaluate(model, src_vocab, tgt_vocab, pairs, batch=64):
    """Exact match and BLEU over distinct sources (several lines = several references)."""
    refs = collections.OrderedDict()
    for s, t in pairs:
        refs.setdefault(s, []).append(t)
    sources = list(refs)
    hyps = []
    for k in range(0, len(sources), batch):
        rows = [src_vocab.encode(s) + [EOS] for s in sources[k:k + batch]]
        hyps += [tgt_vocab.decode(ids) for ids in greedy(model, rows)]
    exact = sum(h in refs[s] for h, s in zip(hyps, sources)) / len(sources)
    return exact, corpus_bleu(hyps, [refs[s] for s in sources]), hyps, sources


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", required=True)
    p.add_argument("--valid")
    p.add_argument("--test")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--minutes", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff", type=int, default=512)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-sentences", type=int, default=300)
    p.add_argument("--hypotheses", help="write the test translations here")
    a = p.parse_args()
    if a.steps <= 0 and a.minutes <= 0:
        sys.exit("need --steps or --minutes")
    torch.set_num_threads(a.threads)  # its BLAS also needs OPENBLAS_NUM_THREADS
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)

    train_pairs = read_tsv(a.train)
    src_vocab = Vocabulary([s for s, _ in train_pairs])
    tgt_vocab = Vocabulary([t for _, t in train_pairs])
    src = [src_vocab.encode(s) + [EOS] for s, _ in train_pairs]
    tgt = [[BOS] + tgt_vocab.encode(t) + [EOS] for _, t in train_pairs]
    model = Seq2Seq(len(src_vocab.tokens), len(tgt_vocab.tokens), a.d_model, a.heads, a.layers, a.ff, a.dropout)
    params = sum(q.numel() for q in model.parameters())
    print(f"model: {params} parameters; vocabularies {len(src_vocab.tokens)} / {len(tgt_vocab.tokens)}; "
          f"{len(train_pairs)} training pairs; threads {torch.get_num_threads()}", flush=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-9)
    schedule = lambda s: min(s / a.warmup, math.sqrt(a.warmup / s))  # warmup, then inverse square root
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=a.label_smoothing)
    valid_pairs = read_tsv(a.valid)[: a.eval_sentences] if a.valid else []

    step, tokens, start, epoch = 0, 0, time.time(), []
    train_seconds = 0.0
    while True:
        if a.steps > 0 and step >= a.steps:
            break
        if a.minutes > 0 and train_seconds >= a.minutes * 60:
            break
        t0 = time.time()
        if not epoch:
            epoch = bucketed_batches(src, tgt, a.batch, rng)
        rows = epoch.pop()
        s = pad([src[i] for i in rows], max(len(src[i]) for i in rows))
        t = pad([tgt[i] for i in rows], max(len(tgt[i]) for i in rows))
        step += 1
        for g in optimizer.param_groups:
            g["lr"] = a.lr * schedule(step)
        logits = model(s, t[:, :-1])
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += int((s != PAD).sum() + (t != PAD).sum()) - len(rows)  # Attend counts tgt_in + src
        train_seconds += time.time() - t0
        if step % 50 == 0:
            print(f"step {step}  loss {loss.item():.4f}  {tokens / train_seconds:.0f} tok/s  "
                  f"train {train_seconds:.1f} s", flush=True)
        if a.eval_every and step % a.eval_every == 0 and valid_pairs:
            exact, bleu, _, _ = evaluate(model, src_vocab, tgt_vocab, valid_pairs)
            print(f"valid @ {step}: exact {exact:.4f}  BLEU {bleu:.2f}  (train {train_seconds:.1f} s)", flush=True)
    print(f"done: {step} steps, {train_seconds:.1f} s of training, {tokens / train_seconds:.0f} tok/s, "
          f"{1000 * train_seconds / step:.1f} ms/step", flush=True)
    if a.test:
        exact, bleu, hyps, sources = evaluate(model, src_vocab, tgt_vocab, read_tsv(a.test))
        print(f"test: exact_match={exact:.4f} bleu={bleu:.2f} sentences={len(sources)}")
        if a.hypotheses:
            with open(a.hypotheses, "w", encoding="utf-8") as f:
                for h in hyps:
                    f.write(h + "\n")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
