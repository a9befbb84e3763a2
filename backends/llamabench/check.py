"""Before a peer's speed is trusted: its greedy tokens on a short seeded prompt against llama.cpp F16's
(the installed llama-cpp-python, in this process). A peer that computes something else (a broken kernel,
bitnet.cpp's gibberish of Oct 2024) fails; a build with no tool that prints greedy tokens gets
`unavailable` with the reason, never a pass.

Free-running greedy output of a ternary file drifts from F16's after some tokens on random weights (int8
activations; on `tiny`, TQ2_0 kept 3 and 6 of 8 tokens on two of 12 prompts, all 8 on the rest), so the
check runs several seeded prompts and asks the first `need` tokens of most of them to agree: a peer that
computes another model agrees on a first token with odds of about one in the vocabulary size."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from tritbench.backends.llamabench.peer import run_tool

# Words the seeded prompt is drawn from: plain ASCII, so that every llama-family tokenizer reads it alike.
WORDS = ("the", "model", "runs", "on", "a", "small", "core", "and", "reads", "every", "weight", "once", "per",
         "token", "while", "its", "cache", "grows", "with", "each", "step", "of", "decoding")
GREEDY_TIMEOUT_S = 300
_no_logs = None  # the ctypes callback must outlive every llama.cpp call


def _quiet(L) -> None:
    """llama.cpp's model-loading chatter stays out of the child's log (only its failures matter there)."""
    global _no_logs
    if _no_logs is None:
        _no_logs = L.llama_log_callback(lambda level, text, user_data: None)
        L.llama_log_set(_no_logs, ctypes.c_void_p(0))


def seeded_prompt(seed: int, n_words: int = 8) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=n_words))


def reference_pieces(f16_path: Path, prompt: str, n: int) -> tuple[str, list[str]]:
    """llama.cpp F16 through llama-cpp-python: the prompt's pieces joined, and the pieces of up to `n`
    greedy tokens (argmax of the logits, first index on ties, as llama.cpp's greedy sampler), tokenised
    and printed as llama-simple does it (special tokens parsed and printed)."""
    import llama_cpp as L

    _quiet(L)
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = L.llama_model_load_from_file(str(f16_path).encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load the reference model {f16_path}")
    ctx = None
    try:
        vocab = L.llama_model_get_vocab(model)
        text = prompt.encode()
        buf = (L.llama_token * (len(text) + 8))()
        n_prompt = L.llama_tokenize(vocab, text, len(text), buf, len(buf), True, True)
        if n_prompt <= 0:
            raise RuntimeError("llama.cpp could not tokenize the check's prompt")
        tokens = list(buf[:n_prompt])
        cparams = L.llama_context_default_params()
        cparams.n_ctx = n_prompt + n + 8
        cparams.n_batch = max(n_prompt, 1)
        cparams.n_threads = cparams.n_threads_batch = 1
        ctx = L.llama_init_from_model(model, cparams)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context for the check")
        n_vocab = L.llama_vocab_n_tokens(vocab)

        def piece(tok: int) -> str:
            out = ctypes.create_string_buffer(256)
            k = L.llama_token_to_piece(vocab, tok, out, len(out), 0, True)
            return out.raw[: max(k, 0)].decode(errors="replace")

        batch = (L.llama_token * n_prompt)(*tokens)
        gen: list[str] = []
        next_batch = L.llama_batch_get_one(batch, n_prompt)
        for _ in range(n):
            if L.llama_decode(ctx, next_batch) != 0:
                raise RuntimeError("llama_decode failed in the check")
            logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            if L.llama_vocab_is_eog(vocab, tok):
                break
            gen.append(piece(tok))
            one = (L.llama_token * 1)(tok)
            next_batch = L.llama_batch_get_one(one, 1)
        return "".join(piece(t) for t in tokens), gen
    finally:
        if ctx:
            L.llama_free(ctx)
        L.llama_model_free(model)


def peer_output(tool: Path, model: Path, prompt: str, n: int) -> str:
    """What the peer's llama-simple prints on stdout: the prompt's pieces, then each greedy token's. Forks
    from 2024 (bitnet.cpp's) parse common flags and take the prompt as `-p PROMPT` instead of last."""
    base = [str(tool), "-m", str(model), "-n", str(n)]
    try:
        return run_tool([*base, prompt], timeout=GREEDY_TIMEOUT_S)
    except RuntimeError as first:
        try:
            return run_tool([*base, "-p", prompt], timeout=GREEDY_TIMEOUT_S)
        except RuntimeError:
            raise first from None


def agreeing_tokens(prompt_text: str, reference: list[str], output: str) -> int | None:
    """How many leading greedy tokens of the peer's `output` are the reference's; None if the output does
    not even start with the prompt (a tool printing something else)."""
    if not output.startswith(prompt_text):
        return None
    rest, n = output[len(prompt_text):], 0
    for p in reference:
        if not p or not rest.startswith(p):
            break
        rest, n = rest[len(p):], n + 1
    return n


def verdict(prompt: str, prompt_text: str, reference: list[str], output: str, need: int) -> dict:
    """One prompt's result: whether the first `need` greedy tokens agree (all of them when the reference
    stopped earlier at an end-of-generation token)."""
    n = agreeing_tokens(prompt_text, reference, output)
    want = min(need, len(reference))
    peer = output[len(prompt_text):].rstrip("\n") if n is not None else output[:200]
    return {"agree": n is not None and n >= want, "agreeing_tokens": n, "of": len(reference), "prompt": prompt,
            "reference": "".join(reference), "peer": peer}


def token_check(f16_path: Path, tool: Path, model: Path, seed: int, prompts: int = 4, n: int = 8,
                need: int = 2) -> dict:
    """The check's record: `prompts` seeded prompts, `n` greedy tokens each; pass when all prompts but at
    most one (a near tie can flip a first token) agree on their first `need` tokens."""
    runs = []
    for i in range(prompts):
        prompt = seeded_prompt(seed + i)
        prompt_text, reference = reference_pieces(f16_path, prompt, n)
        try:
            output = peer_output(tool, model, prompt, n)
        except RuntimeError as exc:  # the tool, not necessarily llama-bench: say why there is no verdict
            return unavailable(f"{tool.name} failed: {exc}")
        runs.append(verdict(prompt, prompt_text, reference, output, need))
        if runs[-1]["agreeing_tokens"] is None:  # e.g. an older llama-simple that prints its pieces to stderr
            return unavailable(f"{tool.name} did not print the prompt and its greedy tokens on stdout "
                               f"(it printed {output[:60]!r}): its tokens cannot be read")
    agreeing = sum(r["agree"] for r in runs)
    out = {"status": "pass" if agreeing >= prompts - 1 else "fail", "tool": str(tool), "reference": str(f16_path),
           "agreeing_prompts": agreeing, "prompts": prompts, "tokens_per_prompt": n, "need": need, "runs": runs}
    if out["status"] == "fail":
        out["reason"] = (f"greedy tokens of only {agreeing} of {prompts} seeded prompts agree with llama.cpp F16 "
                         f"on their first {need} (e.g. {runs[0]['peer'][:40]!r} vs {runs[0]['reference'][:40]!r})")
    return out


def unavailable(reason: str) -> dict:
    return {"status": "unavailable", "reason": reason}
