"""`OmniBackend`: the Backend interface over a Qwen2.5-Omni thinker (real weights or the tiny config).

Every call builds `inputs_embeds` itself: token embeddings, with the audio/video encoder outputs scattered
into the placeholder positions.  That lets a batch encode each *distinct* Media object once (examples
that share the same Media object, e.g. chosen and rejected responses of one pair, reuse its features),
and lets `score_choices` and `generate` run the language model with an explicit KV cache.  Position ids
are the thinker's own TMRoPE (`get_rope_index`), computed per example so that a batch may mix text-only,
audio-only and audio+video prompts.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import weakref
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from avere_utils.models.adapters import attach_adapter
from avere_utils.models.backend import Backend
from avere_utils.models.packing import attention_mask_4d, pack_candidates, width_groups
from avere_utils.models.processor import (
    ENDOFTEXT,
    IM_END,
    AudioFeaturizer,
    EncodedMedia,
    ProcessorSettings,
    audio_output_length,
    batch_media_features,
    encode_media,
    media_or_none,
    render_prompt,
)
from avere_utils.models.shared_prefix import (
    borrowed_prefix,
    group_by_prefix,
    join_left_padded,
    nest_plan,
    prefix_key,
    prefix_units,
    same_inputs,
)
from avere_utils.paths import check_output_path
from avere_utils.records import Example, Media

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    input_ids: torch.Tensor  # (B, L) left-padded
    attention_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, L) 1 on response tokens
    encoded: list[EncodedMedia]  # distinct clips of the batch
    media_of_row: list[int | None]  # index into `encoded` per row
    # per `encoded` entry: id() of its frames / audio array.  A PMP input that replaces only the audio
    # keeps the real clip's frames array (and vice versa), so the frozen encoder runs once for both.
    sources: list[tuple[int | None, int | None]] = field(default_factory=list)
    # per `encoded` entry: the media's (frames_key, audio_key), where its arrays came from ("" = unknown)
    keys: list[tuple[str, str]] = field(default_factory=list)


def _check_examples(examples: Sequence[Example], *, with_response: bool) -> None:
    if not examples:
        raise ValueError("empty list of examples")
    for ex in examples if with_response else ():
        if ex.response is None:
            raise ValueError(f"example with prompt {ex.prompt[:60]!r} has no response to score")


def _rows_of(target: torch.Tensor) -> torch.Tensor:
    """The row index of each True entry of a (B, S) mask, in the order `tensor[target]` lists them."""
    return torch.arange(target.shape[0], device=target.device)[:, None].expand_as(target)[target]


@dataclass
class _PromptState:
    """Prompts after their pass: what a response or a generated token continues from."""

    last_hidden: torch.Tensor  # (G, H) each prompt's last hidden state (predicts the first new token)
    cache: DynamicCache  # per layer (G, kv_heads, T, head_dim), left-padded
    attention_mask: torch.Tensor  # (G, T) over the cache columns
    next_pos: torch.Tensor  # (G,) next free TMRoPE position
    nested_rows: int = 0  # prompts whose common first part came from another prompt's cache
    plan: list | None = None  # per prompt: None (run whole) or (root row, shared tokens)


class OmniBackend(Backend):
    def __init__(self, model: torch.nn.Module, thinker: torch.nn.Module, tokenizer: Any,
                 settings: ProcessorSettings, device: torch.device, *, media_settings: Any = None,
                 model_dir: str | None = None):
        self.model = model  # the PeftModel when adapters are attached, else the thinker itself
        self.thinker = thinker  # Qwen2_5OmniThinkerForConditionalGeneration (LoRA layers injected in place)
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.media_settings = media_settings
        self.model_dir = model_dir
        self.featurizer = AudioFeaturizer(settings)
        self._encoded: dict[int, tuple[weakref.ref, EncodedMedia]] = {}
        self.eos_ids = sorted({i for i in (tokenizer.convert_tokens_to_ids(IM_END),
                                           tokenizer.convert_tokens_to_ids(ENDOFTEXT)) if i is not None})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        # a prompt reuses another's KV for their common first tokens only when that part is long (see nest_plan)
        self.nest_min_tokens = 64
        self.nest_min_fraction = 0.25
        self.nested_rows_total = 0  # how many prompts have reused another's cache (observability, tests)
        self.reuse_prefix = True  # generation and scoring: nest prompts that share a long first part
        # scoring: a prompt's candidates continue its cache in one row under a block mask (packing.py)
        # instead of one cache copy per candidate; off where the attention takes no 4-D mask
        self.pack_candidates = True
        self.encoder_store = None  # models/encoder_store.py: frozen encoder outputs read back, not recomputed
        # Memos of pure functions of the text, exact by construction: a prompt's token ids (per rendered text),
        # a response's, and the TMRoPE positions of a row's part up to its last media block (see _row_positions).
        # Prompts repeat across a run's steps and batches; the tokenizer and get_rope_index (Python loops)
        # were 8 % of an SFT step on the tiny model.  Bounded by the ids it holds (about 8 bytes each: 16 MB),
        # cleared when full: a 7B prompt is ~1,200 ids, where the memo matters little next to the model.
        self._memo: dict[tuple[str, Any], Any] = {}
        self._memo_size = 0
        self.memo_limit = 2_000_000

    # --- properties -----------------------------------------------------------------------------
    @property
    def has_adapters(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    @property
    def dtype(self) -> torch.dtype:
        return self.thinker.lm_head.weight.dtype

    def parameter_counts(self) -> dict[str, int]:
        parts = {"audio_encoder": self.thinker.model.audio_tower, "vision_encoder": self.thinker.model.visual,
                 "language_model": self.thinker.model.language_model, "lm_head": self.thinker.lm_head}
        out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        out["total"] = sum(p.numel() for p in self.model.parameters())
        out["trainable"] = sum(p.numel() for p in self.trainable_parameters())
        return out

    def use_encoder_store(self, store: Any) -> None:
        """Read the frozen encoders' outputs from `store` (an EncoderStore; None: off) and write the ones it
        lacks.  Only for frozen encoders: an adapter or a trainable weight in them would make stored outputs
        stale."""
        if store is not None:
            parts = (self.thinker.model.visual, self.thinker.model.audio_tower)
            trainable = [n for part in parts for n, p in part.named_parameters() if p.requires_grad or "lora_" in n]
            if trainable:
                raise ValueError(f"the encoder store needs frozen encoders; trainable or adapted: {trainable[:3]}")
            # in train mode a dropout would make each step's encoder output a new draw
            drops = [f"{part.__class__.__name__}.{k}={getattr(part.config, k)}" for part in parts
                     for k in ("dropout", "attention_dropout", "activation_dropout")
                     if float(getattr(part.config, k, 0.0) or 0.0) > 0]
            drops += [n for part in parts for n, m in part.named_modules()
                      if isinstance(m, torch.nn.Dropout) and m.p > 0]
            if drops:
                raise ValueError(f"the encoder store needs deterministic encoders; dropout in: {drops[:3]}")
        self.encoder_store = store

    # --- inputs ---------------------------------------------------------------------------------
    def encode_media(self, media: Media) -> EncodedMedia:
        """Encoder inputs of one clip, memoised per (frames array, audio array) while both live: a PMP
        input composed anew at every step from arrays already seen is not patchified again."""
        arrays = tuple(a for a in (media.frames, media.audio) if a is not None)
        key = (id(media.frames) if media.frames is not None else None,
               id(media.audio) if media.audio is not None else None, media.sample_rate)
        hit = self._encoded.get(key)
        if hit is not None and all(r() is a for r, a in zip(hit[0], arrays)):
            return hit[1]
        enc = encode_media(media, self.settings, self.featurizer)
        entry: tuple = ()

        def forget(_ref, k=key):
            if self._encoded.get(k) is entry:  # not a newer entry that reuses the same ids
                del self._encoded[k]
        entry = (tuple(weakref.ref(a, forget) for a in arrays), enc)
        self._encoded[key] = entry
        return enc

    def _build(self, examples: Sequence[Example], *, with_response: bool) -> _Batch:
        _check_examples(examples, with_response=with_response)
        encoded: list[EncodedMedia] = []
        slot: dict[int, int] = {}
        media_of_row: list[int | None] = []
        sources: list[tuple[int | None, int | None]] = []
        keys: list[tuple[str, str]] = []
        rows: list[tuple[list[int], list[int]]] = []
        for ex in examples:
            media = media_or_none(ex.media)
            enc = None
            if media is not None:
                if id(media) not in slot:
                    slot[id(media)] = len(encoded)
                    encoded.append(self.encode_media(media))
                    sources.append((None if media.frames is None else id(media.frames),
                                    None if media.audio is None else id(media.audio)))
                    keys.append((media.frames_key, media.audio_key))
                media_of_row.append(slot[id(media)])
                enc = encoded[slot[id(media)]]
            else:
                media_of_row.append(None)
            text = render_prompt(self.tokenizer, ex.prompt, enc, self.settings.system_prompt)
            prompt_ids = self._token_ids("prompt", text, [])
            rows.append((prompt_ids, self.response_ids(ex.response) if with_response else []))
        length = max(len(p) + len(r) for p, r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), length), dtype=torch.long)
        resp = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (p, r) in enumerate(rows):
            n = len(p) + len(r)
            ids[i, length - n:] = torch.tensor(p + r, dtype=torch.long)
            att[i, length - n:] = 1
            resp[i, length - len(r):] = 1 if r else 0
        return _Batch(ids, att, resp, encoded, media_of_row, sources, keys)

    def response_ids(self, response: str) -> list[int]:
        """Token ids of a response as the model would produce it: the text, then <|im_end|>."""
        return self._token_ids("response", response, [self.tokenizer.convert_tokens_to_ids(IM_END)])

    def _token_ids(self, kind: str, text: str, suffix: list[int]) -> list[int]:
        """The tokenizer's ids of `text` (no special tokens added) + suffix, memoised under a digest of the
        text (a rendered 7B prompt is tens of kB of placeholders); a new list each call."""
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        ids = self._memoised(kind, key, lambda _k: array("q", self.tokenizer(text, add_special_tokens=False)["input_ids"]
                                                         + suffix), size=len)
        return ids.tolist()

    def _memoised(self, kind: str, key: Any, compute: Callable[[Any], Any], size: Callable[[Any], int]) -> Any:
        """compute(key), remembered; what is stored is never handed out to be modified (callers copy token
        arrays, and only read position tensors)."""
        found = self._memo.get((kind, key))
        if found is None:
            found = compute(key)
            n = size(found)
            if n > self.memo_limit:
                return found
            if self._memo_size + n > self.memo_limit:
                self._memo.clear()
                self._memo_size = 0
            self._memo[(kind, key)] = found
            self._memo_size += n
        return found

    def _embed(self, batch: _Batch, sink: list | None = None) -> torch.Tensor:
        """Token embeddings with each distinct clip's encoder output scattered into its placeholders.
        `sink` (a list) receives (video tokens, audio tokens) per row, the graph kept (SFT's perception
        loss reads them instead of running the encoders a second time)."""
        thinker = self.thinker
        ids = batch.input_ids.to(self.device)
        embeds = thinker.get_input_embeddings()(ids)
        if not batch.encoded:
            if sink is not None:  # a batch of text-only rows: still one entry per row
                sink.extend((None, None) for _ in range(ids.shape[0]))
            return embeds
        # the store serves passes that keep no encoder graph (SFT's perception loss needs one)
        store = self.encoder_store if sink is None else None
        video_per_clip = self._per_clip(batch, 0, lambda e: e.pixel_values is not None, store,
                                        lambda part: self._video_features(batch, part))
        audio_per_clip = self._per_clip(batch, 1, lambda e: e.audio_features is not None, store,
                                        lambda part: self._audio_features(batch, part))
        cfg = thinker.config
        if sink is not None:
            sink.extend((video_per_clip[k], audio_per_clip[k]) if k is not None else (None, None)
                        for k in batch.media_of_row)
        rows_v = [video_per_clip[k] for k in batch.media_of_row if k is not None and video_per_clip[k] is not None]
        rows_a = [audio_per_clip[k] for k in batch.media_of_row if k is not None and audio_per_clip[k] is not None]
        if rows_v:
            mask = (ids == cfg.video_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(mask, torch.cat(rows_v).to(embeds.dtype))
        if rows_a:
            mask = (ids == cfg.audio_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(mask, torch.cat(rows_a).to(embeds.dtype))
        return embeds

    def _per_clip(self, batch: _Batch, axis: int, present: Callable[[EncodedMedia], bool], store: Any,
                  encode: Callable[[list[int]], Sequence[torch.Tensor]]) -> list[torch.Tensor | None]:
        """One encoder's output per entry of batch.encoded (None where `present` is false); axis 0: video,
        1: audio.  Entries with the same source array reuse the first one's output."""
        n = len(batch.encoded)
        sources = batch.sources or [(k, k) for k in range(n)]
        keys = batch.keys or [("", "")] * n
        first: dict[int | None, int] = {}
        for k, e in enumerate(batch.encoded):
            if present(e):
                first.setdefault(sources[k][axis], k)
        out: list[torch.Tensor | None] = [None] * n
        if first:
            own = self._encoder_outputs(list(dict.fromkeys(first.values())), [key[axis] for key in keys], store, encode)
            for k, e in enumerate(batch.encoded):
                if present(e):
                    out[k] = own[first[sources[k][axis]]]
        return out

    def _video_features(self, batch: _Batch, part: list[int]) -> Sequence[torch.Tensor]:
        feats = batch_media_features([batch.encoded[k] for k in part])
        return self.thinker.model.get_video_features(feats["pixel_values_videos"].to(self.device, self.dtype),
                                                     feats["video_grid_thw"].to(self.device),
                                                     return_dict=True).pooler_output

    def _audio_features(self, batch: _Batch, part: list[int]) -> Sequence[torch.Tensor]:
        feats = batch_media_features([batch.encoded[k] for k in part])
        out = self.thinker.model.get_audio_features(feats["input_features"].to(self.device, self.dtype),
                                                    feats["feature_attention_mask"].to(self.device),
                                                    return_dict=True)
        lengths = [audio_output_length(batch.encoded[k].n_audio_frames) for k in part]
        return torch.split(out.last_hidden_state, lengths)

    def _encoder_outputs(self, owners: list[int], keys: list[str], store: Any,
                         encode: Callable[[list[int]], Sequence[torch.Tensor]]) -> dict[int, torch.Tensor]:
        """One encoder's output per clip in `owners`: read from `store` where it holds the clip's key, else
        `encode`d (all in one call; with a store one clip per call, so that what is stored does not depend
        on which clips shared a batch) and written there."""
        if store is None:
            return dict(zip(owners, encode(owners)))
        own: dict[int, torch.Tensor] = {}
        for k in owners:
            found = store.get(keys[k]) if keys[k] else None
            if found is not None:
                own[k] = found.to(self.device, self.dtype)
        for k in [k for k in owners if k not in own]:
            (own[k],) = encode([k])
            if keys[k]:
                store.put(keys[k], own[k])
        return own

    def _positions(self, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """TMRoPE position ids (3, B, L) and the next free position per row (B,)."""
        b, length = batch.input_ids.shape
        pos = torch.ones(3, b, length, dtype=torch.long)  # padding keeps 1, as get_rope_index leaves it
        nxt = torch.zeros(b, dtype=torch.long)
        for i in range(b):
            k = batch.media_of_row[i]
            valid = batch.attention_mask[i].bool()
            row = self._row_positions(batch.input_ids[i][valid], batch.encoded[k] if k is not None else None)
            pos[:, i, valid] = row
            nxt[i] = row.max() + 1
        return pos.to(self.device), nxt.to(self.device)

    def _row_positions(self, ids: torch.Tensor, enc: EncodedMedia | None) -> torch.Tensor:
        """The TMRoPE positions (3, n) of one unpadded row: `get_rope_index` of the row's part up to and with
        its last media block (memoised: it is the system prompt and the clip's placeholders, shared by every
        prompt about clips of that shape), then the text after it, which get_rope_index numbers on from the
        largest position so far on all three axes (its trailing-text rule), so the result is the same.
        tests/models/test_models.py compares the two on text-only, audio-only, video and interleaved rows."""
        tokens = ids.tolist()
        cfg = self.thinker.config
        ends = {getattr(cfg, "vision_end_token_id", None), getattr(cfg, "audio_end_token_id", None)} - {None}
        cut = max((j + 1 for j, t in enumerate(tokens) if t in ends), default=0) if enc is not None else 0
        head = None
        if cut:
            key = (hashlib.blake2b(ids[:cut].numpy().tobytes(), digest_size=16).digest(), enc.grid_thw,
                   enc.second_per_grid, enc.n_audio_frames if enc.audio_features is not None else None,
                   bool(enc.interleaved))
            head = self._memoised("positions", key, lambda _k: self._rope_index(ids[:cut], enc), size=torch.numel)
        start = int(head.max()) + 1 if head is not None else 0
        tail = torch.arange(start, start + len(tokens) - cut, dtype=torch.long).expand(3, -1)
        return tail if head is None else torch.cat([head, tail], dim=1)

    def _rope_index(self, ids: torch.Tensor, enc: EncodedMedia | None) -> torch.Tensor:
        """get_rope_index of one unpadded row, (3, n)."""
        kwargs: dict[str, Any] = {}
        if enc is not None and enc.grid_thw is not None:
            kwargs["video_grid_thw"] = torch.tensor([enc.grid_thw])
            kwargs["second_per_grids"] = torch.tensor([enc.second_per_grid])
        if enc is not None and enc.audio_features is not None:
            kwargs["audio_seqlens"] = torch.tensor([enc.n_audio_frames])
        p, _ = self.thinker.model.get_rope_index(ids[None], attention_mask=torch.ones_like(ids)[None],
                                                 use_audio_in_video=bool(enc is not None and enc.interleaved), **kwargs)
        return p[:, 0]

    def _lm(self, embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
            cache: DynamicCache | None = None) -> tuple[torch.Tensor, DynamicCache | None]:
        out = self.thinker.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask.to(self.device),
                                                 position_ids=position_ids, cache=cache,
                                                 use_cache=cache is not None)
        return out.last_hidden_state, out.cache

    def _cache(self, layers: Iterable[tuple[torch.Tensor, torch.Tensor]] = ()) -> DynamicCache:
        """A KV cache for this model's language model, holding `layers` ((keys, values) per layer) if given."""
        cache = DynamicCache(config=self.thinker.config.get_text_config())
        for layer_idx, (keys, values) in enumerate(layers):
            cache.update(keys, values, layer_idx)
        return cache

    def _cache_rows(self, cache: DynamicCache, idx: torch.Tensor) -> DynamicCache:
        """A new cache holding rows `idx` of `cache` (a row may be taken several times)."""
        return self._cache((layer.keys[idx], layer.values[idx]) for layer in cache.layers)

    def _add_logprobs(self, total: torch.Tensor, hidden: torch.Tensor, tokens: torch.Tensor,
                      rows: torch.Tensor) -> torch.Tensor:
        """total + the log-prob of each token under the head over the hidden state that predicts it (one
        hidden state per token, in fp32), summed into its row: total.index_add(rows, ...)."""
        lp = torch.log_softmax(self.thinker.lm_head(hidden).float(), dim=-1)
        return total.index_add(0, rows, lp.gather(-1, tokens[:, None])[:, 0])

    def _first_logprobs(self, state: _PromptState) -> torch.Tensor:
        """Log-probs (G, vocab) of the first token after each prompt."""
        return torch.log_softmax(self.thinker.lm_head(state.last_hidden).float(), dim=-1)

    def _block_mask(self, att: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """The 4-D mask of cached columns `att` then in-row blocks `block`, in this model's mask form."""
        form = self._packed_mask_form()
        return attention_mask_4d(att, block, additive_dtype=self.dtype if form == "additive" else None)

    # --- Backend API ----------------------------------------------------------------------------
    def sequence_logprobs(self, examples: Sequence[Example], *, grad: bool = False, share_prefix: bool = False,
                          encoder_sink: list | None = None, clip_prefix: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """See Backend.  encoder_sink (not with share_prefix): a list that receives each example's
        (video tokens, audio tokens) from this forward's encoders.  clip_prefix (SFT): the examples about
        one clip run their common first tokens (system turn and media block) once (`_clip_prefix_logprobs`)."""
        if share_prefix:
            return self._shared_prefix_logprobs(examples, grad=grad)
        batch = self._build(examples, with_response=True)
        if clip_prefix and self._packed_mask_form() is not None:
            with contextlib.nullcontext() if grad else torch.no_grad():
                return self._clip_prefix_logprobs(batch, encoder_sink)
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx:
            embeds = self._embed(batch, encoder_sink)
            pos, _ = self._positions(batch)
            hidden, _ = self._lm(embeds, batch.attention_mask, pos)
            target = batch.response_mask[:, 1:].bool().to(self.device)
            # the hidden state before each response token predicts it
            logp = self._add_logprobs(torch.zeros(len(examples), device=self.device, dtype=torch.float32),
                                      hidden[:, :-1][target], batch.input_ids[:, 1:].to(self.device)[target],
                                      _rows_of(target))
        return logp, batch.response_mask.sum(1).to(self.device)

    def _clip_prefix_logprobs(self, batch: _Batch, sink: list | None) -> tuple[torch.Tensor, torch.Tensor]:
        """sequence_logprobs of a built batch with each clip's common first tokens run once.

        A training batch holds several examples about each clip (label, description, questions): their rows
        start with the same system turn and media block, about two thirds of a tiny-profile SFT row.  Here the
        rows of one clip form a unit (`shared_prefix.prefix_units`): its common first c tokens run once (pass
        1, KV cache kept in the graph), then every row's remaining tokens (the question, the response) run
        as one right-padded row that attends its unit's cached prefix and, causally, itself (pass 2, a 4-D
        mask as in candidate packing).  Positions are each row's own TMRoPE positions, so every token sees
        the same keys, values and rotary positions as in the row's own pass: the same numbers up to
        floating-point summation order, with no padding of one row to another's prompt length."""
        dev = self.device
        embeds = self._embed(batch, sink)
        pos, _ = self._positions(batch)
        b, length = batch.input_ids.shape
        lens = [int(x) for x in batch.attention_mask.sum(1)]
        rlens = [int(x) for x in batch.response_mask.sum(1)]
        starts = [length - n for n in lens]
        rows = [batch.input_ids[i, starts[i]:].tolist() for i in range(b)]
        keys = [("clip", k) if k is not None else ("text",) for k in batch.media_of_row]
        units = prefix_units(keys, rows, [n - r for n, r in zip(lens, rlens)], verify=same_inputs(embeds, pos, starts))
        unit_of = [0] * b
        cut = [0] * b
        for u, (members, c) in enumerate(units):
            for i in members:
                unit_of[i], cut[i] = u, c
        cache, att_p = self._unit_prefix_pass(units, embeds, pos, starts)
        # pass 2: each row's own remaining tokens, right-padded, after its unit's cache
        tok, resp, block, pos_s, emb_s = self._row_segments(batch, embeds, pos, [s + c for s, c in zip(starts, cut)])
        idx = torch.tensor(unit_of, device=dev)
        # a padding input sees its unit's prefix only (never an empty row of keys)
        mask = self._block_mask(att_p[idx], block.to(dev))
        hidden, _ = self._lm(emb_s, mask, pos_s, self._cache_rows(cache, idx))
        target = resp[:, 1:].to(dev)
        # the hidden state before each response token predicts it
        logp = self._add_logprobs(torch.zeros(b, device=dev, dtype=torch.float32), hidden[:, :-1][target],
                                  tok[:, 1:].to(dev)[target], _rows_of(target))
        return logp, batch.response_mask.sum(1).to(dev)

    def _unit_prefix_pass(self, units: list[tuple[list[int], int]], embeds: torch.Tensor, pos: torch.Tensor,
                          starts: list[int]) -> tuple[DynamicCache, torch.Tensor]:
        """Pass 1 of `_clip_prefix_logprobs`: each unit's first c tokens (those of its first member),
        right-padded to the longest (a padding input then attends the real tokens before it: no all-masked
        row, whose NaN would reach pass 2 through the cached values).  The cache and its (U, C) mask."""
        dev = self.device
        big_c = max(c for _, c in units)
        n_u = len(units)
        att_p = torch.zeros((n_u, big_c), dtype=torch.long, device=dev)
        pos_p = torch.ones((3, n_u, big_c), dtype=pos.dtype, device=dev)
        emb_p = []
        for u, (members, c) in enumerate(units):
            h, st = members[0], starts[members[0]]
            att_p[u, :c] = 1
            pos_p[:, u, :c] = pos[:, h, st:st + c]
            emb_p.append(F.pad(embeds[h, st:st + c], (0, 0, 0, big_c - c)))
        _, cache = self._lm(torch.stack(emb_p), att_p, pos_p, self._cache())
        return cache, att_p

    def _row_segments(self, batch: _Batch, embeds: torch.Tensor, pos: torch.Tensor, seg_starts: list[int]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pass 2's inputs of `_clip_prefix_logprobs`: each row's tokens from seg_starts[i] on, right-padded
        to the longest: token ids, response mask, causal in-row blocks (B, S, S), positions, embeddings."""
        b, length = batch.input_ids.shape
        rlens = [int(x) for x in batch.response_mask.sum(1)]
        seg = [length - st for st in seg_starts]
        s = max(seg)
        tok = torch.full((b, s), self.pad_id, dtype=torch.long)
        resp = torch.zeros((b, s), dtype=torch.bool)
        block = torch.zeros((b, s, s), dtype=torch.bool)
        pos_s = torch.ones((3, b, s), dtype=pos.dtype, device=self.device)
        emb_s = []
        for i in range(b):
            st, n = seg_starts[i], seg[i]
            tok[i, :n] = batch.input_ids[i, st:]
            resp[i, n - rlens[i]:n] = True
            block[i, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
            pos_s[:, i, :n] = pos[:, i, st:]
            emb_s.append(F.pad(embeds[i, st:], (0, 0, 0, s - n)))
        return tok, resp, block, pos_s, torch.stack(emb_s)

    def _prompt_pass(self, batch: _Batch, *, nest: bool) -> _PromptState:
        """Run the (left-padded) prompts once, keeping the KV cache (in the graph when grad is on).

        nest: a prompt whose first c tokens equal a longer-lived "root" prompt's (same ids, and checked:
        same embeddings and positions) runs only its remaining tokens after the root's cache cut at c;
        causal attention makes the result the same as running it whole.  The caches are then left-padded
        to one length.  Without nesting this is one plain forward."""
        embeds = self._embed(batch)
        pos, nxt = self._positions(batch)
        att = batch.attention_mask.to(self.device)
        g, length = batch.input_ids.shape
        lens = [int(x) for x in batch.attention_mask.sum(1)]
        plan: list[tuple[int, int] | None] = [None] * g
        if nest and g > 1:
            starts = [length - n for n in lens]
            rows = [batch.input_ids[i, starts[i]:].tolist() for i in range(g)]
            plan = nest_plan(rows, min_tokens=self.nest_min_tokens, min_fraction=self.nest_min_fraction,
                             verify=same_inputs(embeds, pos, starts))
        if all(p is None for p in plan):
            hidden, cache = self._lm(embeds, att, pos, self._cache())
            return _PromptState(hidden[:, -1], cache, att, nxt)
        return self._nested_prompt_pass(embeds, pos, att, nxt, lens, plan)

    def _nested_prompt_pass(self, embeds: torch.Tensor, pos: torch.Tensor, att: torch.Tensor, nxt: torch.Tensor,
                            lens: list[int], plan: list[tuple[int, int] | None]) -> _PromptState:
        """`_prompt_pass` when some prompts continue a root's cache: the roots run whole, then the others'
        remaining tokens after the roots' first c cached keys (`borrowed_prefix`); the two caches are then
        left-padded to one length and put back in the batch's row order (`join_left_padded`)."""
        g, length = att.shape
        dev = self.device
        roots = [i for i in range(g) if plan[i] is None]
        derived = [j for j in range(g) if plan[j] is not None]
        la = max(lens[i] for i in roots)
        ra = torch.tensor(roots, device=dev)
        hid_a, cache_a = self._lm(embeds[ra, length - la:], att[ra, length - la:], pos[:, ra, length - la:],
                                  self._cache())
        slot = {r: k for k, r in enumerate(roots)}
        cs = [plan[j][1] for j in derived]
        ss = [lens[j] - c for j, c in zip(derived, cs)]
        big_c, big_s = max(cs), max(ss)
        # derived row layout: [zeros | root's first c keys | padding | its own remaining tokens]
        src = [(slot[plan[j][0]], la - lens[plan[j][0]], c) for j, c in zip(derived, cs)]
        cache_b = self._cache((borrowed_prefix(layer.keys, src, big_c), borrowed_prefix(layer.values, src, big_c))
                              for layer in cache_a.layers)
        d = len(derived)
        att_b = torch.zeros((d, big_c + big_s), dtype=att.dtype, device=dev)
        pos_b = torch.ones((3, d, big_s), dtype=pos.dtype, device=dev)
        emb_b = []
        for k, (j, c, sl) in enumerate(zip(derived, cs, ss)):
            att_b[k, big_c - c:big_c] = 1
            att_b[k, big_c + big_s - sl:] = 1
            pos_b[:, k, big_s - sl:] = pos[:, j, length - sl:]
            emb_b.append(F.pad(embeds[j, length - sl:], (0, 0, big_s - sl, 0)))
        hid_b, cache_b = self._lm(torch.stack(emb_b), att_b, pos_b, cache_b)
        # one left-padded cache for all prompts, back in the batch's row order
        total = max(la, big_c + big_s)
        order = roots + derived
        perm = torch.tensor([order.index(i) for i in range(g)], device=dev)
        merged = self._cache((join_left_padded([a.keys, b.keys], total, perm),
                              join_left_padded([a.values, b.values], total, perm))
                             for a, b in zip(cache_a.layers, cache_b.layers))
        att_m = join_left_padded([att[ra, length - la:], att_b], total, perm, time_dim=-1)
        last = torch.cat([hid_a[:, -1], hid_b[:, -1]])[perm]
        self.nested_rows_total += d
        return _PromptState(last, merged, att_m, nxt, nested_rows=d, plan=plan)

    def _shared_prefix_logprobs(self, examples: Sequence[Example], *, grad: bool, nest: bool = True
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """sequence_logprobs with one prompt pass per distinct (prompt, media object): the prompts run once
        (`_prompt_pass`, KV cache kept in the autograd graph when grad=True), the cache rows are gathered
        once per response, and the responses run in one batch after them (right-padded, their positions
        continuing from each prompt's next free TMRoPE position, as in the unshared sequence).  With
        pack_candidates the responses of a prompt are packed into one row after its cache instead
        (`_packed_scores`, also with grad=True: a training step's chosen and rejected responses then attend
        their prompt's cache without a copy of it per response)."""
        _check_examples(examples, with_response=True)
        resp_ids = [self.response_ids(ex.response) for ex in examples]
        if self.pack_candidates and self._packed_mask_form() is not None:
            with contextlib.nullcontext() if grad else torch.no_grad():
                packed = self._packed_scores([Example(ex.prompt, ex.media) for ex in examples],
                                             [[ex.response] for ex in examples], nest=nest)
            return torch.cat(packed), torch.tensor([len(x) for x in resp_ids], device=self.device)
        heads, group = group_by_prefix([prefix_key(ex, media_or_none(ex.media)) for ex in examples])
        prompts = self._build([Example(examples[i].prompt, examples[i].media) for i in heads], with_response=False)
        n, r = len(examples), max(len(x) for x in resp_ids)
        tok = torch.full((n, r), self.pad_id, dtype=torch.long, device=self.device)
        valid = torch.zeros((n, r), dtype=torch.bool, device=self.device)
        for i, x in enumerate(resp_ids):
            tok[i, :len(x)] = torch.tensor(x, device=self.device)
            valid[i, :len(x)] = True
        g = torch.tensor(group, device=self.device)
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx:
            state = self._prompt_pass(prompts, nest=nest)
            logp = self._first_logprobs(state)[g].gather(-1, tok[:, :1])[:, 0]
            if r > 1:
                cache = state.cache
                cache.batch_select_indices(g)  # differentiable gather: each response row gets its prompt's KV
                att = torch.cat([state.attention_mask[g], valid[:, :-1].long()], dim=1)
                nxt = state.next_pos[g]
                p = (nxt.view(1, n, 1) + torch.arange(r - 1, device=self.device).view(1, 1, -1)).expand(3, n, r - 1)
                h, _ = self._lm(self.thinker.get_input_embeddings()(tok[:, :-1]), att, p, cache)
                target = valid[:, 1:]
                logp = self._add_logprobs(logp, h[target], tok[:, 1:][target], _rows_of(target))
        return logp, valid.sum(1)

    def generate(self, examples: Sequence[Example], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 seed: int | None = None, use_cache: bool = True) -> list[str]:
        ids = self.generate_ids(examples, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                use_cache=use_cache)
        return [self.tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids]

    @torch.no_grad()
    def generate_ids(self, examples: Sequence[Example], *, max_new_tokens: int = 32, temperature: float = 0.0,
                     seed: int | None = None, use_cache: bool = True, stop_at_eos: bool = True) -> list[list[int]]:
        """New token ids per example (the end token included when reached).  Greedy when temperature == 0,
        else sampling from softmax(logits / temperature) with a generator seeded by `seed`.  use_cache=False
        recomputes the whole sequence at every step (the benchmark's baseline); stop_at_eos=False always
        produces max_new_tokens (for throughput measurements)."""
        batch = self._build(examples, with_response=False)
        if use_cache:
            # prompts sharing a clip's media block (questions about one clip) reuse its KV (reuse_prefix)
            state = self._prompt_pass(batch, nest=self.reuse_prefix)
            cache, att, nxt, last = state.cache, state.attention_mask, state.next_pos, state.last_hidden
        else:
            embeds = self._embed(batch)
            pos, nxt = self._positions(batch)
            att = batch.attention_mask.to(self.device)
            hidden, _ = self._lm(embeds, att, pos, None)
            last = hidden[:, -1]
        gen = None
        if temperature > 0:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(0 if seed is None else seed)
        b = len(examples)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        out_ids: list[list[int]] = [[] for _ in range(b)]
        eos = torch.tensor(self.eos_ids, device=self.device)
        for _ in range(max_new_tokens):
            logits = self.thinker.lm_head(last).float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                tok = torch.multinomial(probs, 1, generator=gen)[:, 0]
            else:
                tok = logits.argmax(-1)
            tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            for i in range(b):
                if not done[i]:
                    out_ids[i].append(int(tok[i]))
            if stop_at_eos:
                done |= torch.isin(tok, eos)
            if bool(done.all()):
                break
            new_embed = self.thinker.get_input_embeddings()(tok[:, None])
            new_pos = nxt.view(1, b, 1).expand(3, b, 1)
            nxt = nxt + 1
            att = torch.cat([att, torch.ones(b, 1, dtype=att.dtype, device=self.device)], dim=1)
            if use_cache:
                hidden, cache = self._lm(new_embed, att, new_pos, cache)
            else:  # recompute the whole sequence (benchmark baseline)
                embeds = torch.cat([embeds, new_embed], dim=1)
                pos = torch.cat([pos, new_pos], dim=2)
                hidden, _ = self._lm(embeds, att, pos, None)
            last = hidden[:, -1]
        return out_ids

    @torch.no_grad()
    def score_choices(self, example: Example, choices: Sequence[str]) -> torch.Tensor:
        return self.score_choices_batch([example], [choices])[0]

    @torch.no_grad()
    def score_choices_batch(self, examples: Sequence[Example], choices: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """score_choices for several prompts in one call: each prompt runs once (with reuse_prefix, prompts
        that share a clip's media block run that block once); then, with pack_candidates, all candidates
        of all prompts in one forward after the prompts' cache (`_packed_scores`), else each candidate
        after its own copy of its prompt's cache."""
        if len(examples) != len(choices):
            raise ValueError(f"{len(examples)} examples but {len(choices)} lists of choices")
        if any(not c for c in choices):
            raise ValueError("score_choices needs at least one choice")
        if self.pack_candidates and self._packed_mask_form() is not None:
            return self._packed_scores(examples, choices)
        flat = [Example(ex.prompt, ex.media, c) for ex, cs in zip(examples, choices) for c in cs]
        lp, _ = self._shared_prefix_logprobs(flat, grad=False, nest=self.reuse_prefix)
        return list(torch.split(lp, [len(c) for c in choices]))

    def _packed_mask_form(self) -> str | None:
        """How this model's attention takes a custom 4-D mask: "bool" (sdpa), "additive" (eager), or None
        (flash-attention takes no arbitrary mask, flex wants a BlockMask; a sliding window would be applied
        on top of our mask by nobody): then scoring keeps one cache copy per candidate."""
        cfg = self.thinker.config.get_text_config()
        if getattr(cfg, "use_sliding_window", False):
            return None
        return {"sdpa": "bool", "eager": "additive"}.get(getattr(cfg, "_attn_implementation", None) or "eager")

    def _packed_scores(self, examples: Sequence[Example], choices: Sequence[Sequence[str]], *,
                       nest: bool | None = None) -> list[torch.Tensor]:
        heads, group = group_by_prefix([prefix_key(ex, media_or_none(ex.media)) for ex in examples])
        prompts = self._build([Example(examples[i].prompt, examples[i].media) for i in heads], with_response=False)
        state = self._prompt_pass(prompts, nest=self.reuse_prefix if nest is None else nest)
        # an item's candidates go to its prompt's row; items with the same prompt and clip share the row
        per_row: list[list[list[int]]] = [[] for _ in heads]
        where: list[list[tuple[int, int]]] = []
        for g, cs in zip(group, choices):
            where.append([(g, len(per_row[g]) + k) for k in range(len(cs))])
            per_row[g].extend(self.response_ids(c) for c in cs)
        dev = self.device
        row = torch.tensor([g for g, cands in enumerate(per_row) for _ in cands], device=dev)
        first = torch.tensor([ids[0] for cands in per_row for ids in cands], device=dev)
        logp = self._first_logprobs(state)[row, first]
        start = [0]
        for cands in per_row:
            start.append(start[-1] + len(cands))
        groups = width_groups([sum(len(ids) - 1 for ids in cands) for cands in per_row])
        for rows in groups:
            pk = pack_candidates([per_row[g] for g in rows], pad_id=self.pad_id)
            g_n, s = pk.tokens.shape
            if not s:
                continue
            if len(groups) == 1:
                cache, att, nxt = state.cache, state.attention_mask, state.next_pos
            else:  # each row's cache once, in the pass of its width group
                idx = torch.tensor(rows, device=dev)
                cache = self._cache_rows(state.cache, idx)
                att, nxt = state.attention_mask[idx], state.next_pos[idx]
            # each candidate restarts at its prompt's next free position; text after the media has its
            # three rotary components equal, as in the unpacked continuation
            pos = (nxt.view(g_n, 1) + pk.offsets.to(dev)).unsqueeze(0).expand(3, g_n, s)
            mask = self._block_mask(att, pk.block.to(dev))
            h, _ = self._lm(self.thinker.get_input_embeddings()(pk.tokens.to(dev)), mask, pos, cache)
            real = pk.owner.to(dev) >= 0
            flat = torch.tensor([start[g] + k for g in rows for k in range(len(per_row[g]))], device=dev)
            logp = self._add_logprobs(logp, h[real], pk.targets.to(dev)[real], flat[pk.owner.to(dev)[real]])
        return [torch.stack([logp[start[g] + k] for g, k in w]) for w in where]

    def reference(self) -> contextlib.AbstractContextManager:
        if self.has_adapters:
            return self.model.disable_adapter()
        return contextlib.nullcontext()  # no adapters: the model IS the reference

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        """LoRA parameters when adapters are attached; all parameters of a plain model (full fine-tune)."""
        return (p for p in self.model.parameters() if p.requires_grad)

    def save_adapter(self, path: str) -> None:
        if not self.has_adapters:
            raise RuntimeError("this backend has no LoRA adapters to save (load it with lora=... or adapter_dir=...)")
        check_output_path(path, "save_adapter: folder")
        self.model.save_pretrained(str(path))
        log.info("saved LoRA adapter to %s", path)

    def load_adapter(self, path: str) -> None:
        if self.has_adapters:
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            result = set_peft_model_state_dict(self.model, load_peft_weights(str(path), device=str(self.device)))
            missing = [k for k in result.missing_keys if "lora_" in k]
            if result.unexpected_keys or missing:
                raise ValueError(f"adapter {path} does not fit this model: unexpected {result.unexpected_keys[:5]}, "
                                 f"missing {missing[:5]}")
        else:
            self.model = attach_adapter(self.thinker, path)
        log.info("loaded LoRA adapter from %s", path)

    def save_pretrained(self, path: str) -> None:
        """Save the full model (merged, no adapters), tokenizer and processor settings as a checkpoint folder."""
        if self.has_adapters:
            raise RuntimeError("save_pretrained saves a plain model; this one has adapters (use save_adapter)")
        check_output_path(path, "save_pretrained: folder")
        self.thinker.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        self.settings.save(path)
